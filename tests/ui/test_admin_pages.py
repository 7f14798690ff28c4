"""The administration pages of the UI: campaigns, users, teams, tokens, audit, webhooks, settings.

Browsers log in through the login form (session cookie) and send the CSRF token read from the page's
<meta name="csrf-token">; the data they should see is created through the API with the admin token.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.ui.conftest import PASSWORD, browser, csrf, post, segment, user


@pytest.fixture
def admin(api: TestClient) -> TestClient:
    user(api, "boss@x.io", "admin")
    return browser(api, "boss@x.io")


@pytest.fixture
def viewer(api: TestClient) -> TestClient:
    user(api, "reader@x.io", "viewer")
    return browser(api, "reader@x.io")


# --- who may see what -----------------------------------------------------------------------------------------------

PAGES = ["/ui/campaigns", "/ui/campaigns/new", "/ui/admin", "/ui/admin/audit", "/ui/webhooks", "/ui/settings"]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_browsers_are_sent_to_the_login_form(api: TestClient, path: str) -> None:
    response = TestClient(api.app, follow_redirects=False).get(path)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=" + path.replace("/", "%2F")


def test_a_bearer_token_does_not_open_the_pages(api: TestClient) -> None:
    response = api.get("/ui/admin", follow_redirects=False)  # the admin token, no session cookie
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login")


@pytest.mark.parametrize("path", ["/ui/admin", "/ui/admin/audit", "/ui/webhooks", "/ui/campaigns/new"])
def test_a_viewer_is_refused_the_admin_and_write_pages_in_html(viewer: TestClient, path: str) -> None:
    response = viewer.get(path)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "Forbidden" in response.text
    assert "lacks the" in response.text


def test_a_viewer_sees_campaigns_without_write_controls_and_cannot_write(api: TestClient, viewer: TestClient) -> None:
    poles = segment(api, "Poles")
    created = api.post("/api/v1/campaigns", json={"name": "Spring promo", "kind": "promotion",
                                                  "included_segments": [poles]})  # fmt: skip
    campaign_id = created.json()["id"]
    listing = viewer.get("/ui/campaigns")
    assert listing.status_code == 200
    assert "Spring promo" in listing.text
    assert "New campaign" not in listing.text
    detail = viewer.get(f"/ui/campaigns/{campaign_id}")
    assert detail.status_code == 200
    assert f'href="/ui/segments/{poles}"' in detail.text
    assert "/edit" not in detail.text
    assert "/status" not in detail.text and "/delete" not in detail.text
    assert "Admin</a>" not in detail.text  # the nav offers no admin link either
    token = csrf(viewer)
    refused = post(viewer, f"/ui/campaigns/{campaign_id}/status", {"to": "active"}, token=token)
    assert refused.status_code == 403
    assert post(viewer, "/ui/campaigns", {"name": "Sneaky", "kind": "promotion"}, token=token).status_code == 403
    assert post(viewer, "/ui/admin/teams", {"id": "sneaky", "name": "Sneaky"}, token=token).status_code == 403
    assert api.get(f"/api/v1/campaigns/{campaign_id}").json()["status"] == "draft"
    assert api.get("/api/v1/campaigns").json()["total"] == 1
    assert api.get("/api/v1/teams").json() == []


def test_a_campaign_of_another_team_does_not_exist_for_an_outsider(api: TestClient) -> None:
    for team in ("alpha", "beta"):
        assert api.post("/api/v1/teams", json={"id": team, "name": team.title()}).status_code == 201
    body = {"name": "Alpha only", "kind": "reward", "team": "alpha"}
    campaign_id = api.post("/api/v1/campaigns", json=body).json()["id"]
    user(api, "outsider@x.io", "editor", ["beta"])
    outsider = browser(api, "outsider@x.io")
    assert "Alpha only" not in outsider.get("/ui/campaigns").text
    assert outsider.get(f"/ui/campaigns/{campaign_id}").status_code == 404
    assert post(outsider, f"/ui/campaigns/{campaign_id}/delete", {}).status_code == 404
    assert api.get(f"/api/v1/campaigns/{campaign_id}").status_code == 200


def test_a_form_post_without_the_csrf_token_is_refused(admin: TestClient, api: TestClient) -> None:
    response = admin.post("/ui/admin/teams", data={"id": "growth", "name": "Growth"})
    assert response.status_code == 403
    assert "CSRF" in response.text
    wrong = admin.post("/ui/admin/teams", data={"id": "growth", "name": "Growth", "csrf_token": "forged"})
    assert wrong.status_code == 403
    assert api.get("/api/v1/teams").json() == []
    assert post(admin, "/ui/admin/teams", {"id": "growth", "name": "Growth"}).status_code == 303
    assert [t["id"] for t in api.get("/api/v1/teams").json()] == ["growth"]


# --- campaigns ---------------------------------------------------------------------------------------------------


def test_a_campaign_created_with_the_form_shows_on_its_page(api: TestClient, admin: TestClient) -> None:
    poles = segment(api, "Poles")
    germans = segment(api, "Germans", 'profile.country in ("DE")')
    form = {"name": "Spring promo", "description": "Ten percent off", "kind": "promotion", "status": "draft",
            "team": "", "included_segments": [poles], "excluded_segments": [germans],
            "included_groups": "vip, gold", "excluded_groups": ""}  # fmt: skip
    response = post(admin, "/ui/campaigns", form)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    campaign_id = location.rsplit("/", 1)[1]
    assert location == f"/ui/campaigns/{campaign_id}"
    stored = api.get(f"/api/v1/campaigns/{campaign_id}").json()
    assert stored["name"] == "Spring promo"
    assert [s["id"] for s in stored["included_segments"]] == [poles]
    assert [s["id"] for s in stored["excluded_segments"]] == [germans]
    assert stored["included_groups"] == ["gold", "vip"]
    detail = admin.get(location)
    assert detail.status_code == 200
    assert "Spring promo" in detail.text and "Ten percent off" in detail.text
    assert f'<a href="/ui/segments/{poles}">Poles</a>' in detail.text
    assert f'<a href="/ui/segments/{germans}">Germans</a>' in detail.text
    # draft -> active or ended, each behind a confirmation
    assert re.findall(r'name="to" value="(\w+)"', detail.text) == ["active", "ended"]
    assert detail.text.count("hx-confirm=") >= 3  # activate, end, delete
    assert "Spring promo" in admin.get("/ui/campaigns").text

    activated = post(admin, f"/ui/campaigns/{campaign_id}/status", {"to": "active"})
    assert activated.status_code == 303
    assert api.get(f"/api/v1/campaigns/{campaign_id}").json()["status"] == "active"
    detail = admin.get(location)
    assert re.findall(r'name="to" value="(\w+)"', detail.text) == ["paused", "ended"]
    assert f"/ui/campaigns/{campaign_id}/delete" not in detail.text  # an active campaign cannot be deleted
    # an htmx button (confirmed in the browser) is sent to the page rather than redirected
    paused = admin.post(f"/ui/campaigns/{campaign_id}/status", data={"to": "paused"},
                        headers={"HX-Request": "true", "X-CSRF-Token": csrf(admin)})  # fmt: skip
    assert paused.status_code == 204
    assert paused.headers["HX-Redirect"] == location
    assert api.get(f"/api/v1/campaigns/{campaign_id}").json()["status"] == "paused"


def test_editing_a_campaign_through_the_form(api: TestClient, admin: TestClient) -> None:
    poles = segment(api, "Poles")
    campaign_id = api.post("/api/v1/campaigns", json={"name": "Old name", "kind": "reward",
                                                      "included_segments": [poles]}).json()["id"]  # fmt: skip
    form = admin.get(f"/ui/campaigns/{campaign_id}/edit")
    assert form.status_code == 200
    assert 'value="Old name"' in form.text
    assert f'<option value="{poles}" selected>' in form.text
    response = post(admin, f"/ui/campaigns/{campaign_id}", {"name": "New name", "included_segments": [],
                                                             "included_groups": "vip"})  # fmt: skip
    assert response.status_code == 303, response.text
    stored = api.get(f"/api/v1/campaigns/{campaign_id}").json()
    assert (stored["name"], stored["included_segments"], stored["included_groups"]) == ("New name", [], ["vip"])


def test_an_invalid_campaign_form_is_shown_again_with_its_messages(api: TestClient, admin: TestClient) -> None:
    response = post(admin, "/ui/campaigns", {"name": "", "description": "kept <b>as typed</b>", "kind": "promotion"})
    assert response.status_code == 422
    assert 'id="f-name"' in response.text
    assert re.search(r'id="f-name"[^>]*aria-invalid="true"', response.text)
    assert re.search(r'<span class="field-error" id="f-name-error">[^<]*at least 1 character', response.text)
    assert "kept &lt;b&gt;as typed&lt;/b&gt;</textarea>" in response.text
    # a rule of the service, not of the schema: a distribution campaign needs a target
    response = post(admin, "/ui/campaigns", {"name": "Mailing", "kind": "distribution"})
    assert response.status_code == 422
    assert "a distribution campaign needs a target" in response.text
    # a conflict: only active segments can be chosen
    inactive = segment(api, "Dormant", status="inactive")
    response = post(admin, "/ui/campaigns", {"name": "Dormant promo", "kind": "promotion",
                                             "included_segments": [inactive]})  # fmt: skip
    assert response.status_code == 409
    assert "only active segments can be selected" in response.text
    assert 'value="Dormant promo"' in response.text
    assert api.get("/api/v1/campaigns").json()["total"] == 0


def test_a_distribution_campaign_runs_now_and_shows_its_report(
    api: TestClient, admin: TestClient, tmp_path: Path
) -> None:
    api.app.state.settings.export_dir = str(tmp_path)  # type: ignore[attr-defined]
    poles = segment(api, "Poles")
    form = {"name": "Nightly file", "kind": "distribution", "status": "active", "included_segments": [poles],
            "distribution_target": "file", "distribution_format": "csv", "distribution_batch_size": "1000"}  # fmt: skip
    response = post(admin, "/ui/campaigns", form)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert "No delivery yet." in admin.get(location).text
    run = post(admin, f"{location}/deliveries", {})
    assert run.status_code == 303
    detail = admin.get(location)
    assert "No delivery yet." not in detail.text
    assert '<span class="status succeeded">succeeded</span>' in detail.text
    assert re.search(r'<td class="num">2</td>', detail.text)  # c1 and c2
    assert len(list(tmp_path.rglob("*.csv"))) == 1


# --- administration -------------------------------------------------------------------------------------------------


def test_the_admin_page_lists_users_teams_and_tokens(api: TestClient, admin: TestClient) -> None:
    assert api.post("/api/v1/teams", json={"id": "growth", "name": "Growth team"}).status_code == 201
    user(api, "member@x.io", "editor", ["growth"])
    assert api.post("/api/v1/tokens", json={"name": "etl-job"}).status_code == 201
    page = admin.get("/ui/admin")
    assert page.status_code == 200
    for shown in ("boss@x.io", "member@x.io", "Growth team", "etl-job", 'for="nu-email"', 'for="nk-name"'):
        assert shown in page.text


def test_a_team_name_is_escaped(api: TestClient, admin: TestClient) -> None:
    response = post(admin, "/ui/admin/teams", {"id": "xss", "name": "<script>x</script>"})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/admin?done=team-created#teams"
    page = admin.get("/ui/admin?done=team-created")
    assert "Team created." in page.text
    assert "<script>x</script>" not in page.text
    assert "&lt;script&gt;x&lt;/script&gt;" in page.text
    assert api.get("/api/v1/teams/xss").json()["name"] == "<script>x</script>"


def test_teams_are_renamed_and_deleted_unless_in_use(api: TestClient, admin: TestClient) -> None:
    assert post(admin, "/ui/admin/teams", {"id": "growth", "name": "Growth"}).status_code == 303
    assert post(admin, "/ui/admin/teams/growth", {"name": "Growth & retention"}).status_code == 303
    assert api.get("/api/v1/teams/growth").json()["name"] == "Growth & retention"
    api.post("/api/v1/campaigns", json={"name": "Owned", "kind": "reward", "team": "growth"})
    refused = post(admin, "/ui/admin/teams/growth/delete", {})
    assert refused.status_code == 409
    assert "still owns campaign" in refused.text
    invalid = post(admin, "/ui/admin/teams", {"id": "Not An Id", "name": "Bad"})
    assert invalid.status_code == 422
    assert re.search(r'<span class="field-error" id="nt-id-error">[^<]*pattern', invalid.text)


def test_users_are_created_changed_reset_and_deleted(api: TestClient, admin: TestClient) -> None:
    assert api.post("/api/v1/teams", json={"id": "growth", "name": "Growth"}).status_code == 201
    created = post(admin, "/ui/admin/users", {"email": "new@x.io", "name": "New", "password": PASSWORD,
                                              "role": "viewer", "teams": ["growth"]})  # fmt: skip
    assert created.status_code == 303, created.text
    (new,) = [u for u in api.get("/api/v1/users").json() if u["email"] == "new@x.io"]
    assert (new["role"], new["teams"]) == ("viewer", ["growth"])
    changed = post(admin, f"/ui/admin/users/{new['id']}", {"role": "editor", "is_active": "true", "teams": []})
    assert changed.status_code == 303
    assert api.get(f"/api/v1/users/{new['id']}").json()["role"] == "editor"
    reset = post(admin, f"/ui/admin/users/{new['id']}/password", {"password": "another-long-password"})
    assert reset.status_code == 303
    browser(api, "new@x.io", "another-long-password")  # logs in with the new password
    short = post(admin, f"/ui/admin/users/{new['id']}/password", {"password": "short"})
    assert short.status_code == 422
    assert f'id="password-{new["id"]}-error"' in short.text
    duplicate = post(admin, "/ui/admin/users", {"email": "new@x.io", "password": PASSWORD, "role": "viewer"})
    assert duplicate.status_code == 409
    assert "already exists" in duplicate.text
    me = next(u for u in api.get("/api/v1/users").json() if u["email"] == "boss@x.io")
    demote = post(admin, f"/ui/admin/users/{me['id']}", {"role": "viewer", "is_active": "true"})
    assert demote.status_code == 409
    assert "cannot demote or disable your own account" in demote.text
    assert post(admin, f"/ui/admin/users/{new['id']}/delete", {}).status_code == 303
    assert api.get(f"/api/v1/users/{new['id']}").status_code == 404


def test_a_new_token_is_shown_once(api: TestClient, admin: TestClient) -> None:
    response = post(admin, "/ui/admin/tokens", {"name": "loader", "role": "editor", "team": "", "expires_at": ""})
    assert response.status_code == 200
    secret = re.search(r'data-testid="new-token">(coh_[^<]+)<', response.text)
    assert secret, response.text
    assert api.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {secret.group(1)}"}).json()["role"] == "editor"
    again = admin.get("/ui/admin")
    assert "loader" in again.text
    assert secret.group(1) not in again.text
    (token,) = api.get("/api/v1/tokens").json()
    assert post(admin, f"/ui/admin/tokens/{token['id']}/revoke", {}).status_code == 303
    assert api.get("/api/v1/tokens").json()[0]["revoked_at"] is not None
    past = post(admin, "/ui/admin/tokens", {"name": "old", "role": "viewer", "expires_at": "2020-01-01T10:00"})
    assert past.status_code == 422
    assert 'id="nk-expires-error"' in past.text and "must be in the future" in past.text


def test_the_audit_log_lists_and_filters_entries(api: TestClient, admin: TestClient) -> None:
    assert post(admin, "/ui/admin/teams", {"id": "growth", "name": "Growth"}).status_code == 303
    api.post("/api/v1/campaigns", json={"name": "Audited", "kind": "reward"})
    page = admin.get("/ui/admin/audit")
    assert page.status_code == 200
    assert "team.create" in page.text and "campaign.create" in page.text
    assert "boss@x.io" in page.text  # the team was created by the logged-in admin
    filtered = admin.get("/ui/admin/audit", params={"action": "team.create"})
    assert "team.create" in filtered.text
    assert ">campaign.create<" not in filtered.text
    assert 'data-testid="audit-total">1<' in filtered.text


# --- webhooks ------------------------------------------------------------------------------------------------------


def test_webhook_subscriptions_are_listed_created_and_deleted(api: TestClient, admin: TestClient) -> None:
    poles = segment(api, "Poles")
    response = post(admin, "/ui/webhooks", {"url": "https://hooks.example.com/in", "event_types": ["segment.entered"],
                                            "segments": [poles], "secret": "", "batch_size": "50"})  # fmt: skip
    assert response.status_code == 200, response.text
    secret = re.search(r'data-testid="new-secret">(whsec_[^<]+)<', response.text)
    assert secret
    (subscription,) = api.get("/api/v1/webhooks").json()
    assert (subscription["segments"], subscription["batch_size"]) == ([poles], 50)
    page = admin.get("/ui/webhooks")
    assert "https://hooks.example.com/in" in page.text and ">Poles</a>" in page.text
    assert secret.group(1) not in page.text
    detail = admin.get(f"/ui/webhooks/{subscription['id']}")
    assert detail.status_code == 200
    assert "No delivery yet." in detail.text
    invalid = post(admin, "/ui/webhooks", {"url": "ftp://nope", "event_types": []})
    assert invalid.status_code == 422
    assert 'id="w-url-error"' in invalid.text
    assert post(admin, f"/ui/webhooks/{subscription['id']}/delete", {}).status_code == 303
    assert api.get("/api/v1/webhooks").json() == []


# --- settings ------------------------------------------------------------------------------------------------------


def test_settings_show_the_environment_and_the_definitions(api: TestClient, viewer: TestClient) -> None:
    assert api.put("/api/v1/attributes/tier", json={"type": "string", "label": "Loyalty tier"}).status_code == 200
    assert api.put("/api/v1/event-definitions/page_view", json={"properties": {"url": "string"}}).status_code == 200
    page = viewer.get("/ui/settings")
    assert page.status_code == 200
    assert 'data-testid="timezone">UTC<' in page.text
    assert 'data-testid="currency">EUR' in page.text
    assert "COHORTA_TIMEZONE" in page.text and "COHORTA_CURRENCY" in page.text and "minor units" in page.text
    assert "Loyalty tier" in page.text and "page_view" in page.text
    assert "Save attribute" not in page.text  # a viewer reads only
    refused = post(viewer, "/ui/settings/attributes", {"name": "sneaky", "type": "string"})
    assert refused.status_code == 403
    assert "sneaky" not in api.get("/api/v1/attributes").text


def test_an_admin_defines_attributes_and_events(api: TestClient, admin: TestClient) -> None:
    saved = post(admin, "/ui/settings/attributes", {"name": "tier", "type": "string", "label": "Tier"})
    assert saved.status_code == 303
    (attribute,) = api.get("/api/v1/attributes").json()["attributes"]
    assert (attribute["name"], attribute["label"]) == ("tier", "Tier")
    prefilled = admin.get("/ui/settings", params={"attribute": "tier"})
    assert 'id="at-name" name="name" required maxlength="64" value="tier"' in prefilled.text
    bad = post(admin, "/ui/settings/attributes", {"name": "Bad Name", "type": "string"})
    assert bad.status_code == 422
    assert 'id="at-name-error"' in bad.text
    event = post(admin, "/ui/settings/events", {"name": "page_view", "label": "Page view",
                                                "properties": "url: string\nseconds: number"})  # fmt: skip
    assert event.status_code == 303, event.text
    (definition,) = api.get("/api/v1/event-definitions").json()
    assert definition["properties"] == {"url": "string", "seconds": "number"}
    wrong = post(admin, "/ui/settings/events", {"name": "click", "properties": "url string"})
    assert wrong.status_code == 422
    assert 'id="ev-properties-error"' in wrong.text
    actions = [e["action"] for e in api.get("/api/v1/audit").json()["items"]]
    assert "settings.attribute" in actions and "settings.event_definition" in actions
