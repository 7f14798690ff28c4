"""The main flows in a real browser: log in, build a nested rule and watch the preview, save it, read its members
and export them, meet the guards when deactivating and archiving, and ask why a customer is in a segment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.browser.conftest import OTHER_PASSWORD, VIEWER_EMAIL, LiveServer, log_in, shot


def preview_count(page: Page) -> int:
    text = page.get_by_test_id("preview-count").inner_text()
    return int(text.replace(",", "").replace("\u202f", "").replace("\xa0", ""))


def wait_count_change(page: Page, before: int) -> int:
    page.wait_for_function(
        "before => { const el = document.querySelector('[data-testid=preview-count]');"
        " return el && Number(el.textContent.replace(/[^0-9]/g, '')) !== before; }",
        arg=before,
    )
    return preview_count(page)


def test_pages_need_a_session_and_login_works_with_the_keyboard(page: Page, live_server: LiveServer) -> None:
    page.goto(f"{live_server.url}/ui/segments")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    shot(page, "login", full_page=False)
    page.keyboard.type("admin@browser.test")  # the email field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type("wrong password")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("wrong email or password")
    page.get_by_label("Password").fill("browser-admin-password")
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/segments$"))


def test_segment_list_searches_filters_and_sorts(page: Page, live_server: LiveServer) -> None:
    for name in ("Lapsed buyers", "Gold and platinum members"):
        live_server.wait_for_members(live_server.segment_id(name))
    log_in(page, live_server)
    rows = page.locator("table.segments tbody tr")
    expect(rows).to_have_count(5)
    shot(page, "segments")
    page.get_by_label("Search by name").fill("laps")  # search as you type: no button
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Lapsed buyers")
    expect(page).to_have_url(re.compile(r"/ui/segments\?q=laps&sort=name$"))  # empty filters stay out of the URL
    page.get_by_label("Search by name").fill("")
    page.get_by_label("Type").select_option("static")
    expect(page.get_by_text("No segment matches.")).to_be_visible()
    page.get_by_label("Type").select_option("")
    expect(rows).to_have_count(5)
    header = page.locator("table.segments thead")
    header.get_by_role("link", name="Members", exact=True).click()  # sort by members, ascending then descending
    expect(page.locator("th[aria-sort=ascending]")).to_contain_text("Members")
    header.get_by_role("link", name=re.compile("^Members")).click()
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("Members")
    counts = [int(t.replace(",", "")) for t in page.get_by_test_id("members").all_inner_texts()]
    assert counts == sorted(counts, reverse=True) and len(counts) == 5


def test_build_a_nested_rule_watch_the_preview_and_save(page: Page, live_server: LiveServer) -> None:
    log_in(page, live_server)
    page.goto(f"{live_server.url}/ui/segments/new")
    page.get_by_label("Name", exact=True).fill("Browser-built Poles")
    expect(page.get_by_test_id("preview-count")).to_be_visible()
    members = preview_count(page)  # the first condition: loyalty members
    conditions = page.locator(".condition")

    conditions.nth(0).locator(".field-picker").select_option("field:profile.country")
    conditions.nth(0).get_by_label("Value").fill("PL")
    poles = wait_count_change(page, members)
    assert 0 < poles < members

    page.get_by_role("button", name="+ Group").last.click()  # a nested group: OR by default inside an AND
    nested = conditions.nth(1)
    nested.locator(".field-picker").select_option("field:summary.total_spent")
    nested.get_by_label("Operator").select_option("gt")
    nested.get_by_label("Amount").fill("")
    expect(nested.locator(".node-error")).to_contain_text("number")  # the error sits at its condition
    expect(nested).to_have_class(re.compile("invalid"))
    nested.get_by_label("Amount").fill("500")
    big_spenders = wait_count_change(page, poles)
    page.get_by_role("button", name="+ Condition").first.click()  # the nested group's own "+ Condition"
    page.wait_for_timeout(600)  # let the preview of the new default condition settle
    one_order = conditions.nth(2)
    one_order.locator(".field-picker").select_option("field:summary.order_count")
    one_order.get_by_label("Number").fill("1")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=rule-text]').textContent.includes('summary.order_count is 1')"
    )
    page.wait_for_timeout(600)
    either = preview_count(page)
    assert either > big_spenders  # spent over 500 OR a single order: more Poles than the first alone

    text = page.get_by_test_id("rule-text").inner_text()
    assert 'profile.country is "PL"' in text and " or " in text and "summary.total_spent > 500" in text
    # What the builder shows is what the API computes for the same rule.
    expected = live_server.api.post("/api/v1/segments/preview", json={"text": text, "sample_size": 0}).json()
    assert expected["count"] == either
    page.get_by_text("Drop-off").scroll_into_view_if_needed()
    shot(page, "segment-editor")

    page.get_by_test_id("save").click()
    page.wait_for_url(re.compile(r"/ui/segments/seg_"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Browser-built Poles")
    segment_id = page.url.rsplit("/", 1)[1]
    assert live_server.wait_for_members(segment_id) == either


def test_members_table_and_export(page: Page, live_server: LiveServer, tmp_path: Path) -> None:
    segment_id = live_server.segment_id("Lapsed buyers")
    members = live_server.wait_for_members(segment_id)
    log_in(page, live_server)
    page.goto(f"{live_server.url}/ui/segments/{segment_id}")
    expect(page.get_by_test_id("member-total")).to_have_text(f"{members:,}")
    expect(page.locator("#analytics-body .stat").first).to_contain_text(f"{members:,}")
    shot(page, "segment-detail", full_page=False)

    page.get_by_label(re.compile("^Filter")).fill('profile.country in ("PL")')
    page.get_by_role("button", name="Apply").click()
    poles = live_server.api.get(
        f"/api/v1/segments/{segment_id}/members", params={"filter": 'profile.country in ("PL")', "limit": 1}
    ).json()["total"]
    expect(page.get_by_test_id("member-total")).to_have_text(f"{poles:,}")
    assert poles < members

    with page.expect_download() as download_info:
        page.get_by_test_id("export-submit").click()
    target = tmp_path / "members.csv"
    download_info.value.save_as(target)
    lines = target.read_text().splitlines()
    assert lines[0].split(",")[0] == "source_id"
    assert len(lines) - 1 == members


def test_guards_on_deactivate_and_archive(page: Page, live_server: LiveServer) -> None:
    used = live_server.segment_id("Gold and platinum members")
    campaign = live_server.api.post(
        "/api/v1/campaigns",
        json={"name": "Gold promo", "kind": "promotion", "status": "active", "included_segments": [used]},
    )
    assert campaign.status_code == 201, campaign.text
    unused = live_server.segment_id("Window shoppers")
    members = live_server.wait_for_members(unused)
    log_in(page, live_server)
    confirmations: list[str] = []

    def accept(dialog: Dialog) -> None:
        confirmations.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    row = page.locator(f"#segment-{used}")
    row.get_by_text("Actions").click()
    row.get_by_role("button", name="Deactivate").click()
    expect(page.locator("#flash")).to_contain_text("Gold promo")  # the guard names what uses it
    expect(row.locator(".status")).to_have_text("active")
    shot(page, "guard-refused", full_page=False)

    row = page.locator(f"#segment-{unused}")
    row.get_by_text("Actions").click()
    row.get_by_role("button", name="Deactivate").click()
    expect(row.locator(".status")).to_have_text("inactive")
    row.get_by_text("Actions").click()
    row.get_by_role("button", name="Archive").click()
    expect(row.locator(".status")).to_have_text("archived")
    assert f"Archiving is irreversible: all {members:,} members will be removed" in confirmations[-1]
    assert live_server.api.get(f"/api/v1/segments/{unused}").json()["members"] == 0


def test_customer_profile_says_why_in_or_out(page: Page, live_server: LiveServer) -> None:
    segment_id = live_server.segment_id("Lapsed buyers")
    live_server.wait_for_members(segment_id)
    member = live_server.api.get(f"/api/v1/segments/{segment_id}/members", params={"limit": 1}).json()["items"][0]
    log_in(page, live_server)
    page.goto(f"{live_server.url}/ui/customers/{member['source_id']}")
    expect(page.locator("#segments")).to_contain_text("Lapsed buyers")
    page.locator("#why-segment").select_option(label="Lapsed buyers")
    page.get_by_role("button", name="Explain").click()
    expect(page.get_by_test_id("why-verdict")).to_contain_text(f"{member['source_id']} is IN")
    expect(page.locator(".why-node.pass").first).to_contain_text("summary.order_count >= 1")
    shot(page, "customer")


def test_a_viewer_sees_no_write_controls(page: Page, live_server: LiveServer) -> None:
    log_in(page, live_server, VIEWER_EMAIL, OTHER_PASSWORD)
    expect(page.locator("table.segments tbody tr").first).to_be_visible()
    expect(page.get_by_role("link", name="New segment")).to_have_count(0)
    page.locator("table.segments tbody tr").first.get_by_text("Actions").click()
    for action in ("Edit", "Deactivate", "Archive", "Delete"):
        expect(page.locator("table.segments").get_by_role("button", name=action)).to_have_count(0)
    response = page.goto(f"{live_server.url}/ui/segments/new")
    assert response is not None and response.status == 403


@pytest.mark.parametrize("width", [1280, 390])
def test_main_pages_render_without_errors(page: Page, live_server: LiveServer, width: int) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, live_server)
    segment_id = live_server.segment_id("Lapsed buyers")
    for name, path in [("segments", "/ui/segments"), ("segment", f"/ui/segments/{segment_id}"),
                       ("customers", "/ui/customers?q=C00001"), ("campaigns", "/ui/campaigns"),
                       ("admin", "/ui/admin"), ("settings", "/ui/settings"), ("sources", "/ui/sources")]:  # fmt: skip
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.status == 200, path
        page.wait_for_load_state("networkidle")
        # Wide tables scroll inside their own box; the page itself never scrolls sideways.
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{path} is {overflow}px wider than {width}px"
        shot(page, f"{name}-{width}")
    assert errors == []
