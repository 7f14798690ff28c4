"""Value tests shared by both compilers, and the coercion of rule values to typed Python values.

A :class:`Test` is applied to a *present* (non-null) value; the null policy lives in the bound tree (see
:mod:`cohorta.rules.plan`). Each test has a Python form (``py``) and an Ibis form (``expr``) built from the same
normalised literals, so the two evaluators agree by construction.

Case-insensitive text matching lowercases both sides (``str.lower`` in Python, ``LOWER`` in SQL). SQLite's ``LOWER``
only folds ASCII letters, so case-insensitive matching is only guaranteed identical everywhere for ASCII letters.
"""

from __future__ import annotations

import datetime as dt
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

import ibis
import ibis.expr.types as ir

from . import limits
from .model import CALENDAR_PERIODS, LIST_VALUE_OPERATORS, NO_VALUE_OPERATORS

_PY_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge, "is": operator.eq,
}  # fmt: skip
#: The same comparisons as Python operators, for generated code (see :meth:`Test.source`).
_PY_SYMBOL = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "is": "=="}

#: Names a value for generated code: returns the identifier under which the value is passed to it.
Const = Callable[[Any], str]


def _ibis_cmp(op: str, left: Any, right: Any) -> ir.BooleanValue:
    if op == "lt":
        return left < right
    if op == "lte":
        return left <= right
    if op == "gt":
        return left > right
    if op == "gte":
        return left >= right
    return left == right


class Test(ABC):
    """A test on one present value, in its two forms: a Python function and an Ibis expression."""

    @abstractmethod
    def py(self) -> Callable[[Any], bool]: ...

    @abstractmethod
    def expr(self, col: Any) -> ir.BooleanValue: ...

    def source(self, v: str, const: Const) -> str:
        """The Python form as the text of an expression over the variable named ``v``, for generated code.

        Every value of the test is passed through ``const``, which binds it to a name of the generated code and
        returns that name: nothing of the rule is written into the source. Same answer as :meth:`py`.
        """
        return f"{const(self.py())}({v})"


@dataclass(frozen=True)
class Present(Test):
    def py(self) -> Callable[[Any], bool]:
        return lambda v: True

    def expr(self, col: Any) -> ir.BooleanValue:
        return ibis.literal(True)

    def source(self, v: str, const: Const) -> str:
        return "True"


@dataclass(frozen=True)
class InSet(Test):
    values: tuple[Any, ...]
    lower: bool = False

    def py(self) -> Callable[[Any], bool]:
        s = frozenset(self.values)
        if self.lower:
            return lambda v: v.lower() in s
        return lambda v: v in s

    def source(self, v: str, const: Const) -> str:
        values = const(frozenset(self.values))
        return f"({v}.lower() in {values})" if self.lower else f"({v} in {values})"

    def expr(self, col: Any) -> ir.BooleanValue:
        c = col.lower() if self.lower else col
        if len(self.values) == 1:
            return c == self.values[0]
        return c.isin(list(self.values))


@dataclass(frozen=True)
class Compare(Test):
    op: str
    bound: Any

    def py(self) -> Callable[[Any], bool]:
        f, b = _PY_CMP[self.op], self.bound
        return lambda v: f(v, b)

    def source(self, v: str, const: Const) -> str:
        return f"({v} {_PY_SYMBOL[self.op]} {const(self.bound)})"

    def expr(self, col: Any) -> ir.BooleanValue:
        return _ibis_cmp(self.op, col, self.bound)


@dataclass(frozen=True)
class Range(Test):
    """lo <= v (or lo < v) and v < hi (or v <= hi); an absent bound is open."""

    lo: Any = None
    hi: Any = None
    lo_incl: bool = True
    hi_incl: bool = False

    def py(self) -> Callable[[Any], bool]:
        lo, hi, li, hi_i = self.lo, self.hi, self.lo_incl, self.hi_incl

        def test(v: Any) -> bool:
            if lo is not None and (v < lo if li else v <= lo):
                return False
            return not (hi is not None and (v > hi if hi_i else v >= hi))

        return test

    def source(self, v: str, const: Const) -> str:
        parts = []  # written as the negations py() tests, which differ from lo <= v for unordered values (NaN)
        if self.lo is not None:
            parts.append(f"not ({v} {'<' if self.lo_incl else '<='} {const(self.lo)})")
        if self.hi is not None:
            parts.append(f"not ({v} {'>' if self.hi_incl else '>='} {const(self.hi)})")
        return f"({' and '.join(parts)})" if parts else "True"

    def expr(self, col: Any) -> ir.BooleanValue:
        parts: list[ir.BooleanValue] = []
        if self.lo is not None:
            parts.append(col >= self.lo if self.lo_incl else col > self.lo)
        if self.hi is not None:
            parts.append(col <= self.hi if self.hi_incl else col < self.hi)
        if not parts:
            return ibis.literal(True)
        out = parts[0]
        for p in parts[1:]:
            out = out & p
        return out

    def empty(self) -> bool:
        if self.lo is None or self.hi is None:
            return False
        return bool(self.lo > self.hi or (self.lo == self.hi and not (self.lo_incl and self.hi_incl)))


@dataclass(frozen=True)
class Text(Test):
    kind: str  # contains | starts_with | ends_with
    text: str
    lower: bool = False

    def py(self) -> Callable[[Any], bool]:
        t = self.text
        if self.kind == "contains":
            return (lambda v: t in v.lower()) if self.lower else (lambda v: t in v)
        if self.kind == "starts_with":
            return (lambda v: v.lower().startswith(t)) if self.lower else (lambda v: v.startswith(t))
        return (lambda v: v.lower().endswith(t)) if self.lower else (lambda v: v.endswith(t))

    def source(self, v: str, const: Const) -> str:
        t = const(self.text)
        subject = f"{v}.lower()" if self.lower else v
        if self.kind == "contains":
            return f"({t} in {subject})"
        method = "startswith" if self.kind == "starts_with" else "endswith"
        return f"{subject}.{method}({t})"

    def expr(self, col: Any) -> ir.BooleanValue:
        c = col.lower() if self.lower else col
        n = len(self.text)
        if self.kind == "contains":
            return c.contains(self.text)
        if self.kind == "starts_with":  # not LIKE: SQLite's LIKE ignores case and treats % and _ as wildcards
            return c.substr(0, n) == self.text
        return (c.length() >= n) & (c.right(n) == self.text)


@dataclass(frozen=True)
class MonthDay(Test):
    """Anniversaries: the value's ``month * 100 + day`` is one of ``keys``.

    A datetime value is first shifted by ``offset_seconds`` (the zone's UTC offset at ``as_of``).
    """

    keys: frozenset[int]
    offset_seconds: int | None = None  # None: a date column

    def py(self) -> Callable[[Any], bool]:
        keys = self.keys
        if self.offset_seconds is None:
            return lambda v: v.month * 100 + v.day in keys
        off = dt.timedelta(seconds=self.offset_seconds)

        def test(v: Any) -> bool:
            w = v + off
            return w.month * 100 + w.day in keys

        return test

    def expr(self, col: Any) -> ir.BooleanValue:
        if self.offset_seconds is not None:  # pragma: no cover - the catalog offers anniversaries on dates only
            raise NotImplementedError("anniversaries of datetime values are not compiled to SQL")
        # The key as text, "MMDD": one strftime per row (two extracts and casts took 0.7 s at 1,000,000 customers),
        # and the very expression SQLite's index on customers' birthdates holds (ix_customers_birth_month_day).
        return col.strftime("%m%d").isin([f"{key:04d}" for key in sorted(self.keys)])


@dataclass(frozen=True)
class AvgTest:
    """``avg op value`` decided exactly from (sum, count) with integer arithmetic: ``sum * q OP p * count``."""

    op: str  # is, lt, lte, gt, gte, between, in
    values: tuple[Fraction, ...]

    def py(self) -> Callable[[int, int], bool]:
        op, vals = self.op, self.values

        def test(total: int, count: int) -> bool:
            avg = Fraction(total, count)
            if op == "between":
                return vals[0] <= avg <= vals[1]
            if op == "in":
                return avg in vals
            return _PY_CMP[op](avg, vals[0])

        return test

    def expr(self, total: Any, count: Any) -> ir.BooleanValue:
        def one(o: str, f: Fraction) -> ir.BooleanValue:
            return _ibis_cmp(o, total * f.denominator, count * f.numerator)

        if self.op == "between":
            return one("gte", self.values[0]) & one("lte", self.values[1])
        if self.op == "in":
            out = one("is", self.values[0])
            for f in self.values[1:]:
                out = out | one("is", f)
            return out
        return one(self.op, self.values[0])


# -- coercion of rule values -------------------------------------------------------------------------------------
class BadValue(Exception):
    """A value that does not fit its field and operator (message for a person)."""


def parse_date(raw: Any) -> dt.date:
    if isinstance(raw, dt.datetime):
        raise BadValue("expected a date (YYYY-MM-DD), got a date and time")
    if isinstance(raw, dt.date):
        return raw
    if isinstance(raw, str) and len(raw) == 10:
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            pass
    raise BadValue(f"expected a date like 2024-05-31, got {_show(raw)}")


def parse_date_or_datetime(raw: Any) -> dt.date | dt.datetime:
    if isinstance(raw, dt.date):
        return raw
    if isinstance(raw, str):
        if len(raw) == 10:
            return parse_date(raw)
        try:
            return dt.datetime.fromisoformat(raw)
        except ValueError:
            pass
    raise BadValue(f"expected a date (2024-05-31) or a date and time (2024-05-31T18:00:00+02:00), got {_show(raw)}")


def _show(raw: Any) -> str:
    s = repr(raw)
    return s if len(s) <= 60 else s[:57] + "..."


def _number(raw: Any) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, int | Decimal | float):
        raise BadValue(f"expected a number, got {_show(raw)}")
    try:
        d = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(raw)
    except InvalidOperation as exc:  # pragma: no cover - defensive
        raise BadValue(f"expected a number, got {_show(raw)}") from exc
    if not d.is_finite():
        raise BadValue("expected a finite number")
    if abs(d) >= Decimal(2) ** 53:
        raise BadValue("number is too large")
    return d


def coerce_scalar(typ: str, raw: Any, exponent: int | None) -> Any:
    """One value of a field of type ``typ``: str, float (number), int (integer; money in minor units), bool."""
    if typ in ("string", "country", "list"):
        if not isinstance(raw, str):
            raise BadValue(f"expected text, got {_show(raw)}")
        if len(raw) > limits.MAX_STRING_LENGTH:
            raise BadValue(f"text longer than {limits.MAX_STRING_LENGTH} characters")
        return raw
    if typ == "boolean":
        if not isinstance(raw, bool):
            raise BadValue(f"expected true or false, got {_show(raw)}")
        return raw
    if typ == "number":
        return float(_number(raw))
    if typ == "integer":
        d = _number(raw)
        if d != d.to_integral_value():
            raise BadValue(f"expected a whole number, got {_show(raw)}")
        return int(d)
    if typ == "money":
        d = _number(raw)
        if exponent is None:
            return d
        scaled = d.scaleb(exponent)
        if scaled != scaled.to_integral_value():
            raise BadValue(f"amount has more than {exponent} decimal places")
        return int(scaled)
    if typ in ("date",):
        return parse_date(raw)
    if typ == "datetime":
        return parse_date_or_datetime(raw)
    raise BadValue(f"unsupported type {typ}")  # pragma: no cover


def coerce_value(typ: str, op: str, raw: Any, exponent: int | None) -> Any:
    """The typed value of ``op`` on a field of type ``typ`` (raises :class:`BadValue`).

    Returns: None for operators without a value; a list for list operators; a pair for ``between``; an int for
    day counts; a period name for ``in_calendar``; otherwise one scalar.
    """
    if op in NO_VALUE_OPERATORS:
        if raw is not None:
            raise BadValue(f"operator {op} takes no value")
        return None
    if raw is None:
        raise BadValue(f"operator {op} needs a value")
    if op in LIST_VALUE_OPERATORS:
        if not isinstance(raw, list):
            raise BadValue(f"operator {op} needs a list of values")
        if not raw:
            raise BadValue("the list of values is empty")
        if len(raw) > limits.MAX_LIST_LENGTH:
            raise BadValue(f"more than {limits.MAX_LIST_LENGTH} values")
        return [coerce_scalar(typ, x, exponent) for x in raw]
    if isinstance(raw, list) and op != "between":
        raise BadValue(f"operator {op} takes one value, not a list")
    if op == "between":
        if not isinstance(raw, list) or len(raw) != 2:
            raise BadValue("between needs a list of two values [from, to]")
        if typ in ("date", "datetime"):
            lo, hi = (parse_date(x) if typ == "date" else parse_date_or_datetime(x) for x in raw)
            mixed = isinstance(lo, dt.datetime) and isinstance(hi, dt.datetime) and (lo.tzinfo is None) != (
                hi.tzinfo is None
            )
            if mixed:
                raise BadValue("give both bounds with a UTC offset, or both without (local time)")
            if type(lo) is type(hi) and lo > hi:
                raise BadValue("the first bound is after the second")
            return [lo, hi]
        lo, hi = (coerce_scalar(typ, x, exponent) for x in raw)
        if lo > hi:
            raise BadValue("the first bound is greater than the second")
        return [lo, hi]
    if op in ("exactly_days_ago", "less_than_days_ago", "more_than_days_ago", "in_next_days",
              "anniversary_within_days"):
        if isinstance(raw, bool) or not isinstance(raw, int | Decimal) or raw != int(raw) or raw < 0:
            raise BadValue(f"operator {op} needs a whole number of days (0 or more)")
        if raw > limits.MAX_DAYS:
            raise BadValue(f"at most {limits.MAX_DAYS} days")
        return int(raw)
    if op == "in_calendar":
        if raw not in CALENDAR_PERIODS:
            raise BadValue(f"expected one of {', '.join(CALENDAR_PERIODS)}")
        return raw
    if op in ("contains", "not_contains", "starts_with", "ends_with"):
        v = coerce_scalar("string", raw, exponent)
        if v == "":
            raise BadValue("the text to look for is empty")
        return v
    if op == "on":
        return parse_date(raw)
    if op in ("before", "after"):
        return parse_date(raw) if typ == "date" else parse_date_or_datetime(raw)
    return coerce_scalar(typ, raw, exponent)
