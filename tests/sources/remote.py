"""Remote systems on a loopback port, answering in their documented shapes: a generic JSON/CSV server whose routes
tests fill in, and an Emarsys Core API v2 (WSSE or OAuth 2.0, wrapped replies, paged contact ids, segment runs)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cohorta.clock import Clock


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes or str
    content_type: str = "application/json"


Handler = Callable[[Request], Reply]


@dataclass
class Remote:
    """Routes by (method, path); everything else is a 404. ``delay`` slows every answer (timeouts)."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    delay: float = 0.0

    def __post_init__(self) -> None:
        remote = self

        class _Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command, parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()},
                    dict(self.headers), self.rfile.read(length),
                )  # fmt: skip
                remote.requests.append(request)
                time.sleep(remote.delay)
                handler = remote.routes.get((self.command, parts.path))
                reply = handler(request) if handler else Reply(404, {"error": "not found"})
                body = reply.body
                raw = (
                    body
                    if isinstance(body, bytes)
                    else body.encode()
                    if isinstance(body, str)
                    else json.dumps(body).encode()
                )
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wrapped(data: Any, status: int = 200, code: int = 0, text: str = "OK") -> Reply:
    return Reply(status, {"replyCode": code, "replyText": text, "data": data})


WSSE = re.compile(r'UsernameToken Username="([^"]*)", PasswordDigest="([^"]*)", Nonce="([^"]*)", Created="([^"]*)"')


@dataclass
class Emarsys:
    """Emarsys as its documentation describes it, on a Remote. Lists hold contact ids; contacts map field ids to
    values (3: email)."""

    remote: Remote
    clock: Clock
    username: str = "cohorta001"
    secret: str = "emarsys-api-secret-value"
    client_id: str = "oauth-client"
    client_secret: str = "oauth-client-secret-value"
    lists: dict[str, list[str]] = field(default_factory=dict)
    segments: dict[str, list[str]] = field(default_factory=dict)
    contacts: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)  # issued; only the last is valid
    polls_before_done: int = 1
    run_page: int = 2

    def __post_init__(self) -> None:
        r = self.remote
        r.route("POST", "/oauth2/token", self._token)
        r.route("GET", "/api/v2/settings", self._guarded(lambda q: wrapped({"id": 1, "name": "Demo account"})))
        r.route(
            "GET",
            "/api/v2/contactlist",
            self._guarded(
                lambda q: wrapped(
                    [{"id": i, "name": f"List {i}", "created": "2026-01-01 00:00:00", "type": 0} for i in self.lists]
                )
            ),
        )
        r.route("GET", "/api/v2/filter", self._guarded(lambda q: wrapped(
            [{"id": i, "name": f"Segment {i}"} for i in self.segments])))  # fmt: skip
        r.route("POST", "/api/v2/contact/getdata", self._guarded(self._getdata))
        for list_id in self.lists:
            r.route("GET", f"/api/v2/contactlist/{list_id}/contactIds", self._guarded(self._list_page(list_id)))
        for segment_id in self.segments:
            r.route("POST", f"/api/v2/filter/{segment_id}/runs", self._guarded(self._start(segment_id)))
        self._runs: dict[str, tuple[str, int]] = {}

    def _authorised(self, request: Request) -> bool:
        bearer = request.headers.get("Authorization", "")
        if bearer.startswith("Bearer "):
            return bool(self.tokens) and bearer.removeprefix("Bearer ") == self.tokens[-1]
        match = WSSE.fullmatch(request.headers.get("X-WSSE", ""))
        if match is None:
            return False
        username, digest, nonce, created = match.groups()
        expected = base64.b64encode(hashlib.sha1((nonce + created + self.secret).encode()).hexdigest().encode())
        skew = abs(datetime.fromisoformat(created) - self.clock.now())
        return username == self.username and digest == expected.decode() and skew <= timedelta(minutes=5)

    def _guarded(self, handler: Callable[[Request], Reply]) -> Handler:
        def guarded(request: Request) -> Reply:
            if not self._authorised(request):
                return wrapped("", 401, 1, "Unauthorized")
            return handler(request)

        return guarded

    def _token(self, request: Request) -> Reply:
        basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if (
            request.headers.get("Authorization") != f"Basic {basic}"
            or b"grant_type=client_credentials" not in request.body
        ):
            return Reply(401, {"error": "invalid_client"})
        self.tokens.append(f"token-{len(self.tokens) + 1}")
        return Reply(200, {"access_token": self.tokens[-1], "token_type": "bearer", "expires_in": 3600})

    def _list_page(self, list_id: str) -> Handler:
        def page(request: Request) -> Reply:
            top, skip = int(request.query["$top"]), int(request.query.get("$skiptoken", "0"))
            ids = self.lists[list_id]
            following = None
            if skip + top < len(ids):
                following = f"/api/v2/contactlist/{list_id}/contactIds?$top={top}&$skiptoken={skip + top}"
            return wrapped({"value": ids[skip : skip + top], "next": following})

        return page

    def _getdata(self, request: Request) -> Reply:
        body = json.loads(request.body)
        assert body["keyId"] == "id" and len(body["keyValues"]) <= 1000
        found = [{"id": i, **{f: self.contacts[i].get(f) for f in body["fields"]}}
                 for i in body["keyValues"] if i in self.contacts]  # fmt: skip
        errors = [{"key": i, "errorCode": 2008, "errorMsg": "No contact found"}
                  for i in body["keyValues"] if i not in self.contacts]  # fmt: skip
        return wrapped({"result": found or False, "errors": errors})

    def _start(self, segment_id: str) -> Handler:
        def start(request: Request) -> Reply:
            run_id = f"run-{segment_id}"
            self._runs[run_id] = (segment_id, 0)
            self.remote.route("GET", f"/api/v2/filter/runs/{run_id}", self._guarded(self._poll(run_id)))
            return wrapped({"run_id": run_id, "status": "in_progress"})

        return start

    def _poll(self, run_id: str) -> Handler:
        def poll(request: Request) -> Reply:
            segment_id, polls = self._runs[run_id]
            self._runs[run_id] = (segment_id, polls + 1)
            if polls < self.polls_before_done:
                return wrapped({"run_id": run_id, "status": "in_progress"})
            offset = int(request.query.get("offset", "0"))
            ids = self.segments[segment_id]
            following = None
            if offset + self.run_page < len(ids):
                following = f"/api/v2/filter/runs/{run_id}?offset={offset + self.run_page}"
            result = {"contact_ids": ids[offset : offset + self.run_page], "total_count": len(ids),
                      "next_href": following}  # fmt: skip
            return wrapped({"run_id": run_id, "status": "done", "result": result})

        return poll
