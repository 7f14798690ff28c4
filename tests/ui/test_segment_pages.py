"""The segment and customer pages: list with search, filters and guarded row actions, the editor's page, the detail
page's fragments, CSV uploads, the customer profile with "why", and the page-level protections (session, CSRF,
escaping, redirects)."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from cohorta.segments import service as segments_service
from tests.support import run_jobs
from tests.ui.conftest import browser, csrf, login_token, post, segment, user

HX = {"HX-Request": "true"}


def test_pages_send_the_browser_to_log_in_and_back(api: TestClient) -> None:
    anonymous = TestClient(api.app, follow_redirects=False)
    response = anonymous.get("/ui/segments?q=vip")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fui%2Fsegments%3Fq%3Dvip"
    # htmx requests are told where to go instead of receiving the login page as a fragment
    fragment = anonymous.get("/ui/segments", headers={**HX, "HX-Current-URL": "/ui/segments"})
    assert fragment.status_code == 204 and fragment.headers["HX-Redirect"].startswith("/ui/login?next=")
    # a bearer token does not open pages: they belong to browser sessions
    assert TestClient(api.app, headers=dict(api.headers), follow_redirects=False).get("/ui/segments").status_code == 303


def test_login_refuses_wrong_passwords_foreign_redirects_and_forms_from_elsewhere(api: TestClient) -> None:
    user(api, "ed@x.io", "editor")
    client = TestClient(api.app, follow_redirects=False)
    wrong = client.post("/ui/login", data={"email": "ed@x.io", "password": "nope-nope-nope",
                                           "login_token": login_token(client)})  # fmt: skip
    assert wrong.status_code == 401 and "wrong email or password" in wrong.text
    for target in ("//evil.example/x", "https://evil.example/", "javascript:alert(1)"):
        response = client.post("/ui/login", data={"email": "ed@x.io", "password": "correct-horse-battery",
                                                  "next": target, "login_token": login_token(client)})  # fmt: skip
        assert response.headers["location"] == "/ui/segments", target
    # A form posted from another site has no token matching this browser's login cookie: no session is made.
    forged = TestClient(api.app, follow_redirects=False)
    refused = forged.post("/ui/login", data={"email": "ed@x.io", "password": "correct-horse-battery",
                                             "login_token": "made-up"})  # fmt: skip
    assert refused.status_code == 400 and "expired" in refused.text and "cohorta_session" not in refused.cookies


def test_list_searches_filters_and_answers_fragments(api: TestClient) -> None:
    segment(api, "Poles")
    segment(api, "Germans", 'profile.country in ("DE")')
    user(api, "v@x.io", "viewer")
    client = browser(api, "v@x.io")
    page = client.get("/ui/segments")
    assert page.status_code == 200 and "<html" in page.text
    assert 'data-testid="segment-total">2<' in page.text
    table = client.get("/ui/segments?q=pol", headers={**HX, "HX-Target": "segment-table"})
    assert "<html" not in table.text and "Poles" in table.text and "Germans" not in table.text
    few = client.get("/ui/segments?members_min=2&sort=-members").text
    assert "Poles" in few and "Germans" not in few  # two Poles, one German
    bad = client.get("/ui/segments?members_min=-1")
    assert bad.status_code == 422 and "members_min" in bad.text and bad.headers["content-type"].startswith("text/html")


def test_row_actions_follow_the_role_and_say_what_will_happen(api: TestClient) -> None:
    poles = segment(api, "Poles")
    user(api, "v@x.io", "viewer")
    user(api, "e@x.io", "editor")
    viewer = browser(api, "v@x.io").get("/ui/segments").text
    assert "/deactivate" not in viewer and "New segment" not in viewer and "Download CSV" in viewer
    editor = browser(api, "e@x.io")
    page = editor.get("/ui/segments").text
    assert f'hx-post="/ui/segments/{poles}/deactivate"' in page
    assert "/archive" not in page  # only an inactive segment can be archived
    response = editor.post(f"/ui/segments/{poles}/deactivate", headers={**HX, "HX-Target": f"segment-{poles}",
                                                                        "X-CSRF-Token": csrf(editor)})  # fmt: skip
    assert response.status_code == 200 and 'class="status inactive"' in response.text
    assert "Archiving is irreversible: all 2 members will be removed" in html.unescape(response.text)


def test_a_refused_action_shows_the_guards_reason(api: TestClient) -> None:
    poles = segment(api, "Poles")
    campaign = api.post("/api/v1/campaigns", json={"name": "Spring promo", "kind": "promotion", "status": "active",
                                                   "included_segments": [poles]})  # fmt: skip
    assert campaign.status_code == 201, campaign.text
    user(api, "e@x.io", "editor")
    editor = browser(api, "e@x.io")
    response = editor.post(f"/ui/segments/{poles}/deactivate", headers={**HX, "HX-Target": f"segment-{poles}",
                                                                        "X-CSRF-Token": csrf(editor)})  # fmt: skip
    assert response.status_code == 409
    assert response.headers["HX-Retarget"] == "#flash"
    assert "Spring promo" in response.text
    assert api.get(f"/api/v1/segments/{poles}").json()["status"] == "active"


def test_writes_need_the_csrf_token(api: TestClient) -> None:
    poles = segment(api, "Poles")
    user(api, "e@x.io", "editor")
    editor = browser(api, "e@x.io")
    refused = editor.post(f"/ui/segments/{poles}/deactivate", headers=HX)
    assert refused.status_code == 403 and "CSRF" in refused.text
    refused = editor.post(f"/ui/segments/{poles}/deactivate", headers={**HX, "X-CSRF-Token": "forged"})
    assert refused.status_code == 403
    assert api.get(f"/api/v1/segments/{poles}").json()["status"] == "active"


def test_user_input_is_escaped(api: TestClient) -> None:
    attack = '<img src=x onerror="alert(1)">'
    segment(api, attack, description=attack)
    user(api, "v@x.io", "viewer")
    page = browser(api, "v@x.io").get("/ui/segments").text
    assert attack not in page
    assert html.escape(attack, quote=False) in page or "&lt;img" in page


def test_the_editor_page_carries_the_catalog_and_the_segment(api: TestClient) -> None:
    poles = segment(api, "Poles", customer_groups=["pl"])
    user(api, "e@x.io", "editor")
    editor = browser(api, "e@x.io")
    new = editor.get("/ui/segments/new").text
    assert 'id="catalog-json"' in new and '"profile.country"' in new
    edit = editor.get(f"/ui/segments/{poles}/edit").text
    assert '"customer_groups": "pl"' in edit and '"op": "in", "value": ["PL"]' in edit
    assert api.post(f"/api/v1/segments/{poles}/deactivate").status_code == 200
    assert api.post(f"/api/v1/segments/{poles}/archive").status_code == 200
    archived = editor.get(f"/ui/segments/{poles}/edit")
    assert archived.status_code == 409 and "archived" in archived.text


def test_detail_fragments_members_and_analytics(api: TestClient) -> None:
    poles = segment(api, "Poles")
    user(api, "v@x.io", "viewer")
    client = browser(api, "v@x.io")
    detail = client.get(f"/ui/segments/{poles}").text
    assert ('data-testid="segment-members">2<' in detail and "Country is one of PL" in detail) or "PL" in detail
    members = client.get(f"/ui/segments/{poles}/members", headers=HX).text
    assert 'data-testid="member-total">2<' in members and "/ui/customers/c1" in members
    assert "/points" not in members  # a viewer cannot change points
    filtered = client.get(f"/ui/segments/{poles}/members", params={"filter": 'profile.country in ("DE")'},
                          headers=HX).text  # fmt: skip
    assert 'data-testid="member-total">0<' in filtered
    broken = client.get(f"/ui/segments/{poles}/members", params={"filter": "country in ("}, headers=HX)
    assert broken.status_code == 200 and 'class="flash error"' in broken.text  # said in place of the table
    analytics = client.get(f"/ui/segments/{poles}/analytics", params={"from": "2026-01-01", "to": "2026-03-31"},
                           headers=HX).text  # fmt: skip
    assert "Members now" in analytics and '"members": 2' in analytics.replace("&#34;", '"')


def test_csv_upload_makes_a_static_segment_with_a_row_report(api: TestClient) -> None:
    user(api, "e@x.io", "editor")
    editor = browser(api, "e@x.io")
    content = b"email,source_id\nx@y.z,c1\n,\nq@y.z,ghost\nr@y.z,c2\ns@y.z,c1\n"
    response = editor.post("/ui/segments/upload", data={"name": "Uploaded", "csrf_token": csrf(editor)},
                           files={"file": ("list.csv", content, "text/csv")})  # fmt: skip
    assert response.status_code == 200, response.text
    assert 'data-testid="upload-members">2<' in response.text
    assert re.search(r"<td class=\"num\">4</td><td>ghost</td>", response.text)  # line 4 names an unknown customer
    made = api.get("/api/v1/segments", params={"q": "Uploaded"}).json()["items"][0]
    assert made["type"] == "static" and made["members"] == 2
    assert 'data-testid="upload-entering"' not in response.text  # two customers: entered at once
    refused = editor.post("/ui/segments/upload", data={"name": "Nobody", "csrf_token": csrf(editor)},
                          files={"file": ("list.csv", b"ghost\nphantom\n", "text/csv")})  # fmt: skip
    assert refused.status_code == 422 and "no known customer" in refused.text


def test_a_long_uploaded_list_says_its_members_are_entering(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments_service, "LIST_ENTRY_IN_REQUEST", 1)
    user(api, "e@x.io", "editor")
    editor = browser(api, "e@x.io")
    response = editor.post("/ui/segments/upload", data={"name": "Long", "csrf_token": csrf(editor)},
                           files={"file": ("list.csv", b"c1\nc2\n", "text/csv")})  # fmt: skip
    assert response.status_code == 200, response.text
    assert 'data-testid="upload-members">2<' in response.text and 'data-testid="upload-entering"' in response.text


def test_customer_page_groups_why_and_points(api: TestClient) -> None:
    poles = segment(api, "Poles", customer_groups=["pl"])
    user(api, "e@x.io", "editor")
    editor = browser(api, "e@x.io")
    profile = editor.get("/ui/customers/c1").text
    assert f'href="/ui/segments/{poles}">Poles</a>' in profile and "<b>pl</b>: segment" in profile
    why = editor.get("/ui/customers/c3/why", params={"segment": poles}, headers=HX).text
    assert "c3 is NOT in" in why and 'profile.country in ("PL")' in html.unescape(why)
    done = post(editor, "/ui/customers/c1/points", {"points": "25", "reason": "goodwill", "program": "club"})
    assert done.status_code == 200 and "balance 25" in done.text
    ledger = api.get("/api/v1/customers/c1/ledger").json()["items"]
    assert ledger[0]["points"] == 25 and ledger[0]["reason"] == "goodwill"
    overdraft = post(editor, "/ui/customers/c1/points", {"points": "-100", "reason": "oops", "program": "club"})
    assert overdraft.status_code in (409, 422) and "balance" in overdraft.text


def test_customer_search(api: TestClient) -> None:
    user(api, "v@x.io", "viewer")
    client = browser(api, "v@x.io")
    exact = client.get("/ui/customers", params={"q": "C1"})
    assert exact.status_code == 303 and exact.headers["location"] == "/ui/customers/c1"
    several = client.get("/ui/customers", params={"q": "c"}).text
    assert all(f"/ui/customers/{c}" in several for c in ("c1", "c2", "c3"))
    run_jobs(api)


def test_restoring_a_version_makes_a_new_one(api: TestClient) -> None:
    poles = segment(api, "Poles")
    assert api.patch(f"/api/v1/segments/{poles}", json={"text": 'profile.country in ("DE")'}).status_code == 200
    user(api, "e@x.io", "editor")
    editor = browser(api, "e@x.io")
    page = editor.get(f"/ui/segments/{poles}").text
    assert f'hx-post="/ui/segments/{poles}/versions/1/restore"' in page
    assert f'/ui/segments/{poles}/versions/2/restore' not in page  # the current version is not offered
    response = editor.post(f"/ui/segments/{poles}/versions/1/restore", headers={**HX, "X-CSRF-Token": csrf(editor)})
    assert response.status_code == 200 and response.headers["HX-Refresh"] == "true"
    restored = api.get(f"/api/v1/segments/{poles}").json()
    assert restored["version"] == 3 and restored["text"] == 'profile.country in ("PL")'


def test_a_malformed_form_value_is_a_page_not_json(api: TestClient) -> None:
    user(api, "e@x.io", "editor")
    editor = browser(api, "e@x.io")
    wrong = post(editor, "/ui/customers/c1/points", {"points": "many", "reason": "x"})
    assert wrong.status_code == 422 and wrong.headers["content-type"].startswith("text/html")
    assert "points" in wrong.text
    fragment = editor.post("/ui/customers/c1/points", data={"points": "many", "reason": "x"},
                           headers={**HX, "X-CSRF-Token": csrf(editor)})  # fmt: skip
    assert fragment.status_code == 422 and fragment.headers["HX-Retarget"] == "#flash"


def test_an_expired_session_during_an_htmx_action_returns_to_the_page(api: TestClient) -> None:
    anonymous = TestClient(api.app, follow_redirects=False)
    response = anonymous.get("/ui/segments/abc", headers={**HX, "HX-Current-URL": "http://testserver/ui/customers?q=c"})
    assert response.headers["HX-Redirect"] == "/ui/login?next=%2Fui%2Fcustomers%3Fq%3Dc"


def test_an_error_page_keeps_the_navigation(api: TestClient) -> None:
    user(api, "v@x.io", "viewer")
    missing = browser(api, "v@x.io").get("/ui/segments/seg_nope")
    assert missing.status_code == 404 and "Not found" in missing.text
    assert 'href="/ui/customers"' in missing.text and "Log out" in missing.text
