"""asyncio adapters for the sans-I/O SIP core: UDP, TCP and TLS transports, and an
`Endpoint` that runs the transaction layer on the loop's clock."""

from trunkline.signaling.sip.transport.base import (
    MessageSink,
    TransportLimits,
    TransportStats,
    error_response,
    stamp_via,
)
from trunkline.signaling.sip.transport.endpoint import Endpoint, EndpointStats
from trunkline.signaling.sip.transport.stream import (
    StreamConnection,
    StreamTransport,
    client_tls_context,
    open_stream,
    server_tls_context,
)
from trunkline.signaling.sip.transport.udp import UdpTransport, open_udp

__all__ = [
    "Endpoint",
    "EndpointStats",
    "MessageSink",
    "StreamConnection",
    "StreamTransport",
    "TransportLimits",
    "TransportStats",
    "UdpTransport",
    "client_tls_context",
    "error_response",
    "open_stream",
    "open_udp",
    "server_tls_context",
    "stamp_via",
]
