"""CSV: an uploaded file (stored with the source) or a file at a URL, one row per member, the key in a named column.

Without ``list_column`` the file is one remote list (id ``file``). With it, each distinct value of that column is a
list of its own, so one file can feed several segments.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cohorta.sources.connectors.base import Context, RemoteSegment, SourceError, Url, key_text, pages, safe_url

WHOLE_FILE = "file"
MAX_LISTS = 1_000
MAX_CONTENT_BYTES = 16 * 1024 * 1024  # an uploaded file


class CsvConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url | None = Field(
        default=None, description="Where to download the file; leave out to upload it as `content`"
    )
    key_column: Annotated[str, StringConstraints(min_length=1, max_length=255)] = "email"
    delimiter: Annotated[str, StringConstraints(min_length=1, max_length=1)] = ","
    list_column: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = Field(
        default=None, description="A column whose values name lists; each value is a remote list"
    )
    auth_header: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,64}$")] | None = Field(
        default=None, description="Header sent with the download; its value is the credential `header_value`"
    )


class CsvCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    header_value: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None


class CsvConnector:
    def __init__(self, config: CsvConfig, ctx: Context) -> None:
        self.config, self.ctx = config, ctx

    def _rows(self) -> Iterator[dict[str, str]]:
        if self.config.url is None:
            if self.ctx.content is None:
                raise SourceError("no file: upload one as `content`, or set `url`")
            yield from self._parse(io.StringIO(self.ctx.content.lstrip("\ufeff")))
            return
        headers = {}
        if self.config.auth_header and self.ctx.credentials.get("header_value"):
            headers[self.config.auth_header] = self.ctx.credentials["header_value"]
        url = self.config.url
        try:
            with self.ctx.http.stream("GET", url, headers=headers) as response:
                if not response.is_success:
                    raise SourceError(f"GET {safe_url(url)} answered {response.status_code}")
                lines = (line.lstrip("\ufeff") for line in response.iter_lines())
                yield from self._parse(lines)
        except SourceError:
            raise
        except Exception as exc:  # httpx timeouts and transport errors, undecodable bytes
            name = "timed out" if "Timeout" in type(exc).__name__ else f"failed: {type(exc).__name__}"
            raise SourceError(f"GET {safe_url(url)} {name}") from None

    def _parse(self, lines: Iterator[str] | io.StringIO) -> Iterator[dict[str, str]]:
        reader = csv.reader(lines, delimiter=self.config.delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise SourceError("the file is empty: no header row") from None
        except csv.Error as exc:
            raise SourceError(f"malformed CSV: {exc}") from None
        header = [name.strip() for name in header]
        for column in (self.config.key_column, self.config.list_column):
            if column is not None and column not in header:
                raise SourceError(f"no column {column!r} in the header (columns: {', '.join(header[:20])})")
        try:
            for number, row in enumerate(reader, start=2):
                if not row or row == [""]:
                    continue
                if len(row) != len(header):
                    raise SourceError(f"malformed CSV: line {number} has {len(row)} fields, the header {len(header)}")
                yield dict(zip(header, row, strict=True))
        except csv.Error as exc:
            raise SourceError(f"malformed CSV: {exc}") from None

    def test(self) -> str:
        rows = sum(1 for _ in self._rows())
        return f"{rows} rows with a {self.config.key_column!r} column"

    def remote_segments(self) -> list[RemoteSegment]:
        column = self.config.list_column
        if column is None:
            return [RemoteSegment(id=WHOLE_FILE, name="the whole file", size=sum(1 for _ in self._rows()))]
        counts: Counter[str] = Counter()
        for row in self._rows():
            counts[row[column]] += 1
            if len(counts) > MAX_LISTS:
                raise SourceError(f"more than {MAX_LISTS} distinct values in {column!r}")
        return [RemoteSegment(id=value, name=value, size=n) for value, n in sorted(counts.items())]

    def fetch(self, remote_id: str) -> Iterator[list[str]]:
        column = self.config.list_column
        if column is None and remote_id != WHOLE_FILE:
            raise SourceError(f"no list {remote_id!r}: this file is one list, {WHOLE_FILE!r}")
        key = self.config.key_column
        rows = (row for row in self._rows() if column is None or row[column] == remote_id)
        yield from pages(key_text(row[key], "csv") for row in rows)
