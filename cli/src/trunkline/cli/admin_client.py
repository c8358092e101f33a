"""A small client for the API's admin endpoints (/admin/v1), used by `up` and `admin`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_TIMEOUT_SECONDS = 30.0
# Twilio's largest page; fewer round trips when walking a whole inventory.
PAGE_SIZE = 1000


class AdminError(RuntimeError):
    """An admin request failed; str() is one line fit for a terminal."""


def _describe_error(response: httpx.Response) -> str:
    # The API answers errors Twilio-style: {code, message, more_info, status}.
    prefix = f"{response.request.method} {response.request.url.path}: HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "message" in body:
        code = body.get("code")
        coded = f" (code {code})" if code is not None else ""
        return f"{prefix}{coded}: {body['message']}"
    text = " ".join(response.text.split())[:200]
    return f"{prefix}: {text or response.reason_phrase}"


def _is_import_report(response: httpx.Response) -> bool:
    """A 400 whose body lists the CSV lines the API rejected."""
    if response.status_code != 400:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("errors"))


class AdminClient:
    def __init__(
        self,
        api_url: str,
        admin_token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(
        self, method: str, path: str, *, import_report: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """The API's answer; AdminError when it failed, except (with `import_report`) a CSV
        import's 400 that lists the rejected lines: the caller shows those."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise AdminError(
                f"cannot reach the API at {self.api_url} ({error}); is `trunkline up` running?"
            ) from error
        if response.is_error and not (import_report and _is_import_report(response)):
            raise AdminError(_describe_error(response))
        return response

    def _request(
        self, method: str, path: str, *, import_report: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        """The JSON object the API answered (see `_send` for errors)."""
        response = self._send(method, path, import_report=import_report, **kwargs)
        try:
            body = response.json()
        except ValueError as error:
            raise AdminError(f"{method} {path}: the API did not answer JSON") from error
        if not isinstance(body, dict):
            raise AdminError(f"{method} {path}: the API answered JSON that is not an object")
        return body

    def _import_csv(self, path: str, csv_text: str) -> dict[str, Any]:
        return self._request(
            "POST",
            path,
            import_report=True,
            content=csv_text.encode("utf-8"),
            headers={"Content-Type": "text/csv"},
        )

    def _all_pages(self, path: str, key: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every item of a paged listing, following meta.next_page_url to the end."""
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        target: str = path
        query: dict[str, str] | None = {"PageSize": str(PAGE_SIZE), **params}
        while True:
            body = self._request("GET", target, params=query)
            items.extend(body.get(key, []))
            next_url = (body.get("meta") or {}).get("next_page_url")
            if not next_url:
                return items
            # Only the path and query: the API names its public URL, which may not be ours.
            # (params=None, not {}: an empty mapping would replace the URL's query.)
            target, query = httpx.URL(next_url).raw_path.decode("ascii"), None
            if target in seen:
                raise AdminError(f"GET {path}: the API's pages loop back to {target}")
            seen.add(target)

    def create_account(self, friendly_name: str, account_type: str | None = None) -> dict[str, Any]:
        form = {"FriendlyName": friendly_name}
        if account_type is not None:
            form["Type"] = account_type
        return self._request("POST", "/admin/v1/Accounts", data=form)

    def list_accounts(self) -> list[dict[str, Any]]:
        return self._all_pages("/admin/v1/Accounts", "accounts", {})

    def import_numbers(self, csv_text: str) -> dict[str, Any]:
        return self._import_csv("/admin/v1/PhoneNumbers/Import", csv_text)

    def import_cnam(self, csv_text: str) -> dict[str, Any]:
        return self._import_csv("/admin/v1/Cnam/Import", csv_text)

    def fetch_cnam(self, phone_number: str) -> dict[str, Any]:
        return self._request("GET", f"/admin/v1/Cnam/{quote(phone_number, safe='')}")

    def delete_cnam(self, phone_number: str) -> None:
        self._send("DELETE", f"/admin/v1/Cnam/{quote(phone_number, safe='')}")

    def list_numbers(self, filters: Mapping[str, str]) -> list[dict[str, Any]]:
        return self._all_pages("/admin/v1/PhoneNumbers", "phone_numbers", filters)

    def verify_caller_id(
        self, account_sid: str, phone_number: str, friendly_name: str | None = None
    ) -> dict[str, Any]:
        form = {"PhoneNumber": phone_number}
        if friendly_name is not None:
            form["FriendlyName"] = friendly_name
        return self._request(
            "POST", f"/admin/v1/Accounts/{account_sid}/OutgoingCallerIds", data=form
        )
