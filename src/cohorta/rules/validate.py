"""Validation of untrusted rule JSON against a catalog, with every problem reported as (JSON path, message)."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from . import limits
from .catalog import Catalog
from .errors import Problem, RuleError
from .model import (
    ACTIVITIES,
    MEASURE_FUNCTIONS,
    WINDOW_CALENDAR_PERIODS,
    Activity,
    And,
    BetweenDates,
    CalendarWindow,
    Condition,
    DaysAgo,
    InSegment,
    LastDays,
    Measure,
    NodeType,
    Not,
    Or,
    Rule,
    Sample,
    SampleSpec,
)
from .plan import bind
from .semantics import BadValue, parse_date_or_datetime
from .timeutil import Context

_KIND_KEYS = {
    "and": {"and", "id"}, "or": {"or", "id"}, "not": {"not", "id"},
    "condition": {"field", "op", "value", "case_sensitive", "id"},
    "activity": {"activity", "event", "where", "window", "measure", "op", "value", "id"},
    "in_segment": {"in_segment", "id"}, "sample": {"sample", "id"},
}  # fmt: skip
_KIND_ORDER = ("and", "or", "not", "activity", "field", "in_segment", "sample")


def _kind(obj: dict[str, Any]) -> str | None:
    for key in _KIND_ORDER:
        if key in obj:
            return "condition" if key == "field" else key
    return None


def _fmt(v: Any) -> str:
    s = json.dumps(v, default=str) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | Decimal) and not isinstance(v, bool)


class _Walker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.nodes = 0
        self.too_big = False
        self.ids: set[str] = set()

    def bad(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def count(self, path: str, depth: int) -> bool:
        self.nodes += 1
        if depth > limits.MAX_DEPTH:
            self.bad(path, f"the rule is nested deeper than {limits.MAX_DEPTH} levels")
            self.too_big = True
            return False
        if self.nodes > limits.MAX_NODES:
            if not self.too_big:
                self.bad(path, f"the rule has more than {limits.MAX_NODES} conditions and groups")
            self.too_big = True
            return False
        return True

    def string(self, obj: dict[str, Any], key: str, path: str, required: bool = True) -> str | None:
        if key not in obj:
            if required:
                self.bad(path, f"{key!r} is missing")
            return None
        v = obj[key]
        if not isinstance(v, str) or not v:
            self.bad(f"{path}.{key}", f"{key!r} must be non-empty text, got {_fmt(v)}")
            return None
        if len(v) > limits.MAX_STRING_LENGTH:
            self.bad(f"{path}.{key}", f"{key!r} is longer than {limits.MAX_STRING_LENGTH} characters")
            return None
        return v

    def node_id(self, obj: dict[str, Any], path: str) -> str | None:
        nid = self.string(obj, "id", path, required=False)
        if nid is not None:
            if nid in self.ids:
                self.bad(f"{path}.id", f"id {nid!r} is used twice")
            self.ids.add(nid)
        return nid

    def value(self, v: Any, path: str) -> Any:
        """A JSON value for ``value``: a scalar or a list of scalars (checked for size; typed later)."""
        if isinstance(v, list):
            if len(v) > limits.MAX_LIST_LENGTH:
                self.bad(path, f"more than {limits.MAX_LIST_LENGTH} values")
                return None
            return [self.value_scalar(x, f"{path}[{i}]") for i, x in enumerate(v)]
        return self.value_scalar(v, path)

    def value_scalar(self, v: Any, path: str) -> Any:
        if v is None or isinstance(v, bool | str | int):
            if isinstance(v, str) and len(v) > limits.MAX_STRING_LENGTH:
                self.bad(path, f"text longer than {limits.MAX_STRING_LENGTH} characters")
            return v
        if isinstance(v, float | Decimal):
            d = Decimal(repr(v)) if isinstance(v, float) else v
            if not d.is_finite():
                self.bad(path, "numbers must be finite")
                return None
            return d
        if isinstance(v, dt.date):
            return v.isoformat()
        self.bad(path, f"expected text, a number, true/false or null, got {_fmt(v)}")
        return None

    def unknown_keys(self, obj: dict[str, Any], allowed: set[str], path: str, what: str) -> None:
        for k in obj:
            if k not in allowed:
                self.bad(f"{path}.{k}" if isinstance(k, str) else path, f"unexpected key {_fmt(k)} in {what}")

    def node(self, obj: Any, path: str, depth: int) -> NodeType | None:
        if not isinstance(obj, dict):
            self.bad(path, f"expected an object (a group or a condition), got {_fmt(obj)}")
            return None
        if not self.count(path, depth):
            return None
        kind = _kind(obj)
        if kind is None:
            self.bad(path, "not a rule node: expected one of the keys and, or, not, field, activity, in_segment, "
                           "sample")
            return None
        self.unknown_keys(obj, _KIND_KEYS[kind], path, kind if kind != "condition" else "a condition")
        nid = self.node_id(obj, path)
        if kind in ("and", "or"):
            items = obj[kind]
            if not isinstance(items, list):
                self.bad(f"{path}.{kind}", f"{kind!r} needs a list of conditions")
                return None
            kids = [self.node(x, f"{path}.{kind}[{i}]", depth + 1) or _PLACEHOLDER for i, x in enumerate(items)]
            return And(id=nid, **{"and": kids}) if kind == "and" else Or(id=nid, **{"or": kids})
        if kind == "not":
            kid = self.node(obj["not"], f"{path}.not", depth + 1)
            return None if kid is None else Not(id=nid, **{"not": kid})
        if kind == "in_segment":
            sid = self.string(obj, "in_segment", path)
            return None if sid is None else InSegment(id=nid, in_segment=sid)
        if kind == "sample":
            return self.sample(obj, path, nid)
        if kind == "condition":
            return self.condition(obj, path, nid)
        return self.activity(obj, path, nid, depth)

    def condition(self, obj: dict[str, Any], path: str, nid: str | None) -> Condition | None:
        fld = self.string(obj, "field", path)
        op = self.string(obj, "op", path)
        value = self.value(obj.get("value"), f"{path}.value")
        cs = obj.get("case_sensitive", False)
        if not isinstance(cs, bool):
            self.bad(f"{path}.case_sensitive", "case_sensitive must be true or false")
            return None
        if fld is None or op is None:
            return None
        return Condition(id=nid, field=fld, op=op, value=value, case_sensitive=cs)

    def sample(self, obj: dict[str, Any], path: str, nid: str | None) -> Sample | None:
        spec = obj["sample"]
        p = f"{path}.sample"
        if not isinstance(spec, dict):
            self.bad(p, "sample needs an object {percent, seed}")
            return None
        self.unknown_keys(spec, {"percent", "seed"}, p, "sample")
        pct = spec.get("percent")
        seed = self.string(spec, "seed", p)
        if not _is_number(pct):
            self.bad(f"{p}.percent", "percent must be a number from 0 to 100")
            return None
        d = Decimal(repr(pct)) if isinstance(pct, float) else Decimal(pct)  # type: ignore[arg-type]
        if not d.is_finite() or d < 0 or d > 100:
            self.bad(f"{p}.percent", "percent must be a number from 0 to 100")
            return None
        if d.scaleb(2) != d.scaleb(2).to_integral_value():
            self.bad(f"{p}.percent", "percent has at most 2 decimal places")
            return None
        if seed is None:
            return None
        return Sample(id=nid, sample=SampleSpec(percent=d, seed=seed))

    def activity(self, obj: dict[str, Any], path: str, nid: str | None, depth: int) -> Activity | None:
        ok = True
        act = obj["activity"]
        if act not in ACTIVITIES:
            self.bad(f"{path}.activity", f"unknown activity {_fmt(act)}: expected one of {', '.join(ACTIVITIES)}")
            ok = False
        event = self.string(obj, "event", path, required=False) if "event" in obj else None
        where_raw = obj.get("where", [])
        where: list[Condition] = []
        if not isinstance(where_raw, list):
            self.bad(f"{path}.where", "where needs a list of conditions")
            ok = False
        else:
            for i, w in enumerate(where_raw):
                wp = f"{path}.where[{i}]"
                if not isinstance(w, dict) or "field" not in w:
                    self.bad(wp, "expected a condition {field, op, value}")
                    ok = False
                    continue
                if not self.count(wp, depth + 1):
                    return None
                self.unknown_keys(w, _KIND_KEYS["condition"], wp, "a condition")
                c = self.condition(w, wp, self.node_id(w, wp))
                if c is None:
                    ok = False
                else:
                    where.append(c)
        window = self.window(obj.get("window"), f"{path}.window") if obj.get("window") is not None else None
        if obj.get("window") is not None and window is None:
            ok = False
        measure = None
        if obj.get("measure") is not None:
            m = obj["measure"]
            mp = f"{path}.measure"
            if not isinstance(m, dict):
                self.bad(mp, "measure needs an object {fn, field}")
                ok = False
            else:
                self.unknown_keys(m, {"fn", "field"}, mp, "measure")
                fn = m.get("fn", "count")
                if fn not in MEASURE_FUNCTIONS:
                    self.bad(f"{mp}.fn", f"unknown measure {_fmt(fn)}: expected one of {', '.join(MEASURE_FUNCTIONS)}")
                    ok = False
                mf = self.string(m, "field", mp, required=False)
                if "field" in m and mf is None:
                    ok = False
                if ok:
                    measure = Measure(fn=fn, field=mf)
        op = self.string(obj, "op", path)
        value = self.value(obj.get("value"), f"{path}.value")
        if not ok or op is None:
            return None
        return Activity(id=nid, activity=act, event=event, where=where, window=window, measure=measure, op=op,
                        value=value)

    def window(self, w: Any, path: str) -> Any:
        if not isinstance(w, dict) or len(w) != 1:
            self.bad(path, "a window is one of {last_days: N}, {between: [from, to]}, {days_ago: [N, M]}, "
                           "{calendar: period}")
            return None
        (key, v), = w.items()
        p = f"{path}.{key}"
        if key == "last_days":
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= limits.MAX_DAYS:
                self.bad(p, f"last_days needs a whole number of days from 1 to {limits.MAX_DAYS}")
                return None
            return LastDays(last_days=v)
        if key == "days_ago":
            if not (isinstance(v, list) and len(v) == 2 and all(
                    isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= limits.MAX_DAYS for x in v)):
                self.bad(p, "days_ago needs two whole numbers of days [N, M] (0 or more)")
                return None
            return DaysAgo(days_ago=(v[0], v[1]))
        if key == "calendar":
            if v not in WINDOW_CALENDAR_PERIODS:
                self.bad(p, f"calendar needs one of {', '.join(WINDOW_CALENDAR_PERIODS)}")
                return None
            return CalendarWindow(calendar=v)
        if key == "between":
            if not (isinstance(v, list) and len(v) == 2):
                self.bad(p, "between needs two dates or date-times [from, to]")
                return None
            try:
                a, b = (parse_date_or_datetime(x) for x in v)
            except BadValue as exc:
                self.bad(p, str(exc))
                return None
            try:
                return BetweenDates(between=(a, b))
            except ValidationError:  # pragma: no cover - defensive
                self.bad(p, "between needs two dates or date-times [from, to]")
                return None
        self.bad(p, f"unknown window {_fmt(key)}")
        return None


_PLACEHOLDER = And(**{"and": []})


def _path_key(problem: Problem) -> list[Any]:
    return [(0, int(x)) if x.isdecimal() else (1, x) for x in re.split(r"[.\[\]]+", problem.path) if x]


def parse_rule_json(rule_json: Any) -> Rule:
    """Structure only (no catalog): JSON (text or decoded) to a :class:`Rule`, or :class:`RuleError`."""
    rule, problems = _parse_partial(rule_json)
    if problems:
        raise RuleError(problems)
    return rule


def _parse_partial(rule_json: Any) -> tuple[Rule, list[Problem]]:
    """The rule with malformed members replaced by empty groups, and the structural problems found."""
    if isinstance(rule_json, Rule):
        rule_json = rule_json.to_json()
    if isinstance(rule_json, bytes | bytearray):
        try:
            rule_json = rule_json.decode()
        except UnicodeDecodeError as exc:
            raise RuleError("the rule is not UTF-8 text") from exc
    if isinstance(rule_json, str):
        if len(rule_json) > limits.MAX_TEXT_LENGTH * 10:
            raise RuleError("the rule is too long")
        try:
            rule_json = json.loads(rule_json, parse_float=Decimal)
        except (ValueError, RecursionError) as exc:
            raise RuleError(f"not valid JSON: {exc}") from exc
    walker = _Walker()
    try:
        root = walker.node(rule_json, "$", 1)
    except RecursionError as exc:  # pragma: no cover - depth is limited before this
        raise RuleError("the rule is nested too deeply") from exc
    if root is None:
        return Rule(_PLACEHOLDER), walker.problems or [Problem("$", "invalid rule")]
    return Rule(root), walker.problems


_VALIDATION_AS_OF = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def validate(rule_json: Any, catalog: Catalog, currency_exponent: int | None = None) -> Rule:
    """Check a rule (JSON text, decoded JSON or a :class:`Rule`) against ``catalog``; return the :class:`Rule`.

    Raises :class:`RuleError` listing every problem: malformed shape, limits, unknown fields or events, operators
    that do not fit the field type, values of the wrong type, bad windows. With ``currency_exponent`` money
    amounts with more decimals than the currency has are refused too.
    """
    rule, problems = _parse_partial(rule_json)
    if not (len(problems) == 1 and problems[0].path == "$"):
        try:
            bind(rule, Context(_VALIDATION_AS_OF, "UTC", currency_exponent, catalog))
        except RuleError as exc:
            problems = problems + exc.problems
    if problems:
        raise RuleError(sorted(problems, key=_path_key))
    return rule
