"""Predicted CLV: fitting the models on the stored order summaries, and scoring every customer in batches.

No HTTP. Fitting is an explicit step (``cohorta clv fit``, ``POST /clv/fit``): it stores the parameters in
``clv_models`` and scores everyone at once. Scoring reads ``customer_summaries`` in keyset batches, computes the
closed-form predictions in numpy for the whole batch, and upserts ``customer_clv``; the scheduler repeats it every
``clv_score_period_seconds``. Afterwards the segments' statistics (``avg_clv``) are recounted.

Observations, from each customer's summary (counted orders, see COUNTED_ORDER_STATUSES), in weeks:
x = orders - 1 (repeat purchases), t_x = last order - first order, T = now - first order; spend: the mean of all the
customer's counted orders (``orders`` values). A customer with no counted order is not modelled: predicted CLV 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from cohorta.audit import service as audit
from cohorta.clock import Clock
from cohorta.clv import model
from cohorta.clv.models import ClvModel, CustomerClv
from cohorta.config import Settings
from cohorta.customers.models import Customer, CustomerSummary
from cohorta.db import driver_cursor, table_of, unit_of_work
from cohorta.errors import Conflict, NotFound, Unavailable
from cohorta.membership.service import recount_all_statistics
from cohorta.money import currency_exponent, from_minor

log = logging.getLogger("cohorta.clv")
SECONDS_PER_WEEK = 7 * 86_400.0
IntArray = npt.NDArray[np.int64]


@dataclass
class Batch:
    """Summaries of consecutive customers: id, counted orders, spending (minor units), first and last order
    (seconds since the epoch; NaN without orders)."""

    ids: IntArray
    orders: model.FloatArray
    spent_minor: model.FloatArray
    first: model.FloatArray
    last: model.FloatArray

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        if not batches:
            empty = np.zeros(0)
            return Batch(np.zeros(0, dtype=np.int64), empty, empty, empty, empty)
        return Batch(*(np.concatenate([getattr(b, f) for b in batches]) for f in ("ids", "orders", "spent_minor",
                                                                                    "first", "last")))  # fmt: skip


@dataclass
class Observations:
    """Model inputs for customers with at least one counted order (``buyers`` masks them in the batch)."""

    buyers: npt.NDArray[np.bool_]
    x: model.FloatArray
    t_x: model.FloatArray
    big_t: model.FloatArray
    spend_n: model.FloatArray  # transactions the mean spend is over: all counted orders
    spend_mean: model.FloatArray  # in the currency's major unit


def _epoch(column: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[float]:
    """An instant column as seconds since the epoch, computed by the database (no per-row parsing here)."""
    if dialect == "sqlite":  # stored as UTC text (db.UTCDateTime)
        return (sa.func.julianday(column) - 2440587.5) * 86400.0
    return sa.cast(sa.extract("epoch", column), sa.Float(precision=53))


def _batches(connection: sa.Connection, batch_size: int, after: int = 0) -> Iterator[Batch]:
    """Every customer's summary, ``batch_size`` customers at a time in id order (keyset pagination)."""
    while True:
        batch = read_batch(connection, batch_size, after)
        if batch is None:
            return
        yield batch
        after = int(batch.ids[-1])


def read_batch(connection: sa.Connection, batch_size: int, after: int) -> Batch | None:
    s = table_of(CustomerSummary)
    dialect = connection.dialect.name
    query = (
        sa.select(s.c.customer_id, s.c.order_count, s.c.total_spent_minor,
                  _epoch(s.c.first_order_at, dialect), _epoch(s.c.last_order_at, dialect))
        .where(s.c.customer_id > after)
        .order_by(s.c.customer_id)
        .limit(batch_size)
    )  # fmt: skip
    rows = connection.execute(query).all()
    if not rows:
        return None
    # One float matrix for the whole batch (None, no order yet, becomes NaN); ids stay exact below 2**53.
    table = np.array([tuple(row) for row in rows], dtype=np.float64)
    return Batch(
        ids=table[:, 0].astype(np.int64),
        orders=table[:, 1],
        spent_minor=table[:, 2],
        first=table[:, 3],
        last=table[:, 4],
    )


def observe(batch: Batch, now: datetime, exponent: int) -> Observations:
    """The model's inputs for the batch's buyers, as of ``now``, in weeks."""
    buyers = batch.orders > 0
    orders = batch.orders[buyers]
    first, last = batch.first[buyers], batch.last[buyers]
    big_t = np.maximum((now.timestamp() - first) / SECONDS_PER_WEEK, 0.0)
    t_x = np.clip((last - first) / SECONDS_PER_WEEK, 0.0, big_t)
    return Observations(
        buyers=buyers,
        x=orders - 1.0,
        t_x=t_x,
        big_t=big_t,
        spend_n=orders,
        spend_mean=batch.spent_minor[buyers] / orders / 10.0**exponent,
    )


@dataclass
class Scores:
    predicted_minor: IntArray
    expected_purchases: model.FloatArray  # NaN: not modelled (no purchase)
    probability_alive: model.FloatArray


def score(fitted: dict[str, Any], horizon_days: float, batch: Batch, now: datetime, exponent: int) -> Scores:
    """Predicted CLV over the horizon for every customer of the batch: expected purchases (BG/NBD) x expected
    transaction value (Gamma-Gamma), rounded half up to whole minor units. No purchase yet: 0 (and NaN)."""
    purchases, spend = model.BgNbd(**fitted["bgnbd"]), model.GammaGamma(**fitted["gamma_gamma"])
    seen = observe(batch, now, exponent)
    n = len(batch.ids)
    expected = np.full(n, np.nan)
    alive = np.full(n, np.nan)
    predicted = np.zeros(n, dtype=np.int64)
    if seen.buyers.any():
        horizon = horizon_days / 7.0
        expected[seen.buyers] = model.expected_purchases(purchases, horizon, seen.x, seen.t_x, seen.big_t)
        alive[seen.buyers] = model.probability_alive(purchases, seen.x, seen.t_x, seen.big_t)
        value = model.expected_spend(spend, seen.spend_n, seen.spend_mean) * 10.0**exponent
        clv = expected[seen.buyers] * value
        broken = ~np.isfinite(clv)
        if broken.any():  # never seen within the fit's bounds; kept out of the sums rather than stored as garbage
            log.warning("predicted CLV not finite for %d customers: stored as 0", int(broken.sum()))
            clv[broken] = 0.0
        predicted[seen.buyers] = np.floor(clv + 0.5).astype(np.int64)
    return Scores(predicted, expected, alive)


# --- storage ------------------------------------------------------------------------------------------------------


def current_model(session: Session) -> ClvModel | None:
    """The model in force: the newest fit."""
    return session.scalars(sa.select(ClvModel).order_by(ClvModel.fitted_at.desc(), ClvModel.id.desc()).limit(1)).first()


_UPSERT_SET = ("predicted_minor = excluded.predicted_minor, expected_purchases = excluded.expected_purchases, "
               "probability_alive = excluded.probability_alive")  # fmt: skip


def _store_scores(connection: sa.Connection, ids: IntArray, scores: Scores) -> None:
    """Insert or replace the batch's rows: one executemany (SQLite) or one statement over arrays (PostgreSQL)."""
    expected = [None if np.isnan(v) else v for v in scores.expected_purchases.tolist()]
    alive = [None if np.isnan(v) else v for v in scores.probability_alive.tolist()]
    columns = "customer_id, predicted_minor, expected_purchases, probability_alive"
    if connection.dialect.name == "postgresql":
        cursor = driver_cursor(connection)
        cursor.execute(
            f"INSERT INTO customer_clv ({columns}) "
            "SELECT u.* FROM unnest(%s::bigint[], %s::bigint[], %s::float8[], %s::float8[]) "
            f"AS u({columns}) JOIN customers c ON c.id = u.customer_id "
            f"ON CONFLICT (customer_id) DO UPDATE SET {_UPSERT_SET}",
            [ids.tolist(), scores.predicted_minor.tolist(), expected, alive],
        )
        return
    connection.exec_driver_sql(
        f"INSERT INTO customer_clv ({columns}) VALUES (?, ?, ?, ?) "
        f"ON CONFLICT (customer_id) DO UPDATE SET {_UPSERT_SET}",
        list(zip(ids.tolist(), scores.predicted_minor.tolist(), expected, alive, strict=True)),
    )


def score_all(factory: sessionmaker[Session], clock: Clock, settings: Settings) -> ClvModel | None:
    """Score every customer with the model in force, in batches of ``clv_batch_size`` (each its own short write
    transaction), then recount the segments' statistics. None when no model has been fitted."""
    started = time.perf_counter()
    with factory() as session:
        fitted = current_model(session)
    if fitted is None:
        return None
    now = clock.now()
    exponent = currency_exponent(fitted.currency)
    scored, after = 0, 0
    while True:
        with unit_of_work(factory, write_lock=True) as session:
            connection = session.connection()
            batch = read_batch(connection, settings.clv_batch_size, after)
            if batch is None:
                break
            _store_scores(connection, batch.ids, score(fitted.params, settings.clv_horizon_days, batch, now, exponent))
        scored += len(batch.ids)
        after = int(batch.ids[-1])
    with unit_of_work(factory) as session:
        stored = session.get(ClvModel, fitted.id)
        if stored is not None:
            stored.scored_at, stored.scored_customers = now, scored
            stored.horizon_days = settings.clv_horizon_days
            stored.score_duration_ms = int((time.perf_counter() - started) * 1000)
            fitted = stored
    recount_all_statistics(factory, now)
    log.info("predicted CLV scored for %d customers in %.1f s", scored, time.perf_counter() - started)
    return fitted


def score_if_due(factory: sessionmaker[Session], clock: Clock, settings: Settings) -> bool:
    """The scheduler's periodic scoring: when a model exists and its last scoring is older than the period."""
    with factory() as session:
        fitted = current_model(session)
    if fitted is None:
        return False
    age = None if fitted.scored_at is None else (clock.now() - fitted.scored_at).total_seconds()
    if age is not None and age < settings.clv_score_period_seconds:
        return False
    score_all(factory, clock, settings)
    return True


def fit(
    factory: sessionmaker[Session], clock: Clock, settings: Settings, actor: str, engine: str | None = None
) -> ClvModel:
    """Fit both models on every customer's summary as of now (a random sample of ``clv_fit_max_customers`` buyers
    when there are more), store the parameters, then score everyone with them.

    Raises Unavailable when the pymc-marketing engine is asked for without the extra, Conflict when the data
    cannot support a fit."""
    engine = engine or settings.clv_engine
    if engine == "pymc-marketing" and model.pymc_marketing_version() is None:
        raise Unavailable(str(model.MissingExtra()))
    started = time.perf_counter()
    now = clock.now()
    exponent = settings.currency_exponent
    with factory() as session:
        everyone = Batch.concat(list(_batches(session.connection(), settings.clv_batch_size)))
    seen = observe(everyone, now, exponent)
    buyers = len(seen.x)
    sample = np.arange(buyers)
    if buyers > settings.clv_fit_max_customers:
        sample = np.sort(np.random.default_rng(0).choice(buyers, settings.clv_fit_max_customers, replace=False))
    x, t_x, big_t = seen.x[sample], seen.t_x[sample], seen.big_t[sample]
    try:
        fitted = model.fit(engine, x=x, t_x=t_x, big_t=big_t, spend_x=seen.spend_n[sample],
                           spend_mean=seen.spend_mean[sample])  # fmt: skip
    except model.FitError as exc:
        raise Conflict(f"predicted CLV cannot be fitted on this data: {exc}") from None
    repeat = seen.x > 0
    correlation = None
    if int(repeat.sum()) > 2 and np.std(seen.x[repeat]) > 0 and np.std(seen.spend_mean[repeat]) > 0:
        correlation = float(np.corrcoef(seen.x[repeat], seen.spend_mean[repeat])[0, 1])
    data = {
        "customers": len(everyone.ids),
        "buyers": buyers,
        "repeat_buyers": int(repeat.sum()),
        "fitted_customers": len(sample),
        "purchases_log_likelihood": fitted.purchases_log_likelihood,
        "spend_log_likelihood": fitted.spend_log_likelihood,
        # The Gamma-Gamma model assumes spend per transaction independent of purchase frequency.
        "spend_frequency_correlation": correlation,
        "mean_repeat_purchases": float(np.mean(seen.x)) if buyers else None,
        "mean_weeks_observed": float(np.mean(seen.big_t)) if buyers else None,
        # Parameters that ended at a bound of the search: that process shows no heterogeneity (model.BGNBD_BOUNDS).
        "at_bounds": model.at_bounds(fitted.params()["bgnbd"], model.BGNBD_BOUNDS)
        + model.at_bounds(fitted.params()["gamma_gamma"], model.GAMMA_GAMMA_BOUNDS),
    }
    with unit_of_work(factory) as session:
        row = ClvModel(
            fitted_at=clock.now(), fitted_by=actor, calibration_end=now, engine=engine, method=fitted.method,
            library=fitted.library, time_unit="week", currency=settings.currency, params=fitted.params(), data=data,
            fit_duration_ms=int((time.perf_counter() - started) * 1000),
        )  # fmt: skip
        session.add(row)
        session.flush()
        audit.record(session, row.fitted_at, actor, "clv.fit", "clv_model", row.id,
                     after={"engine": engine, "params": row.params, "data": data})  # fmt: skip
    scored = score_all(factory, clock, settings)
    return scored or row


# --- reading ------------------------------------------------------------------------------------------------------


class ClvModelOut(BaseModel):
    id: int
    fitted_at: datetime
    fitted_by: str | None
    calibration_end: datetime
    engine: str
    method: str
    library: str
    time_unit: str
    currency: str
    params: dict[str, dict[str, float]] = Field(description="bgnbd: r, alpha, a, b; gamma_gamma: p, q, v")
    data: dict[str, Any] = Field(description="What was fitted, log-likelihoods, spend/frequency correlation")
    fit_duration_ms: int
    scored_at: datetime | None
    scored_customers: int | None
    horizon_days: int | None
    score_duration_ms: int | None


def model_out(row: ClvModel) -> ClvModelOut:
    return ClvModelOut.model_validate(row, from_attributes=True)


def get_model(session: Session) -> ClvModelOut:
    row = current_model(session)
    if row is None:
        raise NotFound("no CLV model has been fitted: cohorta clv fit, or POST /api/v1/clv/fit")
    return model_out(row)


METHOD = "BG/NBD purchases x Gamma-Gamma spend"


class PredictedClv(BaseModel):
    segment: Decimal | None = Field(description="Average predicted CLV per member")
    all_customers: Decimal | None = Field(description="Average predicted CLV per customer")
    horizon_days: int | None
    method: str
    engine: str
    model_fitted_at: datetime
    scored_at: datetime | None


def predicted_averages(session: Session, segment_avg_minor: int | None, exponent: int) -> PredictedClv | None:
    """The predicted block of segment analytics: null while no model has scored customers."""
    row = current_model(session)
    if row is None or row.scored_at is None:
        return None
    total, customers = session.execute(
        sa.select(
            sa.select(sa.func.coalesce(sa.func.sum(CustomerClv.predicted_minor), 0)).scalar_subquery(),
            sa.select(sa.func.count()).select_from(Customer).scalar_subquery(),
        )
    ).one()
    everyone = from_minor((2 * int(total) + int(customers)) // (2 * int(customers)), exponent) if customers else None
    return PredictedClv(
        segment=from_minor(segment_avg_minor, exponent), all_customers=everyone, horizon_days=row.horizon_days,
        method=f"{METHOD} ({row.method}, {row.library})", engine=row.engine, model_fitted_at=row.fitted_at,
        scored_at=row.scored_at,
    )  # fmt: skip


def customer_clv_minor(session: Session, customer_id: int) -> int | None:
    return session.scalar(sa.select(CustomerClv.predicted_minor).where(CustomerClv.customer_id == customer_id))
