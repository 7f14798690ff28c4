"""Signed HTTP POSTs to other systems (webhook subscriptions, distribution campaigns): one signing scheme, one
classification of what is worth retrying.

The signature is Stripe-like: ``X-Cohorta-Signature: t=<unix time>,v1=<hex>`` where the hex is
HMAC-SHA256(secret, "<unix time>." + body). Receivers recompute it over the raw body and refuse stale timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import httpx

SIGNATURE_HEADER = "X-Cohorta-Signature"
DELIVERY_HEADER = "X-Cohorta-Delivery"
# Worth another try: the receiver is overloaded, restarting or timed out. Anything else 4xx is our request's fault.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status_code: int | None
    error: str | None
    retryable: bool
    duration_ms: int


def post_signed(
    client: httpx.Client, url: str, secret: str, body: bytes, *, delivery_key: str, timestamp: int
) -> Attempt:
    """One POST of a JSON body, signed; never raises for the receiver's or the network's failures."""
    headers = {
        "Content-Type": "application/json",
        DELIVERY_HEADER: delivery_key,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
    started = time.perf_counter()
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        elapsed = int((time.perf_counter() - started) * 1000)
        return Attempt(False, None, f"{type(exc).__name__}: {exc}", True, elapsed)
    elapsed = int((time.perf_counter() - started) * 1000)
    if response.is_success:
        return Attempt(True, response.status_code, None, False, elapsed)
    error = f"the receiver answered {response.status_code}"
    return Attempt(False, response.status_code, error, response.status_code in RETRYABLE_STATUSES, elapsed)
