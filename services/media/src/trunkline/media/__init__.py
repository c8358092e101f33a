"""Trunkline's media service: the relay's rules (SDP offer/answer, ports, latching,
statistics) without I/O, and later the gRPC-controlled relay built on them."""
