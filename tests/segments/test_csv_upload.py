"""POST /api/v1/segments/upload: a static segment from a CSV file, with a per-row report of what was not added."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cohorta.clock import FrozenClock
from cohorta.segments import service as segments_service
from tests.support import admin_api, run_jobs


def upload(client, name: str, content: bytes):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/segments/upload", data={"name": name}, files={"file": ("ids.csv", content, "text/csv")})


def test_upload_reports_unknown_blank_and_duplicate_rows(store: sa.Engine, clock: FrozenClock) -> None:
    with admin_api(store, clock) as client:
        for source_id in ("a1", "a2", "a3"):
            assert client.put(f"/api/v1/customers/{source_id}", json={}).status_code == 201
        response = upload(client, "From a file", b"\xef\xbb\xbfname,SOURCE_ID\nAnn,a1\nBob,\nCid,zz9\nDan,a2\nEve,a1\n")
        assert response.status_code == 201, response.text
        report = response.json()
        assert report["members"] == 2 and report["rows"] == 4 and report["duplicates"] == 1
        assert report["unknown"] == [{"row": 4, "source_id": "zz9"}] and report["unknown_count"] == 1
        assert report["blank_rows"] == [3]
        segment = report["segment"]
        assert segment["type"] == "static" and segment["members"] == 2
        members = client.get(f"/api/v1/segments/{segment['id']}/members").json()["items"]
        assert sorted(m["source_id"] for m in members) == ["a1", "a2"]
        # Without a source_id header, the first column holds the ids (the first line too).
        bare = upload(client, "Bare list", b"a3\na2\n").json()
        assert bare["members"] == 2 and bare["unknown"] == []
        # The same member set as an existing static segment is refused, naming it.
        twin = upload(client, "Twin", b"a2\na3\n")
        assert twin.status_code == 409 and bare["segment"]["id"] in twin.json()["detail"]


def test_upload_refuses_bad_files_without_writing(store: sa.Engine, clock: FrozenClock) -> None:
    with admin_api(store, clock) as client:
        assert client.put("/api/v1/customers/a1", json={}).status_code == 201
        for content, message in ((b"\xff\xfe\x00bad", "UTF-8"), (b"ghost\n", "no known customer"),
                                 (b"", "no source_id values")):  # fmt: skip
            response = upload(client, "Bad", content)
            assert response.status_code == 422, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert message in response.json()["detail"]
        missing_name = client.post("/api/v1/segments/upload", files={"file": ("ids.csv", b"a1\n", "text/csv")})
        assert missing_name.status_code == 422
        assert client.get("/api/v1/segments").json()["total"] == 0


def test_a_long_uploaded_list_is_saved_at_once_and_enters_by_a_job(
    store: sa.Engine, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segments_service, "LIST_ENTRY_IN_REQUEST", 2)  # "long": over 2 customers here
    with admin_api(store, clock) as client:
        for source_id in ("a1", "a2", "a3"):
            assert client.put(f"/api/v1/customers/{source_id}", json={}).status_code == 201
        report = upload(client, "Long list", b"a1\na2\na3\n").json()
        segment = report["segment"]
        # The report counts the list; the segment says its members are still to enter.
        assert report["members"] == 3 and (segment["members"], segment["refresh"]["state"]) == (0, "queued")
        assert upload(client, "Twin", b"a3\na2\na1\n").status_code == 409  # already checked for a twin
        assert run_jobs(client) == [segment["id"]]
        after = client.get(f"/api/v1/segments/{segment['id']}").json()
        assert (after["members"], after["refresh"]["state"], after["refresh"]["reason"]) == (3, "done", "list")
        history = client.get(f"/api/v1/segments/{segment['id']}/history").json()
        assert sorted((h["source_id"], h["change"], h["cause"]) for h in history) == [
            (s, "entered", "manual") for s in ("a1", "a2", "a3")
        ]
        short = upload(client, "Short list", b"a1\na2\n").json()  # at the limit: entered in the request
        assert short["segment"]["members"] == 2 and short["segment"]["refresh"]["state"] == "idle"
