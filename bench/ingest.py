"""Ingestion throughput through the bulk API over HTTP: customers, orders and events per second.

Usage: python -m bench.ingest [--batches 5] [--batch-size 10000] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.common import database, print_table, server

COUNTRIES = [("PL", "Kraków", "30-001"), ("DE", "Berlin", "10115"), ("FR", "Lyon", "69001"), ("GB", "Leeds", "LS1")]
OCCUPATIONS = ["teacher", "engineer", "nurse", "designer", "boat builder", "student"]


def customer(index: int, rng: random.Random) -> dict[str, Any]:
    country, city, postal = rng.choice(COUNTRIES)
    born = datetime(1950, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(20_000))
    return {
        "source_id": f"C{index:08d}",
        "first_name": rng.choice(["Ala", "Jan", "Eva", "Tom"]),
        "last_name": rng.choice(["Nowak", "Meyer", "Martin", "Smith"]),
        "email": f"c{index}@example.com",
        "phone": f"+48 600 {index % 1000:03d} {index % 997:03d}",
        "birthdate": born.date().isoformat(),
        "gender": rng.choice(["female", "male"]),
        "city": city,
        "country": country,
        "postal_code": postal,
        "loyalty_member": rng.random() < 0.7,
        "member_since": "2024-05-01T10:00:00Z",
        "source": "shopify",
        "attributes": {
            "occupation": rng.choice(OCCUPATIONS),
            "married": rng.random() < 0.5,
            "children": rng.randrange(4),
        },
    }


def order(index: int, customers: int, rng: random.Random) -> dict[str, Any]:
    items = [
        {
            "sku": f"SKU-{rng.randrange(500)}",
            "name": "Product",
            "category": "tea",
            "brand": "Leaf",
            "quantity": rng.randrange(1, 4),
            "unit_price": f"{rng.randrange(100, 5000) / 100:.2f}",
        }
        for _ in range(rng.randrange(1, 4))
    ]
    total = sum(int(float(i["unit_price"]) * 100 + 0.5) * i["quantity"] for i in items)
    when = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(500_000))
    return {
        "id": f"O{index:09d}",
        "customer": f"C{rng.randrange(customers):08d}",
        "total": f"{total / 100:.2f}",
        "created_at": when.isoformat(),
        "items": items,
    }


def event(index: int, customers: int, rng: random.Random) -> dict[str, Any]:
    when = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(30_000_000))
    return {
        "id": f"E{index:010d}",
        "customer": f"C{rng.randrange(customers):08d}",
        "name": "product_viewed",
        "timestamp": when.isoformat(),
        "properties": {"sku": f"SKU-{rng.randrange(500)}", "price": 9.99},
    }


def post_batches(client: httpx.Client, path: str, batches: list[bytes], size: int) -> tuple[float, float]:
    """Items per second over all batches, and the median seconds per batch."""
    seconds = []
    for body in batches:
        started = time.perf_counter()
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    return size * len(batches) / sum(seconds), statistics.median(seconds)


def run(engine: str, batch_count: int, size: int) -> list[list[str]]:
    rng = random.Random(42)
    total = batch_count * size
    customers = [
        json.dumps({"items": [customer(b * size + i, rng) for i in range(size)]}).encode() for b in range(batch_count)
    ]
    orders = [
        json.dumps({"items": [order(b * size + i, total, rng) for i in range(size)]}).encode()
        for b in range(batch_count)
    ]
    events = [
        json.dumps({"items": [event(b * size + i, total, rng) for i in range(size)]}).encode()
        for b in range(batch_count)
    ]
    rows = []
    with database(engine) as url, server(url) as client:
        for name, kind in (("occupation", "string"), ("married", "boolean"), ("children", "number")):
            client.put(f"/api/v1/attributes/{name}", json={"type": kind}).raise_for_status()
        client.put(
            "/api/v1/event-definitions/product_viewed", json={"properties": {"sku": "string", "price": "number"}}
        ).raise_for_status()
        for label, path, batches in (
            ("customers (new)", "/api/v1/customers/bulk", customers),
            ("customers (update)", "/api/v1/customers/bulk", customers),
            ("orders (1-3 items)", "/api/v1/orders/bulk", orders),
            ("events (2 typed props)", "/api/v1/events/bulk", events),
        ):
            per_second, median = post_batches(client, path, batches, size)
            rows.append([engine, label, f"{total:,}", f"{per_second:,.0f}", f"{median * 1000:,.0f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    rows: list[list[str]] = []
    for engine in args.engines.split(","):
        rows.extend(run(engine, args.batches, args.batch_size))
    print_table(
        f"Bulk API ingestion over HTTP ({args.batch_size:,} items per request)",
        ["engine", "what", "items", "items/s", "median ms/request"],
        rows,
    )


if __name__ == "__main__":
    main()
