"""Helpers shared by the API tests."""

from __future__ import annotations

from fastapi.testclient import TestClient

from cohorta.membership.jobs import run_pending


def run_jobs(client: TestClient) -> list[str]:
    """Run the queued recomputes now, as the scheduler would; returns the segments recomputed."""
    state = client.app.state  # type: ignore[attr-defined]
    return run_pending(state.session_factory, state.clock, state.settings, state.segment_index)
