"""Run the real auth service as a process, for component and end-to-end tests.

with auth_service(tmp_path, "sqlite:///" + str(tmp_path / "t.db")) as auth:
    stub = auth.stub(grpc.insecure_channel(auth.grpc_address))
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from trunkline.domain import claims
from trunkline.domain.credentials import ha1
from trunkline.domain.model import (
    Account,
    AccountStatus,
    AccountType,
    Credential,
    CredentialList,
    IpAccessControlList,
    IpAddress,
    OutgoingCallerId,
    PhoneNumber,
    Trunk,
    TrunkCredentialList,
    TrunkIpAccessControlList,
)
from trunkline.domain.sid import new_sid
from trunkline.store import Batch, Repository
from trunkline.telemetry.testing import service_process
from trunkline.v1 import auth_pb2_grpc

__all__ = ["AuthProcess", "ConfigWriter", "auth_service"]


@dataclass(frozen=True)
class AuthProcess:
    process: subprocess.Popen[bytes]
    grpc_address: str
    log: Path

    def stub(self, channel: grpc.Channel) -> auth_pb2_grpc.AuthStub:
        return auth_pb2_grpc.AuthStub(channel)


@contextmanager
def auth_service(
    log_dir: Path,
    store_url: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> Iterator[AuthProcess]:
    """Start `python -m trunkline.auth` on a free loopback port against `store_url`; return
    once its gRPC server accepts calls; stop it (SIGTERM) afterwards. `env` adds to or
    overrides the environment (TRUNKLINE_REALM, TRUNKLINE_AUTH_NONCE_SECRET, ...)."""
    with service_process(
        "trunkline.auth",
        log_dir,
        address_variable="TRUNKLINE_AUTH_GRPC_ADDRESS",
        env={"TRUNKLINE_STORE": store_url, **(env or {})},
        timeout=timeout,
    ) as running:
        yield AuthProcess(running.process, running.grpc_address, running.log)


class ConfigWriter:
    """Writes configuration records the way the API does, each with the claims that find
    it, for tests of services that read them (auth, signaling). Passwords are kept only as
    HA1 under `realm`, as the API keeps them."""

    def __init__(self, store: Repository, *, realm: str) -> None:
        self.store = store
        self.realm = realm

    async def account(self, *, trial: bool = False, status: str = AccountStatus.ACTIVE) -> Account:
        sid = new_sid("AC")
        account = Account(
            sid=sid,
            friendly_name="Acme",
            owner_account_sid=sid,
            auth_token_sha256="0" * 64,
            status=status,
            type=AccountType.TRIAL if trial else AccountType.FULL,
        )
        await self.store.apply(Batch().put(account))
        return account

    async def trunk(self, account: Account, domain_name: str | None = None) -> Trunk:
        sid = new_sid("TK")
        domain = domain_name or f"t{sid[-12:]}.pstn.trunkline.test"
        trunk = Trunk(sid=sid, account_sid=account.sid, domain_name=domain)
        await self.store.apply(Batch().put(trunk).claim(claims.TRUNK_DOMAIN, domain, sid))
        return trunk

    async def acl(self, trunk: Trunk, *cidrs: str) -> IpAccessControlList:
        acl = IpAccessControlList(
            sid=new_sid("AL"), account_sid=trunk.account_sid, friendly_name="office"
        )
        batch = Batch().put(acl)
        for cidr in cidrs:
            address, _, prefix = cidr.partition("/")
            batch.put(
                IpAddress(
                    sid=new_sid("IP"),
                    account_sid=trunk.account_sid,
                    ip_access_control_list_sid=acl.sid,
                    friendly_name=cidr,
                    ip_address=address,
                    cidr_prefix_length=int(prefix or (128 if ":" in address else 32)),
                )
            )
        batch.put(
            TrunkIpAccessControlList(
                trunk_sid=trunk.sid,
                ip_access_control_list_sid=acl.sid,
                account_sid=trunk.account_sid,
            )
        )
        await self.store.apply(batch)
        return acl

    async def credentials(
        self, trunk: Trunk, users: dict[str, str], *, realm: str | None = None
    ) -> CredentialList:
        credential_list = CredentialList(
            sid=new_sid("CL"), account_sid=trunk.account_sid, friendly_name="pbx"
        )
        batch = Batch().put(credential_list)
        for username, password in users.items():
            hashed_in = realm or self.realm
            credential = Credential(
                sid=new_sid("CR"),
                account_sid=trunk.account_sid,
                credential_list_sid=credential_list.sid,
                username=username,
                realm=hashed_in,
                ha1_md5=ha1("MD5", username, hashed_in, password),
                ha1_sha256=ha1("SHA-256", username, hashed_in, password),
            )
            batch.put(credential).claim(
                claims.CREDENTIAL_USERNAME,
                f"{credential_list.sid}:{username}",
                credential.sid,
            )
        batch.put(
            TrunkCredentialList(
                trunk_sid=trunk.sid,
                credential_list_sid=credential_list.sid,
                account_sid=trunk.account_sid,
            )
        )
        await self.store.apply(batch)
        return credential_list

    async def number(self, account: Account, e164: str) -> PhoneNumber:
        number = PhoneNumber(
            sid=new_sid("PN"),
            account_sid=account.sid,
            phone_number=e164,
            friendly_name=e164,
            iso_country="US",
        )
        await self.store.apply(Batch().put(number).claim(claims.PHONE_NUMBER, e164, number.sid))
        return number

    async def caller_id(self, account: Account, e164: str) -> OutgoingCallerId:
        caller_id = OutgoingCallerId(
            sid=new_sid("PN"), account_sid=account.sid, phone_number=e164, friendly_name=e164
        )
        await self.store.apply(
            Batch()
            .put(caller_id)
            .claim(claims.CALLER_ID, claims.caller_id_claim(account.sid, e164), caller_id.sid)
        )
        return caller_id
