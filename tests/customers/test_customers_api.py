"""Customer profiles and typed attributes through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from cohorta.app import create_app
from cohorta.clock import FrozenClock
from cohorta.config import Settings
from cohorta.db import Base


def errors_at(response: Any) -> dict[str, str]:
    body = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    return {error["pointer"]: error["detail"] for error in body["errors"]}


def test_health_needs_no_token_and_everything_else_does(client: TestClient) -> None:
    assert client.get("/api/v1/health", headers={"Authorization": ""}).json()["status"] == "ok"
    anonymous = client.get("/api/v1/attributes", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert anonymous.json()["title"] == "Unauthorized"
    assert client.get("/api/v1/attributes", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/v1/attributes").status_code == 200


def test_openapi_is_served(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/customers/{source_id}" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_upsert_creates_then_merges_and_null_clears(client: TestClient) -> None:
    created = client.put("/api/v1/customers/c-1", json={"first_name": "Ola", "city": "Kraków", "country": "pl"})
    assert created.status_code == 201
    assert created.json()["country"] == "PL"
    assert created.json()["created_at"] == "2026-03-14T12:00:00Z"

    updated = client.put("/api/v1/customers/c-1", json={"email": "ola@example.com", "city": None})
    assert updated.status_code == 200
    body = updated.json()
    assert (body["first_name"], body["email"], body["city"]) == ("Ola", "ola@example.com", None)


def test_bulk_upsert_reports_created_updated_unchanged(client: TestClient) -> None:
    client.put("/api/v1/customers/a", json={"first_name": "A"})
    client.put("/api/v1/customers/b", json={"first_name": "B"})
    result = client.post(
        "/api/v1/customers/bulk",
        json={
            "items": [
                {"source_id": "a", "first_name": "A"},
                {"source_id": "b", "first_name": "Bee"},
                {"source_id": "c", "loyalty_member": True},
            ]
        },
    ).json()
    assert (result["created"], result["updated"], result["unchanged"]) == (1, 1, 1)
    assert [item["result"] for item in result["items"]] == ["unchanged", "updated", "created"]
    assert client.get("/api/v1/customers/c").json()["loyalty_member"] is True


def test_bulk_is_all_or_nothing_and_names_each_bad_item(client: TestClient, store: sa.Engine) -> None:
    response = client.post(
        "/api/v1/customers/bulk",
        json={
            "items": [
                {"source_id": "ok-1"},
                {"source_id": "bad", "country": "XX"},
                {"source_id": "ok-2"},
                {"source_id": "bad-2", "birthdate": "1850-01-01"},
            ]
        },
    )
    assert response.status_code == 422
    assert set(errors_at(response)) == {"/items/1/country", "/items/3/birthdate"}
    assert client.get("/api/v1/customers/ok-1").status_code == 404
    with store.connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM customers")).scalar() == 0


def test_bulk_refuses_repeated_ids_and_too_many_items(client: TestClient) -> None:
    repeated = client.post("/api/v1/customers/bulk", json={"items": [{"source_id": "x"}, {"source_id": "x"}]})
    assert errors_at(repeated) == {"/items/1/source_id": "repeats item 0 of this request"}
    client.app.state.settings.bulk_max_items = 2  # type: ignore[attr-defined]
    too_many = client.post("/api/v1/customers/bulk", json={"items": [{"source_id": str(i)} for i in range(3)]})
    assert too_many.status_code == 422
    assert "at most 2" in errors_at(too_many)["/items"]


def test_profile_field_checks(client: TestClient) -> None:
    response = client.put(
        "/api/v1/customers/c",
        json={"email": "not-an-email", "created_at": "2024-01-01T10:00:00", "first_name": "x" * 300, "unknown": 1},
    )
    assert response.status_code == 422
    assert set(errors_at(response)) == {"/email", "/created_at", "/first_name", "/unknown"}


def test_typed_attributes_round_trip(client: TestClient) -> None:
    for name, kind in [
        ("occupation", "string"),
        ("children", "number"),
        ("married", "boolean"),
        ("anniversary", "date"),
        ("last_survey_at", "datetime"),
        ("interests", "list"),
    ]:
        assert client.put(f"/api/v1/attributes/{name}", json={"type": kind}).status_code == 200
    attributes = {
        "occupation": "boat builder",
        "children": 2,
        "married": True,
        "anniversary": "2010-06-12",
        "last_survey_at": "2026-01-02T03:04:05+01:00",
        "interests": ["sailing", "wine", "sailing"],
    }
    client.put("/api/v1/customers/c", json={"attributes": attributes})
    stored = client.get("/api/v1/customers/c").json()["attributes"]
    assert stored == {
        **attributes,
        "children": 2.0,
        "last_survey_at": "2026-01-02T02:04:05Z",
        "interests": ["sailing", "wine"],
    }

    client.put("/api/v1/customers/c", json={"attributes": {"children": None}})
    assert "children" not in client.get("/api/v1/customers/c").json()["attributes"]


def test_attribute_values_must_fit_the_schema(client: TestClient) -> None:
    client.put("/api/v1/attributes/married", json={"type": "boolean"})
    client.put("/api/v1/attributes/last_survey_at", json={"type": "datetime"})
    response = client.put(
        "/api/v1/customers/c",
        json={"attributes": {"married": "yes", "last_survey_at": "2026-01-02T03:04:05", "nickname": "Bo"}},
    )
    assert response.status_code == 422
    errors = errors_at(response)
    assert "must be true or false" in errors["/attributes/married"]
    assert "UTC offset" in errors["/attributes/last_survey_at"]
    assert "unknown attribute 'nickname'" in errors["/attributes/nickname"]
    assert client.get("/api/v1/customers/c").status_code == 404


def test_open_schema_declares_new_attributes_by_their_json_type(client: TestClient) -> None:
    assert client.put("/api/v1/attribute-schema", json={"open": True}).json()["open"] is True
    client.put("/api/v1/customers/c", json={"attributes": {"score": 7, "vip": False, "tags": ["a"], "note": "hi"}})
    declared = {d["name"]: d["type"] for d in client.get("/api/v1/attributes").json()["attributes"]}
    assert declared == {"score": "number", "vip": "boolean", "tags": "list", "note": "string"}
    # Once declared, the type holds.
    refused = client.put("/api/v1/customers/d", json={"attributes": {"score": "high"}})
    assert "/attributes/score" in errors_at(refused)


def test_attribute_type_cannot_change_while_values_exist(client: TestClient) -> None:
    client.put("/api/v1/attributes/level", json={"type": "string"})
    assert client.put("/api/v1/attributes/level", json={"type": "number", "label": "Level"}).status_code == 200
    client.put("/api/v1/customers/c", json={"attributes": {"level": 3}})
    conflict = client.put("/api/v1/attributes/level", json={"type": "string"})
    assert conflict.status_code == 409
    assert "cannot change" in conflict.json()["detail"]
    bad_name = client.put("/api/v1/attributes/Bad-Name", json={"type": "string"})
    assert bad_name.status_code == 422


def test_delete_erases_the_customer_and_all_activity(client: TestClient, store: sa.Engine) -> None:
    client.put("/api/v1/attributes/occupation", json={"type": "string"})
    client.put("/api/v1/event-definitions/viewed", json={"properties": {"sku": "string"}})
    client.put("/api/v1/customers/gone", json={"attributes": {"occupation": "x"}})
    client.put("/api/v1/customers/kept", json={})
    for who in ("gone", "kept"):
        client.post("/api/v1/orders", json={"id": f"o-{who}", "customer": who, "total": "10", "items": [{"sku": "A"}]})
        client.post(
            "/api/v1/events", json={"id": f"e-{who}", "customer": who, "name": "viewed", "properties": {"sku": "A"}}
        )
        client.post(
            "/api/v1/loyalty/transactions",
            json={"id": f"l-{who}", "customer": who, "type": "points", "program": "club", "entry": "earn", "points": 5},
        )
    assert client.delete("/api/v1/customers/gone").status_code == 204
    assert client.get("/api/v1/customers/gone").status_code == 404
    assert client.delete("/api/v1/customers/gone").status_code == 404
    with store.connect() as connection:
        kept_id = connection.execute(sa.text("SELECT id FROM customers")).scalar_one()
        for table in Base.metadata.sorted_tables:
            if "customer_id" in table.c:
                others = sa.select(sa.func.count()).where(table.c.customer_id != kept_id)
                assert connection.execute(others).scalar() == 0, table.name
        for name in ("orders", "order_items", "events", "loyalty_transactions", "customer_summaries"):
            assert connection.execute(sa.text(f"SELECT COUNT(*) FROM {name}")).scalar() == 1, name
        assert connection.execute(sa.text("SELECT COUNT(*) FROM event_property_values")).scalar() == 1


def test_request_size_limit(store: sa.Engine, settings: Settings, clock: FrozenClock) -> None:
    small = settings.model_copy(update={"max_request_bytes": 2048})
    app = create_app(small, clock=clock, engine=store)
    body = b'{"items": [' + b",".join(b'{"source_id": "%d"}' % i for i in range(200)) + b"]}"
    with TestClient(app, headers={"Authorization": f"Bearer {settings.admin_token}"}) as small_client:
        declared = small_client.post(
            "/api/v1/customers/bulk", content=body, headers={"Content-Type": "application/json"}
        )
        assert declared.status_code == 413
        assert declared.json()["title"] == "Request too large"
        streamed = small_client.post(
            "/api/v1/customers/bulk",
            content=iter([body[:1500], body[1500:]]),
            headers={"Content-Type": "application/json"},
        )
        assert streamed.status_code == 413
        assert small_client.get("/api/v1/customers/1").status_code == 404
