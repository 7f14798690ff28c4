"""Generic JSON over HTTP: a URL answering the members, an auth header, the JSON path to the keys, and how it pages.

Paths are dotted (``data.members``; an integer picks a list element; empty: the whole document). The items at
``items_path`` are keys, or objects whose ``key_path`` holds the key. Paging: ``none``; ``page`` (a page-number
parameter, and optionally a page-size one, until a page comes back empty or short); ``cursor`` (the answer's
``cursor_path`` goes back as ``cursor_param`` until it is empty); ``next_link`` (follow the URL at ``next_path``, on
the same host, until it is empty). ``{remote_id}`` in ``url`` is replaced by the remote list's id; the lists come from
``lists_url`` when set, else the URL is one list, ``default``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cohorta.sources.connectors.base import (
    MAX_PAGES,
    Context,
    RemoteSegment,
    SourceError,
    Url,
    get_json,
    key_text,
    safe_url,
    same_origin,
)

DEFAULT_LIST = "default"
Path = Annotated[str, StringConstraints(max_length=255, pattern=r"^[A-Za-z0-9_$@-]*(\.[A-Za-z0-9_$@-]+)*$")]
Param = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_$.\[\]-]+$")]


class JsonConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url = Field(description="The members' URL; `{remote_id}` is replaced by the list's id")
    auth_header: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,64}$")] | None = Field(
        default=None, description="Header name, e.g. Authorization; its value is the credential `header_value`"
    )
    items_path: Path = Field(default="", description="Dotted path to the list of members")
    key_path: Path | None = Field(default=None, description="In each member object, the path to the key")
    paging: Literal["none", "page", "cursor", "next_link"] = "none"
    page_param: Param = "page"
    first_page: int = Field(default=1, ge=0)
    size_param: Param | None = None
    page_size: int = Field(default=1000, ge=1, le=100_000)
    cursor_param: Param = "cursor"
    cursor_path: Path = "next_cursor"
    next_path: Path = "next"
    lists_url: Url | None = Field(default=None, description="Where the remote lists are listed")
    lists_path: Path = ""
    list_id_path: Path = "id"
    list_name_path: Path = "name"


class JsonCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    header_value: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None


def at_path(document: Any, path: str, where: str) -> Any:
    """The value at a dotted path; a missing step is malformed data."""
    value = document
    for step in path.split(".") if path else []:
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.lstrip("-").isdecimal() and -len(value) <= int(step) < len(value):
            value = value[int(step)]
        else:
            raise SourceError(f"{where}: nothing at {path!r} in the answer")
    return value


class JsonConnector:
    def __init__(self, config: JsonConfig, ctx: Context) -> None:
        self.config, self.ctx = config, ctx

    def _headers(self) -> dict[str, str]:
        value = self.ctx.credentials.get("header_value")
        return {self.config.auth_header: value} if self.config.auth_header and value else {}

    def _get(self, url: str, params: dict[str, Any] | None = None) -> Any:
        return get_json(self.ctx.http, url, params=params, headers=self._headers())

    def _items(self, document: Any, url: str) -> list[Any]:
        items = at_path(document, self.config.items_path, safe_url(url))
        if not isinstance(items, list):
            raise SourceError(f"{safe_url(url)}: {self.config.items_path or 'the answer'!r} is not a list")
        return items

    def _keys(self, items: list[Any], url: str) -> list[str]:
        where = safe_url(url)
        if self.config.key_path is None:
            return [key_text(item, where) for item in items]
        return [key_text(at_path(item, self.config.key_path, where), where) for item in items]

    def test(self) -> str:
        if self.config.lists_url:
            return f"{len(self.remote_segments())} lists"
        url = self.config.url.replace("{remote_id}", DEFAULT_LIST)
        first = self._items(self._get(url, self._first_params()), url)
        return f"the first page has {len(first)} members"

    def remote_segments(self) -> list[RemoteSegment]:
        if not self.config.lists_url:
            return [RemoteSegment(id=DEFAULT_LIST, name="the whole answer")]
        url = self.config.lists_url
        lists = at_path(self._get(url), self.config.lists_path, safe_url(url))
        if not isinstance(lists, list):
            raise SourceError(f"{safe_url(url)}: the lists are not a list")
        found = []
        for item in lists:
            remote_id = key_text(at_path(item, self.config.list_id_path, safe_url(url)), safe_url(url))
            name = at_path(item, self.config.list_name_path, safe_url(url))
            found.append(RemoteSegment(id=remote_id, name=str(name)[:255]))
        return found

    def _first_params(self) -> dict[str, Any]:
        c = self.config
        params: dict[str, Any] = {}
        if c.paging == "page":
            params[c.page_param] = c.first_page
        if c.size_param and c.paging in ("page", "cursor"):
            params[c.size_param] = c.page_size
        return params

    def fetch(self, remote_id: str) -> Iterator[list[str]]:
        c = self.config
        url = c.url.replace("{remote_id}", quote(remote_id, safe=""))
        params = self._first_params()
        seen_cursors: set[str] = set()
        for _ in range(MAX_PAGES):
            document = self._get(url, params)
            items = self._items(document, url)
            if items:
                yield self._keys(items, url)
            if c.paging == "none":
                return
            if c.paging == "page":
                if not items or (c.size_param and len(items) < c.page_size):
                    return
                params = {**params, c.page_param: params[c.page_param] + 1}
                continue
            path = c.cursor_path if c.paging == "cursor" else c.next_path
            following = at_path(document, path, safe_url(url)) if _has(document, path) else None
            if following in (None, ""):
                return
            if not isinstance(following, str | int) or isinstance(following, bool):
                raise SourceError(f"{safe_url(url)}: {path!r} is not a string")
            if str(following) in seen_cursors:
                raise SourceError(f"{safe_url(url)}: the answer points to a page already read (a paging loop)")
            seen_cursors.add(str(following))
            if c.paging == "cursor":
                params = {**params, c.cursor_param: following}
            else:
                url, params = same_origin(url, str(following)), {}
        raise SourceError(f"more than {MAX_PAGES} pages")


def _has(document: Any, path: str) -> bool:
    try:
        at_path(document, path, "")
    except SourceError:
        return False
    return True
