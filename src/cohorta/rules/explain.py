"""Why a customer is (or is not) in a segment: the rule tree annotated per node with what was observed.

Observed values are shown for a person, not in storage units: money (money-typed fields such as
``summary.total_spent`` and sum/avg/min/max over money columns such as ``orders.total``) is a decimal string in the
project currency (``"200.00"`` for 20000 minor units with ``ctx.currency_exponent`` 2). This is display only: the
tests themselves still compare integer minor units, exactly as the predicate and the batch query do.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

from .model import RELATIVE_OPERATORS, Activity, NodeType, Not, Rule, walk
from .next_change import next_change
from .plan import BActivity, BAnd, BConst, BField, BList, BNot, BOr, Bound, BSample, BSegment, bind, sample_bucket
from .predicate import CustomerSnapshot, compile_bound, measure_rows, measure_value, value_getter
from .refs import assign_ids
from .text import to_text
from .timeutil import Context


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, list | tuple | set | frozenset):
        return [_jsonable(x) for x in v]
    return v


#: Extra decimal places shown for an average of money that is not a whole number of minor units.
AVG_EXTRA_DIGITS = 4


def money_display(minor: Any, exponent: int | None) -> Any:
    """A money value in minor units (an int, or a Fraction for an average) as a decimal string in the currency.

    ``20000`` with exponent 2 is ``"200.00"``. An average that is not a whole number of minor units keeps up to
    :data:`AVG_EXTRA_DIGITS` more decimals (rounded half to even): 1997.5 cents is ``"19.975"``, not a rounded
    ``"19.98"`` that would misstate a comparison with 19.98. None stays None; without an exponent
    (``ctx.currency_exponent`` None) the value is left as is.
    """
    if minor is None or exponent is None or isinstance(minor, bool):
        return minor
    if isinstance(minor, Fraction):
        if minor.denominator == 1:
            minor = minor.numerator
        else:
            places = exponent + AVG_EXTRA_DIGITS
            scaled = minor / 10**exponent
            value = (Decimal(scaled.numerator) / Decimal(scaled.denominator)).quantize(
                Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
            text = f"{value:f}"
            whole, _, frac = text.partition(".")
            frac = frac.rstrip("0").ljust(exponent, "0")
            return f"{whole}.{frac}" if frac else whole
    if not isinstance(minor, int):
        return minor
    return f"{Decimal(minor).scaleb(-exponent):f}"


def explain(rule: Rule | NodeType, snapshot: CustomerSnapshot, ctx: Context) -> dict[str, Any]:
    """The rule tree as nested dicts: per node ``id``, ``kind``, ``text``, ``result`` (pass/fail) and, for
    conditions, ``observed`` (the value(s) looked at; for activities the measure and the rows counted). A
    time-dependent condition also gets ``changes_by`` (naive UTC): the instant its answer next changes with no new
    data (:func:`cohorta.rules.next_change`), or None when time alone cannot change it."""
    root = assign_ids(rule if isinstance(rule, Rule) else Rule(rule)).root
    models: dict[str, NodeType] = {n.id: n for n in walk(root) if n.id is not None}
    bound = bind(root, ctx)

    def visit(b: Bound) -> dict[str, Any]:
        result = compile_bound(b)(snapshot)
        out: dict[str, Any] = {"id": b.node_id, "result": result}
        model = models.get(b.node_id) if b.node_id else None
        if model is not None and b.node_id is not None:
            out["text"] = to_text(model)
        if isinstance(b, BAnd | BOr):
            out["kind"] = "and" if isinstance(b, BAnd) else "or"
            out["children"] = [visit(x) for x in b.items]
        elif isinstance(b, BNot):
            if isinstance(model, Not):  # a real group
                out["kind"] = "not"
                out["children"] = [visit(b.item)]
            else:  # a negative operator (is_not, not_in ...): explain the positive test it negates
                inner = visit(b.item)
                out["kind"] = inner.get("kind", "condition")
                for key in ("observed", "rows", "changes_by"):
                    if key in inner:
                        out[key] = inner[key]
        elif isinstance(b, BField | BList):
            out["kind"] = "condition"
            observed = value_getter(b)(snapshot)
            if isinstance(b, BField) and b.typ == "money":
                observed = money_display(observed, ctx.currency_exponent)
            out["observed"] = _jsonable(observed)
            op = getattr(model, "op", None)
            if op in RELATIVE_OPERATORS and model is not None:
                out["changes_by"] = _change(model, snapshot, ctx)
        elif isinstance(b, BActivity):
            out["kind"] = "activity"
            rows = measure_rows(b)(snapshot)
            m = measure_value(b)(rows)
            if b.typ == "money" and b.fn != "count":
                if isinstance(m, tuple):  # avg as (sum, count) of minor units: exact before display
                    m = Fraction(m[0], m[1])
                m = money_display(m, ctx.currency_exponent)
            elif isinstance(m, tuple):  # avg as (sum, count)
                m = m[0] / m[1]
            out["observed"] = m
            out["rows"] = len(rows)
            if isinstance(model, Activity):
                out["changes_by"] = _change(model, snapshot, ctx)
        elif isinstance(b, BSegment):
            out["kind"] = "in_segment"
            out["observed"] = b.segment_id in snapshot.segment_ids
        elif isinstance(b, BSample):
            out["kind"] = "sample"
            out["observed"] = sample_bucket(snapshot.customer_id, b.keys)
        elif isinstance(b, BConst):
            out["kind"] = "constant"
        return out

    return visit(bound)


def _change(model: NodeType, snapshot: CustomerSnapshot, ctx: Context) -> str | None:
    """When this node's answer next changes with no new data (exact; see :func:`next_change`), as naive UTC."""
    instant = next_change(model, snapshot, ctx)
    return None if instant is None else instant.astimezone(dt.UTC).replace(tzinfo=None).isoformat()
