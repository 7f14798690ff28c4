"""What every connector offers, and the HTTP helpers they share.

A connector is built from its validated config, the decrypted credentials and a context (HTTP client, clock, limits).
It can test the connection, list the remote segments or lists, and fetch the members of one as pages of external keys
(an iterator, so that memory stays bounded by a page). Every failure of the remote system is a ``SourceError`` whose
message is safe to show and to log: it never carries credentials, headers or query strings.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import AfterValidator, StringConstraints

from cohorta.clock import Clock

MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # one remote answer (one page) at most
MAX_PAGES = 100_000  # a paging loop that never ends is a remote bug
KEY_PAGE = 10_000  # keys per page handed to the sync, for sources that do not page themselves


class SourceError(Exception):
    """The remote failed: timeout, error status, malformed data, or a configuration it refuses."""


@dataclass(frozen=True)
class RemoteSegment:
    id: str
    name: str
    kind: str = "list"
    size: int | None = None


@dataclass
class Context:
    http: httpx.Client
    clock: Clock
    credentials: dict[str, str] = field(default_factory=dict)
    content: str | None = None  # an uploaded file (csv)
    sleep: Callable[[float], None] = time.sleep  # between polls (Emarsys segment runs)


class Connector(Protocol):
    def test(self) -> str:
        """Reach the remote system with the configured credentials; a short description of what answered."""
        ...

    def remote_segments(self) -> list[RemoteSegment]:
        """The segments or lists that can be imported."""
        ...

    def fetch(self, remote_id: str) -> Iterator[list[str]]:
        """The members of one remote segment as pages of external keys (an empty string: a member without a key)."""
        ...


SECRET_PARAMETER = re.compile(r"token|key|secret|pass|sig|auth|credential", re.IGNORECASE)


def _checked_url(value: str) -> str:
    """A source's URL: http(s) with a host, and no user:password@ (a header with the credential header_value carries
    those, encrypted). A query may carry a signature (a presigned download): it is redacted where settings are shown
    (``redacted_url``)."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// URL with a host")
    if url.userinfo:
        raise ValueError("credentials do not belong in the URL (settings are shown to every reader): use credentials")
    return value


def redacted_url(value: str) -> str:
    """The URL with the values of query parameters that look secret replaced by "***", for showing settings."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        return safe_url(value)
    params = [(k, "***" if SECRET_PARAMETER.search(k) else v) for k, v in url.params.multi_items()]
    return str(url.copy_with(params=params)) if params else value


Url = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_checked_url)]


def safe_url(url: str) -> str:
    """A URL fit for messages and logs: scheme, host and path only (a query may carry a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def same_origin(base: str, url: str) -> str:
    """``url`` resolved against ``base``; refused when it leaves the base's scheme and host (credentials would
    follow it)."""
    resolved = urljoin(base, url)
    a, b = urlsplit(base), urlsplit(resolved)
    if (a.scheme, a.netloc) != (b.scheme, b.netloc):
        raise SourceError(f"the next page points to another host ({safe_url(resolved)}); refused")
    return resolved


def send(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request; transport failures, timeouts, malformed URLs and oversized answers become SourceError. The body
    is read as a stream and given up past MAX_RESPONSE_BYTES, so a remote cannot fill the server's memory. The
    status is the caller's to judge."""
    try:
        with client.stream(method, url, **kwargs) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise SourceError(f"{method} {safe_url(url)} answered more than {MAX_RESPONSE_BYTES} bytes")
    except httpx.TimeoutException:
        raise SourceError(f"{method} {safe_url(url)} timed out") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise SourceError(f"{method} {safe_url(url)} failed: {type(exc).__name__}") from None
    # The body read above, kept on a response that no longer needs its stream.
    return httpx.Response(response.status_code, headers=response.headers, content=bytes(body),
                          request=response.request)  # fmt: skip


def json_of(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        raise SourceError(f"{safe_url(str(response.url))} answered malformed JSON") from None


def get_json(client: httpx.Client, url: str, **kwargs: Any) -> Any:
    """GET and parse JSON; an error status is a SourceError."""
    response = send(client, "GET", url, **kwargs)
    if not response.is_success:
        raise SourceError(f"GET {safe_url(url)} answered {response.status_code}")
    return json_of(response)


def key_text(value: Any, where: str) -> str:
    """A key as text: strings and integers are keys; null is a member without a key; anything else is malformed."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise SourceError(f"{where}: a key must be a string or an integer, not {type(value).__name__}")
    return str(value).strip()


def pages(keys: Iterator[str], size: int = KEY_PAGE) -> Iterator[list[str]]:
    page: list[str] = []
    for key in keys:
        page.append(key)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page
