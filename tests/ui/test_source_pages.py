"""The sources pages: creating a CSV source from the form, its page, the remote lists, importing one, syncing it from
the segment's page, and what viewers do not get."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.ui.conftest import browser, csrf, user

HX = {"HX-Request": "true"}


def customers(api: TestClient) -> None:
    for source_id, email, member in (("m1", "ann@x.io", True), ("m2", "bob@x.io", True), ("n1", "cid@x.io", False)):
        body = {"email": email, "loyalty_member": member}
        assert api.put(f"/api/v1/customers/{source_id}", json=body).status_code in (200, 201)


def test_create_import_and_sync_a_csv_source(api: TestClient) -> None:
    customers(api)
    user(api, "admin@x.io", "admin")
    admin = browser(api, "admin@x.io")
    listing = admin.get("/ui/sources").text
    assert "New source" in listing and "No source yet." in listing
    content = b"email,name\nann@x.io,Ann\nBOB@x.io,Bob\ncid@x.io,Cid\nghost@x.io,G\n"
    created = admin.post(
        "/ui/sources",
        data={"csrf_token": csrf(admin, "/ui/sources"), "name": "Fair list", "kind": "csv", "key_field": "email",
              "config": '{"key_column": "email"}', "credentials": ""},
        files={"file": ("fair.csv", content, "text/csv")},
    )  # fmt: skip
    assert created.status_code == 303, created.text
    source_page = created.headers["location"]
    detail = admin.get(source_page).text
    assert "Fair list" in detail and f"{len(content)} bytes" in detail.replace(",", "")
    source_id = source_page.rsplit("/", 1)[1]
    remote = admin.get(f"/ui/sources/{source_id}/remote", headers=HX).text
    assert 'name="remote_id" value="file"' in remote
    imported = admin.post(f"/ui/sources/{source_id}/import", data={"remote_id": "file", "name": "Fair visitors"},
                          headers={**HX, "X-CSRF-Token": csrf(admin)})  # fmt: skip
    assert imported.status_code == 204, imported.text
    segment_page = imported.headers["HX-Redirect"]
    segment_id = segment_page.rsplit("/", 1)[1]
    page = admin.get(segment_page).text
    assert "Imported from" in page and "Fair list" in page and "cannot be edited by hand" in page
    assert 'data-testid="segment-members">2<' in page  # ann and bob; cid is not a loyalty member, ghost unknown
    synced = admin.post(f"/ui/segments/{segment_id}/sync", headers={**HX, "X-CSRF-Token": csrf(admin)})
    assert synced.status_code == 200
    assert "0 added, 0 removed, 2 unchanged, 1 unmatched, 1 skipped" in synced.text
    assert 'id="syncs"' in admin.get(segment_page).text


def test_bad_settings_are_shown_on_the_form_and_viewers_only_read(api: TestClient) -> None:
    user(api, "admin@x.io", "admin")
    admin = browser(api, "admin@x.io")
    refused = admin.post("/ui/sources", data={"csrf_token": csrf(admin, "/ui/sources"), "name": "Broken",
                                              "kind": "json", "config": "{not json"})  # fmt: skip
    assert refused.status_code == 200 and "not valid JSON" in refused.text and 'value="Broken"' in refused.text
    assert api.get("/api/v1/sources").json() == []
    user(api, "v@x.io", "viewer")
    viewer = browser(api, "v@x.io")
    assert "New source" not in viewer.get("/ui/sources").text
    assert viewer.post("/ui/sources", data={"csrf_token": csrf(viewer, "/ui/sources"), "name": "X",
                                            "kind": "csv"}).status_code == 403  # fmt: skip


def test_refused_source_forms_keep_what_was_typed_and_never_run_it(api: TestClient) -> None:
    user(api, "admin@x.io", "admin")
    admin = browser(api, "admin@x.io")
    token = csrf(admin, "/ui/sources")
    for hours in ("inf", "1e308", "-1", "soon"):
        refused = admin.post(
            "/ui/sources",
            data={
                "csrf_token": token,
                "name": "S",
                "kind": "json",
                "config": '{"url": "https://crm.example.com/x"}',
                "sync_hours": hours,
            },
        )
        assert refused.status_code == 200 and "sync_hours" in refused.text, hours
        assert "https://crm.example.com/x" in refused.text  # the typed settings are sent back, not the example
    sneaky = admin.post("/ui/sources", data={"csrf_token": token, "name": "S", "kind": "'+alert(1)+'"})
    assert "alert(1)" not in sneaky.text.replace("&#39;+alert(1)+&#39;", "")  # echoed escaped in the field at most
    assert 'data-kind="json"' in sneaky.text
    assert api.get("/api/v1/sources").json() == []
