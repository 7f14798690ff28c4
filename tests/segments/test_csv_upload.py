"""POST /api/v1/segments/upload: a static segment from a CSV file, with a per-row report of what was not added."""

from __future__ import annotations

import sqlalchemy as sa

from cohorta.clock import FrozenClock
from tests.support import admin_api


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
