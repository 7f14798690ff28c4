"""Helpers shared by the API tests."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.app import create_app
from cohorta.clock import Clock
from cohorta.config import Settings
from cohorta.membership.jobs import run_pending


@contextlib.contextmanager
def admin_api(store: sa.Engine, clock: Clock, **settings: Any) -> Iterator[TestClient]:
    """An app on this store and clock, without the background scheduler (tests run jobs themselves), and a client
    holding the admin token. ``settings`` override the defaults."""
    from tests.conftest import ADMIN_TOKEN

    configured = Settings(
        database_url=store.url.render_as_string(hide_password=False),
        admin_token=ADMIN_TOKEN,
        scheduler=False,
        **settings,
    )
    app = create_app(configured, clock=clock, engine=store)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        yield client


def run_jobs(client: TestClient) -> list[str]:
    """Run the queued recomputes now, as the scheduler would; returns the segments recomputed."""
    state = client.app.state  # type: ignore[attr-defined]
    return run_pending(state.session_factory, state.clock, state.settings, state.segment_index)


class Receiver:
    """A webhook receiver: records what it gets; can fail the first N requests, always refuse, or be slow."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_first = 0
        self.status = 200
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                failing = receiver.fail_first > 0
                receiver.fail_first -= 1
                self.send_response(503 if failing else receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests]

    def verify(self, secret: str) -> bool:
        """Every request carries a valid X-Cohorta-Signature for this secret."""
        for request in self.requests:
            stamp, _, digest = request["headers"]["X-Cohorta-Signature"].partition(",v1=")
            signed = f"{stamp.removeprefix('t=')}.".encode() + request["body"]
            if not hmac.compare_digest(digest, hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()):
                return False
        return True
