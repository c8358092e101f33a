"""The auth service's gRPC API (proto/trunkline/v1/auth.proto) over `trunkline.auth.rules`."""

from __future__ import annotations

import logging
from typing import Any

import grpc

from trunkline.auth.rules import Authorizer, InvalidRequest
from trunkline.v1 import auth_pb2, auth_pb2_grpc

__all__ = ["AuthService"]

log = logging.getLogger("trunkline.auth.server")

Context = grpc.aio.ServicerContext[Any, Any]


class AuthService(auth_pb2_grpc.AuthServicer):
    """Thin: every decision is the Authorizer's. A request the rules cannot read is
    INVALID_ARGUMENT; a store that fails is UNAVAILABLE (signaling answers 503 then, and
    nothing is allowed by default)."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    async def AuthorizeTermination(
        self, request: auth_pb2.TerminationRequest, context: Context
    ) -> auth_pb2.Verdict:
        try:
            return await self.authorizer.authorize_termination(request)
        except InvalidRequest as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except Exception:
            log.exception(
                "termination not authorized: internal error", extra={"trunk_sid": request.trunk_sid}
            )
            await context.abort(grpc.StatusCode.UNAVAILABLE, "authorization failed")

    async def AuthorizeCaller(
        self, request: auth_pb2.CallerRequest, context: Context
    ) -> auth_pb2.Verdict:
        try:
            return await self.authorizer.authorize_caller(request)
        except InvalidRequest as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except Exception:
            log.exception(
                "caller not authorized: internal error", extra={"account_sid": request.account_sid}
            )
            await context.abort(grpc.StatusCode.UNAVAILABLE, "authorization failed")
