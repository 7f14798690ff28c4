"""Emarsys contact lists and segments over its Core API v2, as Emarsys documents it.

- Every answer is wrapped: ``{"replyCode": 0, "replyText": "OK", "data": ...}``; a non-zero replyCode is a failure
  even with a 2xx status.
- Authentication ``wsse``: an ``X-WSSE: UsernameToken Username="...", PasswordDigest="...", Nonce="...",
  Created="..."`` header on every request, the digest being base64 of the SHA-1 (as lowercase hex, as Emarsys's own
  samples compute it) of nonce + created + secret, created in ISO 8601 UTC from the clock (Emarsys accepts 5
  minutes of skew). ``oauth2``: client credentials at ``token_url`` (HTTP basic auth, ``grant_type=client_credentials``)
  give a bearer token, fetched once per sync and again once after a 401.
- Lists: ``GET /api/v2/contactlist``; a list's members are contact ids from ``GET
  /api/v2/contactlist/{id}/contactIds`` paged with ``$top`` and ``$skiptoken`` (``data.value``; ``data.next`` is
  the next page's URL, or null on the last).
- Segments (assumed shape, see docs/sources.md): ``GET /api/v2/filter`` lists them; ``POST
  /api/v2/filter/{id}/runs`` starts a run (``data.run_id``), ``GET /api/v2/filter/runs/{run_id}`` is polled until
  ``data.status`` is ``done``; then ``data.result.contact_ids`` are the members and ``data.result.next_href`` the
  next page.
- Contact ids are turned into the key field with ``POST /api/v2/contact/getdata`` (``keyId: "id"``, at most 1,000
  ids a request), reading field ``key_field_id`` (3 is the email on a default account). ``key_field_id: "id"`` uses
  the contact ids themselves.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cohorta.sources.connectors.base import (
    MAX_PAGES,
    Context,
    RemoteSegment,
    SourceError,
    Url,
    json_of,
    key_text,
    same_origin,
    send,
)

GETDATA_BATCH = 1_000  # contact ids per getdata request, Emarsys's limit
LIST_PREFIX, SEGMENT_PREFIX = "list:", "segment:"


class EmarsysConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: Url = "https://api.emarsys.net"
    auth: Literal["wsse", "oauth2"] = "wsse"
    token_url: Url = "https://auth.emarsys.net/oauth2/token"
    key_field_id: Annotated[str, StringConstraints(pattern=r"^(id|[0-9]{1,9})$")] = Field(
        default="3", description="The Emarsys field holding the key (3: email on a default account; id: contact id)"
    )
    page_size: int = Field(default=10_000, ge=1, le=100_000, description="$top: contact ids per page")
    include_segments: bool = Field(default=True, description="List Emarsys segments (filters) beside contact lists")
    poll_interval_seconds: float = Field(default=2.0, ge=0, le=60)
    run_timeout_seconds: float = Field(default=600.0, gt=0, le=3600)


class EmarsysCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    secret: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    client_secret: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None


REQUIRED = {"wsse": ("username", "secret"), "oauth2": ("client_id", "client_secret")}


def wsse_header(username: str, secret: str, nonce: str, created: str) -> str:
    digest = base64.b64encode(hashlib.sha1((nonce + created + secret).encode()).hexdigest().encode()).decode()
    return f'UsernameToken Username="{username}", PasswordDigest="{digest}", Nonce="{nonce}", Created="{created}"'


class EmarsysConnector:
    def __init__(self, config: EmarsysConfig, ctx: Context) -> None:
        self.config, self.ctx = config, ctx
        self._token: str | None = None
        missing = [name for name in REQUIRED[config.auth] if not ctx.credentials.get(name)]
        if missing:
            raise SourceError(f"{config.auth} authentication needs the credentials {', '.join(missing)}")

    # --- transport ------------------------------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        creds = self.ctx.credentials
        if self.config.auth == "wsse":
            created = self.ctx.clock.now().strftime("%Y-%m-%dT%H:%M:%S+00:00")
            return {"X-WSSE": wsse_header(creds["username"], creds["secret"], secrets.token_hex(16), created)}
        if self._token is None:
            self._token = self._fetch_token()
        return {"Authorization": f"Bearer {self._token}"}

    def _fetch_token(self) -> str:
        creds = self.ctx.credentials
        response = send(
            self.ctx.http, "POST", self.config.token_url,
            data={"grant_type": "client_credentials"}, auth=(creds["client_id"], creds["client_secret"]),
        )  # fmt: skip
        if not response.is_success:
            raise SourceError(f"the OAuth token endpoint answered {response.status_code}")
        body = json_of(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceError("the OAuth token endpoint answered no access_token")
        return token

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; the ``data`` of a successful reply."""
        url = same_origin(self.config.base_url, path)
        response = send(self.ctx.http, method, url, headers=self._auth_headers(), **kwargs)
        if response.status_code == 401 and self.config.auth == "oauth2":  # the token expired: one fresh try
            self._token = None
            response = send(self.ctx.http, method, url, headers=self._auth_headers(), **kwargs)
        return self._data(response, f"{method} {urlsplit(url).path}")

    @staticmethod
    def _data(response: httpx.Response, what: str) -> Any:
        try:
            body = json_of(response)
        except SourceError:
            if not response.is_success:
                raise SourceError(f"Emarsys answered {response.status_code} to {what}") from None
            raise
        if not isinstance(body, dict) or "replyCode" not in body:
            raise SourceError(f"Emarsys answered {what} without a replyCode")
        if not response.is_success or body["replyCode"] != 0:
            text = str(body.get("replyText", ""))[:200]
            raise SourceError(
                f"Emarsys answered {response.status_code} to {what}: {text} (replyCode {body['replyCode']})"
            )
        return body.get("data")

    # --- the connector --------------------------------------------------------------------------------------------

    def test(self) -> str:
        self._call("GET", "/api/v2/settings")
        return f"authenticated with {self.config.auth}"

    def remote_segments(self) -> list[RemoteSegment]:
        found = [RemoteSegment(LIST_PREFIX + i, n, "list") for i, n in self._named("/api/v2/contactlist")]
        if self.config.include_segments:
            found += [RemoteSegment(SEGMENT_PREFIX + i, n, "segment") for i, n in self._named("/api/v2/filter")]
        return found

    def _named(self, path: str) -> list[tuple[str, str]]:
        data = self._call("GET", path)
        if not isinstance(data, list) or not all(isinstance(d, dict) and "id" in d for d in data):
            raise SourceError(f"Emarsys answered GET {path} with data that is not a list of objects with ids")
        return [(str(d["id"]), str(d.get("name") or d["id"])[:255]) for d in data]

    def fetch(self, remote_id: str) -> Iterator[list[str]]:
        kind, _, number = remote_id.partition(":")
        if not number.isdecimal() or f"{kind}:" not in (LIST_PREFIX, SEGMENT_PREFIX):
            raise SourceError(f"no Emarsys list or segment {remote_id!r}: ids look like list:123 or segment:45")
        pages = self._list_ids(number) if f"{kind}:" == LIST_PREFIX else self._segment_ids(number)
        for ids in pages:
            yield self._keys(ids)

    def _list_ids(self, list_id: str) -> Iterator[list[str]]:
        path = f"/api/v2/contactlist/{list_id}/contactIds"
        params: dict[str, Any] = {"$top": self.config.page_size}
        for _ in range(MAX_PAGES):
            data = self._call("GET", path, params=params)
            if not isinstance(data, dict) or not isinstance(data.get("value"), list):
                raise SourceError(f"Emarsys answered GET {path} without a data.value list")
            yield [key_text(v, path) for v in data["value"]]
            following = data.get("next")
            if not following:
                return
            token = parse_qs(urlsplit(str(following)).query).get("$skiptoken")
            if not token:
                raise SourceError(f"Emarsys answered GET {path} with a next link without $skiptoken")
            if token[0] == params.get("$skiptoken"):
                raise SourceError(f"Emarsys answered GET {path} with the same $skiptoken again (a paging loop)")
            params = {"$top": self.config.page_size, "$skiptoken": token[0]}
        raise SourceError(f"more than {MAX_PAGES} pages")

    def _segment_ids(self, segment_id: str) -> Iterator[list[str]]:
        started = self._call("POST", f"/api/v2/filter/{segment_id}/runs", json={})
        run_id = started.get("run_id") if isinstance(started, dict) else None
        if not isinstance(run_id, str | int) or isinstance(run_id, bool):
            raise SourceError("Emarsys started a segment run without a run_id")
        path = f"/api/v2/filter/runs/{run_id}"
        deadline = time.monotonic() + self.config.run_timeout_seconds
        data = self._call("GET", path)
        while not (isinstance(data, dict) and data.get("status") == "done"):
            status = data.get("status") if isinstance(data, dict) else None
            if status not in ("in_progress", "waiting", "running"):
                raise SourceError(f"the Emarsys segment run {run_id} ended with status {status!r}")
            if time.monotonic() > deadline:
                raise SourceError(
                    f"the Emarsys segment run {run_id} took longer than {self.config.run_timeout_seconds:g} s"
                )
            self.ctx.sleep(self.config.poll_interval_seconds)
            data = self._call("GET", path)
        for _ in range(MAX_PAGES):
            result = data.get("result")
            if not isinstance(result, dict) or not isinstance(result.get("contact_ids"), list):
                raise SourceError(f"the Emarsys segment run {run_id} answered no result.contact_ids list")
            yield [key_text(v, "segment run") for v in result["contact_ids"]]
            following = result.get("next_href")
            if not following:
                return
            data = self._call("GET", str(following))
        raise SourceError(f"more than {MAX_PAGES} pages")

    def _keys(self, contact_ids: list[str]) -> list[str]:
        """Contact ids as keys: themselves, or the key field's values (a contact without one: an empty key)."""
        field = self.config.key_field_id
        if field == "id":
            return contact_ids
        keys: list[str] = []
        for start in range(0, len(contact_ids), GETDATA_BATCH):
            batch = contact_ids[start : start + GETDATA_BATCH]
            data = self._call(
                "POST", "/api/v2/contact/getdata", json={"keyId": "id", "keyValues": batch, "fields": [field]}
            )
            result = data.get("result") if isinstance(data, dict) else None
            if result is False:  # Emarsys says "false" when none of them was found
                result = []
            if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
                raise SourceError("Emarsys answered POST /api/v2/contact/getdata without a result list")
            found = [key_text(r.get(field), "getdata") for r in result]
            keys += found + [""] * (len(batch) - len(found))  # ids with no contact: members without a key
        return keys
