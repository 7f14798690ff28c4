"""Preview, explain, the field catalog and the rule schema through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.customers.test_customers_api import errors_at


@pytest.fixture
def shop(client: TestClient) -> TestClient:
    client.put("/api/v1/attributes/occupation", json={"type": "string"})
    client.put("/api/v1/event-definitions/product_viewed", json={"properties": {"category": "string"}})
    people = [
        ("ala", "PL", "dev", "500.00"),
        ("bob", "DE", "ops", "500.01"),
        ("cy", "PL", "ops", "20.00"),
        ("di", None, "dev", None),
        ("ed", "PL", "dev", "900.00"),
    ]
    for source_id, country, occupation, spent in people:
        client.put(
            f"/api/v1/customers/{source_id}",
            json={"country": country, "attributes": {"occupation": occupation}, "first_name": source_id.title()},
        )
        if spent:
            client.post(
                "/api/v1/orders",
                json={
                    "id": f"o-{source_id}",
                    "customer": source_id,
                    "total": spent,
                    "created_at": "2026-02-01T10:00:00Z",
                },
            )
    for n in range(3):
        client.post(
            "/api/v1/events",
            json={
                "id": f"e{n}",
                "customer": "ala",
                "name": "product_viewed",
                "timestamp": f"2026-03-0{n + 1}T10:00:00Z",
                "properties": {"category": "tea"},
            },
        )
    return client


def test_preview_counts_samples_and_drops_off(shop: TestClient) -> None:
    body = shop.post(
        "/api/v1/segments/preview",
        json={"text": 'profile.country in ("PL") and summary.total_spent > 500 and attributes.occupation is "dev"'},
    ).json()
    assert (body["count"], body["population"]) == (1, 5)
    assert [row["source_id"] for row in body["sample"]] == ["ed"]
    by_text = {node["text"]: node for node in body["nodes"]}
    # 500.00 is not more than 500: money compares exactly.
    assert by_text["summary.total_spent > 500"]["passing"] == 2
    assert by_text['profile.country in ("PL")']["passing"] == 3
    assert [n["cumulative"] for n in body["nodes"][1:]] == [3, 1, 1]
    assert body["rule"]["id"] and all("id" in child for child in body["rule"]["and"])


def test_preview_null_policy_and_warnings(shop: TestClient) -> None:
    not_pl = shop.post(
        "/api/v1/segments/preview", json={"rule": {"field": "profile.country", "op": "is_not", "value": "PL"}}
    ).json()
    assert sorted(row["source_id"] for row in not_pl["sample"]) == ["bob", "di"]  # no country counts as "not PL"
    nobody = shop.post("/api/v1/segments/preview", json={"text": "summary.order_count > 10"}).json()
    assert [w["code"] for w in nobody["warnings"]] == ["matches_nobody"]
    negated = shop.post("/api/v1/segments/preview", json={"text": 'not profile.country in ("FR")'}).json()
    assert {w["code"] for w in negated["warnings"]} == {"matches_everybody", "negation_only"}


def test_preview_activity_with_as_of(shop: TestClient) -> None:
    rule = {
        "activity": "events",
        "event": "product_viewed",
        "window": {"last_days": 30},
        "op": "gte",
        "value": 3,
        "measure": {"fn": "count"},
    }
    now = shop.post("/api/v1/segments/preview", json={"rule": rule}).json()
    assert now["count"] == 1  # the frozen clock stands at 2026-03-14
    before = shop.post("/api/v1/segments/preview", json={"rule": rule, "as_of": "2026-03-02T12:00:00Z"}).json()
    assert before["count"] == 0  # only two views had happened by then


def test_preview_refuses_bad_rules_with_paths(shop: TestClient) -> None:
    unknown = shop.post(
        "/api/v1/segments/preview",
        json={
            "rule": {
                "and": [
                    {"field": "profile.country", "op": "in", "value": ["PL"]},
                    {"field": "profile.shoe_size", "op": "gt", "value": 4},
                ]
            }
        },
    )
    assert unknown.status_code == 422
    assert "/rule/and/1/field" in errors_at(unknown)
    wrong_op = shop.post(
        "/api/v1/segments/preview", json={"rule": {"field": "summary.total_spent", "op": "contains", "value": "x"}}
    )
    assert wrong_op.status_code == 422
    both = shop.post("/api/v1/segments/preview", json={"text": "a", "rule": {}})
    assert both.status_code == 422
    syntax = shop.post("/api/v1/segments/preview", json={"text": "profile.country in ("})
    assert syntax.status_code == 422 and "/text" in errors_at(syntax)
    segment = shop.post("/api/v1/segments/preview", json={"rule": {"in_segment": "vip"}})
    assert segment.status_code == 404 and "unknown segment 'vip'" in errors_at(segment)["/rule"]


def test_explain_a_draft(shop: TestClient) -> None:
    body = shop.post(
        "/api/v1/segments/explain",
        json={"text": 'profile.country in ("PL") and summary.total_spent > 500', "source_id": "ala"},
    ).json()
    assert body["matches"] is False
    results = [(child["text"], child["result"]) for child in body["tree"]["children"]]
    assert results == [('profile.country in ("PL")', True), ("summary.total_spent > 500", False)]
    windowed = shop.post(
        "/api/v1/segments/explain",
        json={
            "rule": {
                "activity": "events",
                "event": "product_viewed",
                "window": {"last_days": 30},
                "op": "gte",
                "value": 3,
                "measure": {"fn": "count"},
            },
            "source_id": "ala",
        },
    )
    assert windowed.status_code == 200 and windowed.json()["matches"] is True
    missing = shop.post("/api/v1/segments/explain", json={"text": "summary.order_count > 1", "source_id": "zed"})
    assert missing.status_code == 404


def test_fields_catalog_and_schema(shop: TestClient) -> None:
    catalog = shop.get("/api/v1/fields").json()
    assert shop.get("/api/v1/rules/schema").json()
    text = str(catalog)
    assert "attributes.occupation" in text and "product_viewed" in text and "Poland" in text


def test_parse_and_format_round_trip(shop: TestClient) -> None:
    parsed = shop.post("/api/v1/rules/parse", json={"text": 'country in ("PL") and summary.order_count >= 1'}).json()
    formatted = shop.post("/api/v1/rules/format", json=parsed["rule"]).json()
    assert formatted["text"] == parsed["text"]
    assert formatted["rule"] == parsed["rule"]


def test_a_preview_does_not_wait_for_writers(shop: TestClient, store: sa.Engine) -> None:
    """Previews only read: an open write transaction elsewhere must not block them (SQLite's single write lock)."""
    with store.connect() as writer:
        if store.dialect.name == "sqlite":
            writer.exec_driver_sql("BEGIN IMMEDIATE")
        writer.exec_driver_sql("UPDATE customers SET city = 'Gdańsk' WHERE source_id = 'ala'")
        response = shop.post("/api/v1/segments/preview", json={"text": 'profile.country in ("PL")'})
        assert response.status_code == 200 and response.json()["count"] == 3
        writer.rollback()


@pytest.mark.parametrize("sample_size", [0, 1, 2, 3, 10])
def test_the_count_does_not_depend_on_the_sample_size(shop: TestClient, sample_size: int) -> None:
    # Count and sample come from one statement: a sample smaller than the matches, none at all, or larger.
    body = shop.post(
        "/api/v1/segments/preview", json={"text": 'profile.country in ("PL")', "sample_size": sample_size}
    ).json()
    assert body["count"] == 3
    sampled = [row["source_id"] for row in body["sample"]]
    assert len(sampled) == min(sample_size, 3)
    assert set(sampled) <= {"ala", "cy", "ed"}
    assert sampled == sorted(sampled)  # listed by internal id, the order they were created in
