"""The CNAM service's gRPC API (proto/trunkline/v1/cnam.proto) over `trunkline.cnam.lookup`."""

from __future__ import annotations

import logging
from typing import Any

import grpc

from trunkline.cnam.lookup import CallerNames, InvalidRequest, NotNorthAmerican
from trunkline.v1 import cnam_pb2, cnam_pb2_grpc

__all__ = ["CnamService"]

log = logging.getLogger("trunkline.cnam.server")

Context = grpc.aio.ServicerContext[Any, Any]


class CnamService(cnam_pb2_grpc.CnamServicer):
    """Thin: every answer is CallerNames'. A number outside North America is
    FAILED_PRECONDITION (not looked up, not billed); a request the rules cannot read is
    INVALID_ARGUMENT; a store that fails is UNAVAILABLE (signaling sends the call on without
    a name then)."""

    def __init__(self, names: CallerNames) -> None:
        self.names = names

    async def Lookup(
        self, request: cnam_pb2.LookupRequest, context: Context
    ) -> cnam_pb2.LookupReply:
        try:
            return await self.names.lookup(request)
        except NotNorthAmerican as error:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except InvalidRequest as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except Exception:
            log.exception(
                "CNAM lookup failed: internal error", extra={"call_sid": request.call_sid}
            )
            await context.abort(grpc.StatusCode.UNAVAILABLE, "lookup failed")
