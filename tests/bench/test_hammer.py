"""bench.common.hammer against a tiny raw HTTP/1.1 server: statuses, rotation, keep-alive and unreadable answers."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from bench.common import hammer


class Handler(socketserver.StreamRequestHandler):
    seen: Counter[str] = Counter()
    connections = 0
    authorized = True

    def handle(self) -> None:
        type(self).connections += 1
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = self.rfile.readline()
                if not line:
                    return
                head += line
            path = head.split(b" ", 2)[1].decode()
            type(self).seen[path] += 1
            if b"\r\nauthorization: bearer t\r\n" not in head.lower() or b"\r\nhost: 127.0.0.1:" not in head.lower():
                type(self).authorized = False
            if path == "/chunked":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
                continue
            if path == "/eof":  # body delimited by closing the connection
                self.wfile.write(b"HTTP/1.1 200 OK\r\n\r\nok")
                return
            status = b"404 Not Found" if path == "/missing" else b"200 OK"
            close = path == "/close"
            body = path.encode() * 3
            self.wfile.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: " + str(len(body)).encode()
                + (b"\r\nConnection: close" if close else b"") + b"\r\n\r\n" + body
            )  # fmt: skip
            if close:
                return


@pytest.fixture
def port() -> Iterator[int]:
    Handler.seen, Handler.connections, Handler.authorized = Counter(), 0, True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.server_address[1]
        server.shutdown()


def test_keep_alive_rotation_and_statuses(port: int) -> None:
    result = hammer(port, ["/a", "/b", "/missing"], {"Authorization": "Bearer t"}, concurrency=3, duration=0.3)
    assert result.requests > 30 and not result.failures
    assert Handler.connections == 3 and Handler.authorized
    assert set(Handler.seen) == {"/a", "/b", "/missing"}
    assert max(Handler.seen.values()) - min(Handler.seen.values()) <= 1  # taken in turn over all connections
    assert result.statuses == Counter({200: Handler.seen["/a"] + Handler.seen["/b"], 404: Handler.seen["/missing"]})
    assert result.errors == Handler.seen["/missing"]
    assert len(result.latencies_ms) == result.requests and all(ms > 0 for ms in result.latencies_ms)
    assert result.rps > 0 and result.client_cpu_s > 0


def test_connection_close_reconnects(port: int) -> None:
    result = hammer(port, ["/close", "/a"], {"Authorization": "Bearer t"}, concurrency=1, duration=0.2)
    assert result.errors == 0 and not result.failures and result.requests > 4
    assert Handler.connections >= Handler.seen["/close"]


@pytest.mark.parametrize(("path", "reason"), [("/chunked", "chunked"), ("/eof", "no content-length")])
def test_unreadable_answers_are_failures(port: int, path: str, reason: str) -> None:
    result = hammer(port, [path], {"Authorization": "Bearer t"}, concurrency=2, duration=0.2)
    assert result.failures[reason] == result.requests == result.errors > 0
    assert not result.statuses and not result.latencies_ms


def test_nothing_listening_is_reported_not_raised() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    result = hammer(free, ["/"], {}, concurrency=1, duration=0.2)
    assert result.errors == result.requests > 0 and set(result.failures) == {"connect: ConnectionRefusedError"}
