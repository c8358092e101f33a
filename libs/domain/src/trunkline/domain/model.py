"""The nouns of Trunkline, kept under Twilio's names.

Every record is a frozen dataclass with a `KIND`, a `key` unique within its kind, and the
secondary `indexes()` it can be listed by. The store persists records generically from those
three facts, so every read is a lookup by key or a range over one index partition: the shape
a Cassandra table per access path can serve without joins.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from trunkline.domain.domains import parent_of


def utcnow() -> datetime:
    return datetime.now(UTC)


class AccountStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class AccountType(enum.StrEnum):
    TRIAL = "Trial"
    FULL = "Full"


class TransferMode(enum.StrEnum):
    DISABLE_ALL = "disable-all"
    ENABLE_ALL = "enable-all"
    SIP_ONLY = "sip-only"


class TransferCallerId(enum.StrEnum):
    FROM_TRANSFEREE = "from-transferee"
    FROM_TRANSFEROR = "from-transferor"


class RecordingMode(enum.StrEnum):
    DO_NOT_RECORD = "do-not-record"
    RECORD_FROM_RINGING = "record-from-ringing"
    RECORD_FROM_ANSWER = "record-from-answer"
    RECORD_FROM_RINGING_DUAL = "record-from-ringing-dual"
    RECORD_FROM_ANSWER_DUAL = "record-from-answer-dual"


class RecordingTrim(enum.StrEnum):
    TRIM_SILENCE = "trim-silence"
    DO_NOT_TRIM = "do-not-trim"


class HttpMethod(enum.StrEnum):
    GET = "GET"
    POST = "POST"


class NumberType(enum.StrEnum):
    LOCAL = "local"
    TOLL_FREE = "tollfree"
    MOBILE = "mobile"


class CallDirection(enum.StrEnum):
    TRUNKING_TERMINATING = "trunking-terminating"  # from the customer's PBX to the PSTN
    TRUNKING_ORIGINATING = "trunking-originating"  # from the PSTN to the customer's PBX


class CallStatus(enum.StrEnum):
    """Twilio's `call_enum_status`; the last five are final."""

    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        return self not in (CallStatus.QUEUED, CallStatus.RINGING, CallStatus.IN_PROGRESS)


# The annotations (strings, under `from __future__ import annotations`) of the fields that
# to_doc writes as ISO 8601 text and from_doc reads back as datetimes.
_DATETIME_FIELDS = frozenset({"datetime", "datetime | None"})


class Record:
    """What the store needs of a record; every noun below provides it."""

    KIND: ClassVar[str]
    date_created: datetime

    @property
    def key(self) -> str:
        raise NotImplementedError

    def indexes(self) -> Mapping[str, str]:
        """Index name -> partition value this record is listed under."""
        return {}

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, frozenset):
                value = sorted(value)
            doc[f.name] = value
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Self:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in doc:
                continue
            value = doc[f.name]
            if f.type in _DATETIME_FIELDS and isinstance(value, str):
                value = datetime.fromisoformat(value)
            elif isinstance(value, list):
                value = frozenset(value)
            values[f.name] = value
        return cls(**values)


@dataclass(frozen=True)
class Account(Record):
    KIND: ClassVar[str] = "account"
    sid: str
    friendly_name: str
    owner_account_sid: str  # the parent for a subaccount, itself for a main account
    auth_token_sha256: str  # the token itself is shown once, at creation
    status: str = AccountStatus.ACTIVE
    type: str = AccountType.FULL
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return self.sid

    @property
    def is_subaccount(self) -> bool:
        return self.owner_account_sid != self.sid

    def indexes(self) -> Mapping[str, str]:
        idx = {"owner": self.owner_account_sid}
        if not self.is_subaccount:
            idx["main"] = "all"  # the operator's list of tenants
        return idx


@dataclass(frozen=True)
class Trunk(Record):
    KIND: ClassVar[str] = "trunk"
    sid: str
    account_sid: str
    friendly_name: str | None = None
    domain_name: str | None = None
    disaster_recovery_url: str | None = None
    disaster_recovery_method: str = HttpMethod.POST
    secure: bool = False
    cnam_lookup_enabled: bool = False
    symmetric_rtp_enabled: bool = False
    transfer_mode: str = TransferMode.DISABLE_ALL
    transfer_caller_id: str = TransferCallerId.FROM_TRANSFEREE
    recording_mode: str = RecordingMode.DO_NOT_RECORD
    recording_trim: str = RecordingTrim.DO_NOT_TRIM
    # Termination limits (Trunkline extensions, not in Twilio's API); None: the platform
    # default. Excess calls are answered 503 with error 32001.
    cps_limit: int | None = None  # new calls per second, per edge (token bucket)
    concurrent_calls_limit: int | None = None  # calls in progress, per trunk (not per edge)
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    # The range the API accepts for each limit.
    MAX_CPS_LIMIT: ClassVar[int] = 10_000
    MAX_CONCURRENT_CALLS_LIMIT: ClassVar[int] = 100_000

    @property
    def key(self) -> str:
        return self.sid

    def indexes(self) -> Mapping[str, str]:
        idx = {"account": self.account_sid}
        parent = parent_of(self.domain_name) if self.domain_name else None
        if parent is not None:
            idx["parent_domain"] = parent
        return idx


@dataclass(frozen=True)
class OriginationUrl(Record):
    KIND: ClassVar[str] = "origination_url"
    sid: str
    account_sid: str
    trunk_sid: str
    friendly_name: str
    sip_url: str
    priority: int
    weight: int
    enabled: bool = True
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return self.sid

    def indexes(self) -> Mapping[str, str]:
        return {"trunk": self.trunk_sid}


@dataclass(frozen=True)
class CredentialList(Record):
    KIND: ClassVar[str] = "credential_list"
    sid: str
    account_sid: str
    friendly_name: str
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return self.sid

    def indexes(self) -> Mapping[str, str]:
        return {"account": self.account_sid}


@dataclass(frozen=True)
class Credential(Record):
    """A digest user. Only HA1 hashes under the platform realm are kept (RFC 7616 3.4.2)."""

    KIND: ClassVar[str] = "credential"
    sid: str
    account_sid: str
    credential_list_sid: str
    username: str
    realm: str
    ha1_md5: str
    ha1_sha256: str
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return self.sid

    def indexes(self) -> Mapping[str, str]:
        return {"list": self.credential_list_sid}


@dataclass(frozen=True)
class IpAccessControlList(Record):
    KIND: ClassVar[str] = "ip_access_control_list"
    sid: str
    account_sid: str
    friendly_name: str
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return self.sid

    def indexes(self) -> Mapping[str, str]:
        return {"account": self.account_sid}


@dataclass(frozen=True)
class IpAddress(Record):
    KIND: ClassVar[str] = "ip_address"
    sid: str
    account_sid: str
    ip_access_control_list_sid: str
    friendly_name: str
    ip_address: str
    cidr_prefix_length: int
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return self.sid

    def indexes(self) -> Mapping[str, str]:
        return {"list": self.ip_access_control_list_sid}


@dataclass(frozen=True)
class TrunkCredentialList(Record):
    """A credential list attached to a trunk (v1 /Trunks/{sid}/CredentialLists)."""

    KIND: ClassVar[str] = "trunk_credential_list"
    trunk_sid: str
    credential_list_sid: str
    account_sid: str
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return f"{self.trunk_sid}:{self.credential_list_sid}"

    @property
    def list_sid(self) -> str:
        return self.credential_list_sid

    def indexes(self) -> Mapping[str, str]:
        return {"trunk": self.trunk_sid, "list": self.credential_list_sid}


@dataclass(frozen=True)
class TrunkIpAccessControlList(Record):
    """An IP access control list attached to a trunk (v1 /Trunks/{sid}/IpAccessControlLists)."""

    KIND: ClassVar[str] = "trunk_ip_access_control_list"
    trunk_sid: str
    ip_access_control_list_sid: str
    account_sid: str
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return f"{self.trunk_sid}:{self.ip_access_control_list_sid}"

    @property
    def list_sid(self) -> str:
        return self.ip_access_control_list_sid

    def indexes(self) -> Mapping[str, str]:
        return {"trunk": self.trunk_sid, "list": self.ip_access_control_list_sid}


@dataclass(frozen=True)
class InventoryNumber(Record):
    """A number in the platform operator's stock, free or bought by an account."""

    KIND: ClassVar[str] = "inventory_number"
    phone_number: str
    iso_country: str
    number_type: str = NumberType.LOCAL
    friendly_name: str = ""
    locality: str | None = None
    region: str | None = None
    postal_code: str | None = None
    rate_center: str | None = None
    lata: str | None = None
    latitude: str | None = None
    longitude: str | None = None
    capabilities: frozenset[str] = frozenset({"voice", "sms", "mms"})
    address_requirements: str = "none"
    beta: bool = False
    owner_phone_number_sid: str | None = None
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return self.phone_number

    @property
    def area_code(self) -> str | None:
        """The NANP area code (NPA) of a +1 number."""
        if self.phone_number.startswith("+1") and len(self.phone_number) == 12:
            return self.phone_number[2:5]
        return None

    def indexes(self) -> Mapping[str, str]:
        idx = {"country": self.iso_country}
        if self.area_code is not None:
            idx["country_area"] = f"{self.iso_country}:{self.area_code}"
        if self.owner_phone_number_sid is not None:
            return idx
        partition = f"{self.iso_country}:{self.number_type}"
        idx["available"] = partition
        if self.area_code is not None:
            idx["available_area"] = f"{partition}:{self.area_code}"
        return idx


@dataclass(frozen=True)
class PhoneNumber(Record):
    """An IncomingPhoneNumber: a DID owned by an account, tied to at most one trunk."""

    KIND: ClassVar[str] = "phone_number"
    sid: str
    account_sid: str
    phone_number: str
    friendly_name: str
    iso_country: str
    number_type: str = NumberType.LOCAL
    capabilities: frozenset[str] = frozenset({"voice", "sms", "mms"})
    address_requirements: str = "none"
    beta: bool = False
    trunk_sid: str | None = None
    voice_url: str | None = None
    voice_method: str = HttpMethod.POST
    voice_fallback_url: str | None = None
    voice_fallback_method: str = HttpMethod.POST
    voice_caller_id_lookup: bool = False
    status_callback: str | None = None
    status_callback_method: str = HttpMethod.POST
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return self.sid

    def indexes(self) -> Mapping[str, str]:
        idx = {"account": self.account_sid}
        if self.trunk_sid is not None:
            idx["trunk"] = self.trunk_sid
        return idx


@dataclass(frozen=True)
class OutgoingCallerId(Record):
    KIND: ClassVar[str] = "outgoing_caller_id"
    sid: str
    account_sid: str
    phone_number: str
    friendly_name: str
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return self.sid

    def indexes(self) -> Mapping[str, str]:
        return {"account": self.account_sid}


@dataclass(frozen=True)
class CallerIdValidation(Record):
    """A pending ValidationRequest: the account proves it owns a number with the code."""

    KIND: ClassVar[str] = "caller_id_validation"
    account_sid: str
    phone_number: str
    friendly_name: str
    validation_code: str
    date_created: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return f"{self.account_sid}:{self.phone_number}"

    def indexes(self) -> Mapping[str, str]:
        return {"account": self.account_sid}


@dataclass(frozen=True)
class Call(Record):
    """One trunked call, its CDR: Twilio's 2010-04-01 Call resource.

    Signaling writes it when the call starts and again at each state change (ringing,
    answered, ended), keeping `date_created` (its place in the lists) and the SID. Times are
    UTC. `duration` is the answered time in whole seconds, set when an answered call ends;
    `sip_response_code` is the final SIP status (200 for an answered call, whoever hung up).
    """

    KIND: ClassVar[str] = "call"
    sid: str
    account_sid: str
    direction: str  # CallDirection
    from_: str
    to: str
    status: str = CallStatus.QUEUED
    trunk_sid: str | None = None
    parent_call_sid: str | None = None
    phone_number_sid: str | None = None  # the DID (origination) or caller ID (termination)
    start_time: datetime | None = None
    answer_time: datetime | None = None
    end_time: datetime | None = None
    duration: int | None = None
    sip_response_code: int | None = None
    error_code: int | None = None  # Twilio's code when the platform refused or ended the call
    edge: str | None = None
    sip_call_id: str | None = None  # of the customer-side leg
    caller_name: str | None = None  # CNAM, origination only
    forwarded_from: str | None = None  # the Diversion number, origination only
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return self.sid

    def indexes(self) -> Mapping[str, str]:
        idx = {"account": self.account_sid}
        if self.trunk_sid is not None:
            idx["trunk"] = self.trunk_sid
        return idx


@dataclass(frozen=True)
class CnamEntry(Record):
    """The caller name (CNAM) of a North American number, from the platform operator's table.

    Calling Name Delivery carries at most 15 characters of printable ASCII (Telcordia
    GR-1188-CORE), so that is what a name may be: the operator's import refuses anything
    else (`name_problem`), and a name from an outside provider is cut to fit (`clean_name`).
    """

    KIND: ClassVar[str] = "cnam_entry"
    MAX_NAME_LENGTH: ClassVar[int] = 15
    phone_number: str  # E.164, +1 and ten digits
    caller_name: str
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return self.phone_number

    @staticmethod
    def name_problem(name: str) -> str | None:
        """Why `name` cannot be a caller name, or None when it can."""
        if not name.strip():
            return "caller_name is empty"
        if len(name) > CnamEntry.MAX_NAME_LENGTH:
            return (
                f"caller_name {name!r} is longer than {CnamEntry.MAX_NAME_LENGTH} characters "
                f"({len(name)})"
            )
        if not all(" " <= c <= "~" for c in name):
            return f"caller_name {name!r} is not printable ASCII"
        if name != name.strip():
            return f"caller_name {name!r} starts or ends with a space"
        return None

    @staticmethod
    def clean_name(text: str) -> str:
        """`text` as a caller name: printable ASCII only, spaces collapsed, cut to 15
        characters; empty when nothing is left."""
        kept = "".join(c if " " <= c <= "~" else " " for c in text)
        return " ".join(kept.split())[: CnamEntry.MAX_NAME_LENGTH].rstrip()


ALL_KINDS: tuple[type[Record], ...] = (
    Account,
    Trunk,
    OriginationUrl,
    CredentialList,
    Credential,
    IpAccessControlList,
    IpAddress,
    TrunkCredentialList,
    TrunkIpAccessControlList,
    InventoryNumber,
    PhoneNumber,
    OutgoingCallerId,
    CallerIdValidation,
    Call,
    CnamEntry,
)
