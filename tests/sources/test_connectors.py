"""Each connector against a real HTTP server on loopback answering in the remote API's documented shapes: paging,
error statuses, slow answers (timeouts) and bad data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cohorta.clock import FrozenClock
from cohorta.sources.connectors import Context, SourceError, build
from tests.conftest import START
from tests.sources.remote import Emarsys, Remote, Reply, Request

TIMEOUT = 0.5


@pytest.fixture
def remote() -> Iterator[Remote]:
    server = Remote()
    yield server
    server.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
        yield client


def connector(kind: str, config: dict[str, Any], http: httpx.Client, **ctx: Any) -> Any:
    return build(kind, config, Context(http, FrozenClock(START), **ctx))


def fetched(conn: Any, remote_id: str) -> list[list[str]]:
    return list(conn.fetch(remote_id))


# --- csv ---------------------------------------------------------------------------------------------------------


CSV = "source_id,email,tier\nc1,a@x.io,gold\nc2,b@x.io,silver\nc3,,gold\n"


def test_csv_upload_is_one_list_or_one_per_value_of_a_column(http: httpx.Client) -> None:
    whole = connector("csv", {"key_column": "email"}, http, content="\ufeff" + CSV)
    assert [(r.id, r.size) for r in whole.remote_segments()] == [("file", 3)]
    assert fetched(whole, "file") == [["a@x.io", "b@x.io", ""]]
    per_tier = connector("csv", {"key_column": "source_id", "list_column": "tier"}, http, content=CSV)
    assert [(r.id, r.size) for r in per_tier.remote_segments()] == [("gold", 2), ("silver", 1)]
    assert fetched(per_tier, "gold") == [["c1", "c3"]]
    assert "3 rows" in per_tier.test()


def test_csv_pages_stay_bounded(http: httpx.Client) -> None:
    content = "id\n" + "".join(f"c{i}\n" for i in range(25_000))
    pages = fetched(connector("csv", {"key_column": "id"}, http, content=content), "file")
    assert [len(p) for p in pages] == [10_000, 10_000, 5_000]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("id,email\nc1,a@x.io\n", "no column 'phone'"),
        ("phone,email\n1,a@x.io\n2\n", "line 3 has 1 fields"),
    ],
)
def test_csv_bad_files_fail_clearly(http: httpx.Client, content: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        fetched(connector("csv", {"key_column": "phone"}, http, content=content), "file")


def test_csv_at_a_url_sends_its_header_and_reports_statuses_and_timeouts(http: httpx.Client, remote: Remote) -> None:
    remote.route("GET", "/export.csv", lambda r: Reply(200, CSV, "text/csv") if r.headers.get("X-Key") == "k3y"
                 else Reply(403, "no"))  # fmt: skip
    config = {"url": remote.url + "/export.csv?sig=abc", "key_column": "source_id", "auth_header": "X-Key"}
    conn = connector("csv", config, http, credentials={"header_value": "k3y"})
    assert fetched(conn, "file") == [["c1", "c2", "c3"]]
    refused = connector("csv", config, http, credentials={"header_value": "wrong"})
    with pytest.raises(SourceError, match="answered 403") as error:
        fetched(refused, "file")
    assert "sig=abc" not in str(error.value)  # a query string may be a token: never in messages
    remote.delay = TIMEOUT * 3
    with pytest.raises(SourceError, match="timed out"):
        fetched(conn, "file")


# --- json --------------------------------------------------------------------------------------------------------


MEMBERS = [{"id": i, "contact": {"email": f"m{i}@x.io"}} for i in range(7)]


def test_json_page_number_paging_with_a_size_parameter(http: httpx.Client, remote: Remote) -> None:
    def page(request: Request) -> Reply:
        if request.headers.get("Authorization") != "Bearer t0ken":
            return Reply(401, {"error": "unauthorized"})
        number, size = int(request.query["p"]), int(request.query["per_page"])
        return Reply(200, {"data": {"members": MEMBERS[(number - 1) * size : number * size]}})

    remote.route("GET", "/lists/vip/members", page)
    config = {
        "url": remote.url + "/lists/{remote_id}/members", "auth_header": "Authorization", "items_path": "data.members",
        "key_path": "contact.email", "paging": "page", "page_param": "p", "size_param": "per_page", "page_size": 3,
    }  # fmt: skip
    conn = connector("json", config, http, credentials={"header_value": "Bearer t0ken"})
    assert fetched(conn, "vip") == [["m0@x.io", "m1@x.io", "m2@x.io"], ["m3@x.io", "m4@x.io", "m5@x.io"], ["m6@x.io"]]
    assert [r.query["p"] for r in remote.requests] == ["1", "2", "3"]  # a short page is the last
    with pytest.raises(SourceError, match="answered 401"):
        fetched(connector("json", config, http), "vip")


def test_json_cursor_paging_and_a_cursor_loop(http: httpx.Client, remote: Remote) -> None:
    cursors = {None: ("a", [1, 2]), "a": ("b", [3]), "b": (None, [4, 5])}

    def page(request: Request) -> Reply:
        following, keys = cursors[request.query.get("after")]
        return Reply(200, {"items": keys, "meta": {"next": following}})

    remote.route("GET", "/members", page)
    config = {"url": remote.url + "/members", "items_path": "items", "paging": "cursor", "cursor_param": "after",
              "cursor_path": "meta.next"}  # fmt: skip
    assert fetched(connector("json", config, http), "default") == [["1", "2"], ["3"], ["4", "5"]]
    cursors["b"] = ("a", [4])  # the remote sends us back to a page already read
    with pytest.raises(SourceError, match="paging loop"):
        fetched(connector("json", config, http), "default")


def test_json_next_links_are_followed_on_the_same_host_only(http: httpx.Client, remote: Remote) -> None:
    remote.route("GET", "/m", lambda r: Reply(200, {"results": ["k1", "k2"], "links": {"next": "/m2?page=2"}}))
    remote.route("GET", "/m2", lambda r: Reply(200, {"results": ["k3"], "links": {"next": None}}))
    config = {"url": remote.url + "/m", "items_path": "results", "paging": "next_link", "next_path": "links.next"}
    assert fetched(connector("json", config, http), "default") == [["k1", "k2"], ["k3"]]
    remote.route("GET", "/m2", lambda r: Reply(200, {"results": ["k3"], "links": {"next": "http://evil.example/x"}}))
    with pytest.raises(SourceError, match="another host"):
        fetched(connector("json", config, http), "default")


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(200, "<html>not json</html>", "text/html"), "malformed JSON"),
        (Reply(200, {"data": {}}), "nothing at 'data.members'"),
        (Reply(200, {"data": {"members": {"a": 1}}}), "is not a list"),
        (Reply(200, {"data": {"members": [{"email": ["a"]}]}}), "nothing at 'contact.email'"),
        (Reply(200, {"data": {"members": [{"contact": {"email": {"x": 1}}}]}}), "not dict"),
        (Reply(503, {"error": "maintenance"}), "answered 503"),
    ],
)
def test_json_bad_data_and_error_statuses(http: httpx.Client, remote: Remote, reply: Reply, message: str) -> None:
    remote.route("GET", "/members", lambda r: reply)
    config = {"url": remote.url + "/members", "items_path": "data.members", "key_path": "contact.email"}
    with pytest.raises(SourceError, match=message):
        fetched(connector("json", config, http), "default")


def test_json_slow_answers_time_out(http: httpx.Client, remote: Remote) -> None:
    remote.route("GET", "/members", lambda r: Reply(200, ["a"]))
    remote.delay = TIMEOUT * 3
    with pytest.raises(SourceError, match="timed out"):
        fetched(connector("json", {"url": remote.url + "/members"}, http), "default")


def test_json_lists_come_from_a_lists_url(http: httpx.Client, remote: Remote) -> None:
    remote.route(
        "GET", "/lists", lambda r: Reply(200, {"lists": [{"key": 7, "title": "VIP"}, {"key": 8, "title": "B"}]})
    )
    config = {"url": remote.url + "/lists/{remote_id}", "lists_url": remote.url + "/lists", "lists_path": "lists",
              "list_id_path": "key", "list_name_path": "title"}  # fmt: skip
    assert [(r.id, r.name) for r in connector("json", config, http).remote_segments()] == [("7", "VIP"), ("8", "B")]


# --- emarsys -----------------------------------------------------------------------------------------------------


def emarsys_setup(remote: Remote, clock: FrozenClock, **extra: Any) -> Emarsys:
    contacts = {str(100 + i): {"3": f"e{i}@x.io"} for i in range(5)}
    lists = {"10": [str(100 + i) for i in range(5)] + ["999"]}
    return Emarsys(remote, clock, lists=lists, segments={"77": ["101", "103", "104"]}, contacts=contacts, **extra)


def emarsys(remote: Remote, http: httpx.Client, fake: Emarsys, clock: FrozenClock, **config: Any) -> Any:
    credentials = {"username": fake.username, "secret": fake.secret, "client_id": fake.client_id,
                   "client_secret": fake.client_secret}  # fmt: skip
    base = {"base_url": remote.url, "token_url": remote.url + "/oauth2/token", "page_size": 2,
            "poll_interval_seconds": 0}  # fmt: skip
    return build("emarsys", {**base, **config}, Context(http, clock, credentials))


def test_emarsys_wsse_lists_segments_and_pages_of_contact_ids_mapped_to_emails(
    http: httpx.Client, remote: Remote
) -> None:
    clock = FrozenClock(START)
    fake = emarsys_setup(remote, clock)
    conn = emarsys(remote, http, fake, clock)
    assert conn.test() == "authenticated with wsse"
    found = [(r.id, r.name, r.kind) for r in conn.remote_segments()]
    assert found == [("list:10", "List 10", "list"), ("segment:77", "Segment 77", "segment")]
    pages = fetched(conn, "list:10")
    assert pages == [["e0@x.io", "e1@x.io"], ["e2@x.io", "e3@x.io"], ["e4@x.io", ""]]  # 999 has no contact
    listed = [r.query for r in remote.requests if r.path.endswith("/contactIds")]
    assert listed == [{"$top": "2"}, {"$top": "2", "$skiptoken": "2"}, {"$top": "2", "$skiptoken": "4"}]
    wsse = remote.requests[0].headers["X-WSSE"]
    assert 'Created="2026-03-14T12:00:00+00:00"' in wsse and fake.secret not in wsse  # the digest, never the secret
    by_id = emarsys(remote, http, fake, clock, key_field_id="id", page_size=10)
    assert fetched(by_id, "list:10") == [["100", "101", "102", "103", "104", "999"]]


def test_emarsys_segment_runs_are_started_polled_and_read_page_by_page(http: httpx.Client, remote: Remote) -> None:
    clock = FrozenClock(START)
    fake = emarsys_setup(remote, clock, polls_before_done=2)
    assert fetched(emarsys(remote, http, fake, clock), "segment:77") == [["e1@x.io", "e3@x.io"], ["e4@x.io"]]
    polls = [r for r in remote.requests if r.path == "/api/v2/filter/runs/run-77"]
    assert len(polls) == 4  # in progress twice, then done with two pages


def test_emarsys_wsse_refused_for_a_wrong_secret_or_a_skewed_clock(http: httpx.Client, remote: Remote) -> None:
    clock = FrozenClock(START)
    fake = emarsys_setup(remote, clock)
    wrong = build("emarsys", {"base_url": remote.url}, Context(http, clock, {"username": fake.username, "secret": "x"}))
    with pytest.raises(SourceError, match=r"answered 401 to GET /api/v2/settings: Unauthorized \(replyCode 1\)"):
        wrong.test()
    skewed = emarsys(remote, http, fake, FrozenClock(START.replace(hour=13)))
    with pytest.raises(SourceError, match="401"):
        skewed.test()


def test_emarsys_oauth2_token_is_fetched_once_and_renewed_after_a_401(http: httpx.Client, remote: Remote) -> None:
    clock = FrozenClock(START)
    fake = emarsys_setup(remote, clock)
    conn = emarsys(remote, http, fake, clock, auth="oauth2")
    conn.test()
    conn.remote_segments()
    assert fake.tokens == ["token-1"]
    fake.tokens.append("rotated-by-emarsys")  # the token we hold is no longer valid: the next call gets a 401
    assert len(fetched(conn, "list:10")) == 3
    assert fake.tokens == ["token-1", "rotated-by-emarsys", "token-3"]  # renewed once, then used throughout
    bad = build("emarsys", {"base_url": remote.url, "token_url": remote.url + "/oauth2/token", "auth": "oauth2"},
                Context(http, clock, {"client_id": "x", "client_secret": "y"}))  # fmt: skip
    with pytest.raises(SourceError, match="token endpoint answered 401"):
        bad.test()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(200, {"replyCode": 0, "replyText": "OK", "data": {"value": "nope"}}), "without a data.value list"),
        (Reply(200, {"replyCode": 2010, "replyText": "Invalid list", "data": ""}), r"Invalid list \(replyCode 2010\)"),
        (Reply(200, {"unexpected": True}), "without a replyCode"),
        (Reply(500, "Internal Server Error", "text/plain"), "answered 500"),
        (Reply(200, {"replyCode": 0, "data": {"value": [1], "next": "/x?$top=2"}}), "without \\$skiptoken"),
    ],
)
def test_emarsys_bad_data_and_errors(http: httpx.Client, remote: Remote, reply: Reply, message: str) -> None:
    clock = FrozenClock(START)
    fake = emarsys_setup(remote, clock)
    remote.route("GET", "/api/v2/contactlist/10/contactIds", lambda r: reply)
    with pytest.raises(SourceError, match=message):
        fetched(emarsys(remote, http, fake, clock, key_field_id="id"), "list:10")


def test_emarsys_slow_answers_time_out_and_unknown_ids_are_refused(http: httpx.Client, remote: Remote) -> None:
    clock = FrozenClock(START)
    conn = emarsys(remote, http, emarsys_setup(remote, clock), clock)
    with pytest.raises(SourceError, match="ids look like list:123"):
        fetched(conn, "10")
    remote.delay = TIMEOUT * 3
    with pytest.raises(SourceError, match="timed out"):
        fetched(conn, "list:10")
