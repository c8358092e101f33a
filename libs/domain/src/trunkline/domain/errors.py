"""The one table of domain errors.

Each error names its Twilio error code (reference/twilio_error_codes_trunking.json) and the
HTTP status the API answers with; an error that rejects a SIP request also names the SIP
status of that response, so that no status code is typed twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class ErrorSpec:
    code: int
    http_status: int
    title: str
    sip_status: int | None = None  # None: not an answer to a SIP request


class Error(Enum):
    INVALID_PARAMETER = ErrorSpec(20001, 400, "Invalid parameter")
    UNAUTHORIZED = ErrorSpec(20003, 401, "Authentication Error - invalid username")
    METHOD_NOT_ALLOWED = ErrorSpec(20004, 405, "Method not allowed")
    ACCOUNT_NOT_ACTIVE = ErrorSpec(20005, 403, "Account not active", 403)
    NOT_FOUND = ErrorSpec(20404, 404, "The requested resource was not found", 404)
    FORBIDDEN = ErrorSpec(20403, 403, "Forbidden")
    MAX_TRUNKS = ErrorSpec(21244, 400, "Maximum Number of Trunks reached")
    TRUNK_VALIDATION = ErrorSpec(21245, 400, "Trunk Validation Error")
    TRUNK_DEPENDENCIES = ErrorSpec(21247, 400, "Trunk Dependencies")
    DOMAIN_TAKEN = ErrorSpec(21248, 400, "Trunk Domain already taken")
    MAX_ORIGINATION_URLS = ErrorSpec(21249, 400, "Maximum Origination URIs reached")
    INVALID_REGION = ErrorSpec(21252, 400, "Invalid Region")
    INVALID_URL = ErrorSpec(21402, 400, "Invalid Url")
    INVALID_PHONE_NUMBER = ErrorSpec(21421, 400, "Phone Number is invalid")
    CALLER_ID_ALREADY_VALIDATED = ErrorSpec(
        21450, 400, "Phone number already validated on your account"
    )
    INVALID_AREA_CODE = ErrorSpec(21451, 400, "Invalid area code")
    NO_NUMBERS_IN_AREA_CODE = ErrorSpec(21452, 400, "No phone numbers found in area code")
    # SIP rejections of termination calls (the auth service's verdicts).
    INVALID_CALLER_ID = ErrorSpec(21212, 400, "Invalid From Number (caller ID)", 403)
    TRIAL_UNVERIFIED_DESTINATION = ErrorSpec(
        32100, 403, "SIP: Trial accounts can only call verified caller IDs", 403
    )
    INVALID_SIP_HEADER = ErrorSpec(32112, 400, "SIP: Invalid header value", 400)
    TRUNK_WITHOUT_AUTHENTICATION = ErrorSpec(32200, 403, "SIP: Insufficient permissions", 403)
    SOURCE_NOT_IN_ACL = ErrorSpec(32201, 403, "SIP: Source IP address not in ACL", 403)
    BAD_CREDENTIALS = ErrorSpec(32202, 403, "SIP: Bad user credentials", 403)


class DomainError(Exception):
    """A rule of the product was broken; `message` says which, in words a user reads."""

    def __init__(self, error: Error, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.parameter = parameter

    @property
    def code(self) -> int:
        return self.error.value.code

    @property
    def http_status(self) -> int:
        return self.error.value.http_status


def invalid(parameter: str, why: str) -> DomainError:
    return DomainError(Error.INVALID_PARAMETER, f"Invalid {parameter}: {why}", parameter=parameter)


def not_found(what: str, sid: str) -> DomainError:
    return DomainError(Error.NOT_FOUND, f"The requested resource {what} {sid} was not found")
