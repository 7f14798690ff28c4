"""HTTP routes of predicted CLV: the model in force (read), fitting and re-scoring (admin)."""

from __future__ import annotations

from typing import Literal

import anyio
from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field

from cohorta.clv import service
from cohorta.deps import AdminDep, ClockDep, ReaderDep, ReadSessionDep, SettingsDep
from cohorta.errors import Conflict

router = APIRouter(prefix="/clv", tags=["clv"])


class FitIn(BaseModel):
    engine: Literal["scipy", "pymc-marketing"] | None = Field(
        default=None, description="Default: COHORTA_CLV_ENGINE (scipy). pymc-marketing needs the [clv] extra"
    )


@router.get("/model", response_model=service.ClvModelOut)
def get_model(session: ReadSessionDep, principal: ReaderDep) -> service.ClvModelOut:
    """The CLV model in force: parameters, what it was fitted on, and its last scoring."""
    return service.get_model(session)


@router.post("/fit", response_model=service.ClvModelOut, status_code=status.HTTP_201_CREATED)
async def fit(
    body: FitIn, request: Request, settings: SettingsDep, clock: ClockDep, principal: AdminDep
) -> service.ClvModelOut:
    """Fit the BG/NBD and Gamma-Gamma models on every customer's orders as of now, store the parameters and score
    every customer with them. 503 when pymc-marketing is asked for and not installed; 409 when the data cannot
    support a fit (too few buyers or repeat buyers)."""
    factory = request.app.state.session_factory
    row = await anyio.to_thread.run_sync(lambda: service.fit(factory, clock, settings, principal.name, body.engine))
    return service.model_out(row)


@router.post("/score", response_model=service.ClvModelOut)
async def score(request: Request, settings: SettingsDep, clock: ClockDep, principal: AdminDep) -> service.ClvModelOut:
    """Score every customer now with the model in force (the scheduler also does it every
    COHORTA_CLV_SCORE_PERIOD_SECONDS); 409 when no model has been fitted."""
    factory = request.app.state.session_factory
    row = await anyio.to_thread.run_sync(lambda: service.score_all(factory, clock, settings))
    if row is None:
        raise Conflict("no CLV model has been fitted: POST /api/v1/clv/fit first")
    return service.model_out(row)
