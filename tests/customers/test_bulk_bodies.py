"""Bulk bodies validated straight from their bytes (cohorta.bodies): the same answers as any other body, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.customers.test_customers_api import errors_at

JSON = {"Content-Type": "application/json"}


def post(client: TestClient, path: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post(path, content=body, headers=JSON if headers is None else headers)


def test_malformed_json_is_a_422_pointing_at_the_offset(client: TestClient) -> None:
    response = post(client, "/api/v1/customers/bulk", b'{"items": [{"source_id": "a"},')
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"loc": [30], "pointer": "/30", "detail": "JSON decode error", "type": "json_invalid"}
    ]


def test_wrong_types_in_the_third_item_are_named_by_their_path(client: TestClient) -> None:
    items = [{"source_id": "a"}, {"source_id": "b"}, {"source_id": "c", "loyalty_member": "maybe", "unknown": 1}]
    response = post(client, "/api/v1/customers/bulk", json.dumps({"items": items}).encode())
    assert response.status_code == 422
    assert set(errors_at(response)) == {"/items/2/loyalty_member", "/items/2/unknown"}
    assert response.json()["detail"].startswith("/items/2/")
    assert client.get("/api/v1/customers/a").status_code == 404


def test_events_name_the_bad_fields_of_their_third_item(client: TestClient) -> None:
    client.put("/api/v1/customers/c", json={})
    items = [
        {"id": "1", "customer": "c", "name": "seen"},
        {"id": "2", "customer": "c", "name": "seen"},
        {"id": 3, "customer": "c", "name": "9bad", "properties": []},
    ]
    response = post(client, "/api/v1/events/bulk", json.dumps({"items": items}).encode())
    assert response.status_code == 422
    assert set(errors_at(response)) == {"/items/2/id", "/items/2/name", "/items/2/properties"}


@pytest.mark.parametrize(
    ("body", "headers", "kind"),
    [
        (b"", JSON, "missing"),
        (b'{"items": [{"source_id": "a"}]}', {"Content-Type": "text/plain"}, "model_attributes_type"),
        (b'{"items": [{"source_id": "a"}]}', {}, "model_attributes_type"),
        (b"[1, 2]", JSON, "model_attributes_type"),
        (b'{"items": []}', JSON, "too_short"),
    ],
)
def test_a_body_that_is_not_a_list_of_items_is_refused_as_before(
    client: TestClient, body: bytes, headers: dict[str, str], kind: str
) -> None:
    response = post(client, "/api/v1/customers/bulk", body, headers)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [error["type"] for error in response.json()["errors"]] == [kind]


def test_a_body_that_is_not_utf8_is_a_400(client: TestClient) -> None:
    response = post(client, "/api/v1/customers/bulk", b'{"items": [{"source_id": "\xff"}]}')
    assert response.status_code == 400
    assert response.json()["detail"] == "There was an error parsing the body"


def test_json_that_only_pythons_decoder_reads_is_still_accepted(client: TestClient) -> None:
    """UTF-16 with a byte-order mark: pydantic reads UTF-8 only, json.loads detects the encoding (as before)."""
    body = json.dumps({"items": [{"source_id": "u16", "first_name": "Zoë"}]}).encode("utf-16")
    response = post(client, "/api/v1/customers/bulk", body, {"Content-Type": "application/merge-patch+json"})
    assert response.status_code == 200
    assert client.get("/api/v1/customers/u16").json()["first_name"] == "Zoë"


def test_bulk_bodies_are_documented(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    for path, model in (("/api/v1/customers/bulk", "CustomerBulkIn"), ("/api/v1/events/bulk", "EventBulkIn")):
        operation = spec["paths"][path]["post"]
        assert operation["requestBody"]["required"] is True
        assert operation["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{model}"
        }
        assert "422" in operation["responses"]
        assert spec["components"]["schemas"][model]["required"] == ["items"]
    item = spec["components"]["schemas"]["CustomerBulkItem"]
    assert item["properties"]["first_name"]["anyOf"][0] == {"maxLength": 255, "type": "string"}
    assert "default" not in item["properties"]["first_name"]  # encoded as FastAPI encodes its own schemas


def test_attribute_values_sent_again_are_kept_and_others_replaced(client: TestClient) -> None:
    client.put("/api/v1/attributes/level", json={"type": "number"})
    client.put("/api/v1/attributes/tags", json={"type": "list"})
    client.put("/api/v1/attributes/note", json={"type": "string"})
    first = {"source_id": "a", "attributes": {"level": 2, "tags": ["x", "y"], "note": "hi"}}
    assert post(client, "/api/v1/customers/bulk", json.dumps({"items": [first]}).encode()).json()["created"] == 1
    again = post(client, "/api/v1/customers/bulk", json.dumps({"items": [first]}).encode()).json()
    assert again["unchanged"] == 1
    changed = {"source_id": "a", "attributes": {"level": 2, "tags": ["y"], "note": None}}
    assert post(client, "/api/v1/customers/bulk", json.dumps({"items": [changed]}).encode()).json()["updated"] == 1
    assert client.get("/api/v1/customers/a").json()["attributes"] == {"level": 2, "tags": ["y"]}
