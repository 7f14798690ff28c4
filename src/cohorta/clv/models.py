"""Stored CLV models (fitted parameters) and each customer's predicted CLV."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cohorta.db import Base, UTCDateTime


class ClvModel(Base):
    """One fit: the BG/NBD and Gamma-Gamma parameters, how and on what they were fitted, and the last scoring with
    them. The newest fit is the one in force."""

    __tablename__ = "clv_models"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    fitted_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    fitted_by: Mapped[str | None] = mapped_column(sa.String(255))
    # The end of the calibration period: purchases up to this instant were fitted (every stored order then).
    calibration_end: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    engine: Mapped[str] = mapped_column(sa.String(32), nullable=False)  # scipy | pymc-marketing
    method: Mapped[str] = mapped_column(sa.String(64), nullable=False)  # maximum-likelihood | map-flat-priors
    library: Mapped[str] = mapped_column(sa.String(64), nullable=False)  # with its version
    time_unit: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # week
    currency: Mapped[str] = mapped_column(sa.String(3), nullable=False)  # spend parameters are in its major unit
    # {"bgnbd": {"r", "alpha", "a", "b"}, "gamma_gamma": {"p", "q", "v"}}
    params: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    # What was fitted: customers, buyers, repeat buyers, sample size, log-likelihoods, spend/frequency correlation.
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    fit_duration_ms: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    scored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scored_customers: Mapped[int | None] = mapped_column(sa.BigInteger)
    horizon_days: Mapped[int | None] = mapped_column(sa.Integer)
    score_duration_ms: Mapped[int | None] = mapped_column(sa.Integer)


class CustomerClv(Base):
    """A customer's predicted CLV over the horizon, from the model in force at the last scoring."""

    __tablename__ = "customer_clv"

    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    predicted_minor: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    # Both null for a customer with no purchase (not modelled: predicted_minor is 0, see docs/analytics.md).
    expected_purchases: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    probability_alive: Mapped[float | None] = mapped_column(sa.Float(precision=53))
