"""The text form of rules: :func:`to_text` and :func:`parse_text` (``parse_text(to_text(r)) == r`` up to ids).

Grammar (keywords are lower case; ``#`` has no meaning; whitespace is free)::

    rule       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := "not" unary | atom
    atom       := "(" rule ")"
                | ("all" | "any") "(" [rule ("," rule)*] ")"      -- and/or groups of 0 or 1 members
                | "in_segment" STRING
                | "sample" NUMBER "%" "seed" STRING
                | activity
                | condition
    condition  := field op [value] ["case_sensitive"]
    field      := NAME ("." NAME)* | STRING                           -- a bare name is a profile field
    op         := "=" | "!=" | "<" | "<=" | ">" | ">=" | an operator name (is, in, more_than_days_ago ...)
    value      := "between"-style: scalar "and" scalar  (only after the between operator)
                | "(" [scalar ("," scalar)*] ")"                      -- a list
                | scalar
    scalar     := STRING | NUMBER | "true" | "false" | DATE | DATETIME   -- bare dates are read as text
    activity   := FN "(" source ["." field_path] ["where" condition ("and" condition)*] ["during" window] ")"
                  op [value]
    FN         := "count" | "sum" | "avg" | "min" | "max"
    source     := "orders" | "order_items" | "points" | "redemptions" | "events" "[" STRING "]"
    window     := "last" INT "days" | INT "to" INT "days" "ago" | "from" (DATE|DATETIME) "to" (DATE|DATETIME)
                | "this_month" | "last_week" | ... (a calendar period)

``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` are ``is``, ``is_not``, ``lt``, ``lte``, ``gt``, ``gte``. Examples::

    country in ("PL", "DE") and summary.total_spent > 500 and summary.last_order_at more_than_days_ago 30
    count(events["product_viewed"] during last 30 days) >= 3
    sum(order_items.amount where brand is "X" during last 90 days) > 500
    not in_segment "vip" or (sample 10% seed "spring-holdout" and count(orders during last 60 days) = 0)
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

import parsy as P

from . import limits
from .errors import RuleError
from .model import (
    ACTIVITIES,
    CALENDAR_PERIODS,
    OPERATORS,
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

SYMBOLS = {"<=": "lte", ">=": "gte", "!=": "is_not", "<": "lt", ">": "gt", "=": "is"}
_PRINT_SYMBOL = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
FUNCTIONS = ("count", "sum", "avg", "min", "max")
RESERVED = {"and", "or", "not", "all", "any", "in_segment", "sample", "true", "false", "null", "where", "during",
            "case_sensitive", *FUNCTIONS}
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

# -- printing ------------------------------------------------------------------------------------------------------


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | Decimal):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if v is None:
        return "null"
    raise TypeError(f"cannot print {v!r}")


def _value(op: str, v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        if op == "between" and len(v) == 2 and not any(isinstance(x, list) for x in v):
            return f" {_scalar(v[0])} and {_scalar(v[1])}"
        return " (" + ", ".join(_scalar(x) for x in v) + ")"
    return " " + _scalar(v)


def _field(path: str) -> str:
    if _PATH_RE.fullmatch(path) and path not in RESERVED:
        return path
    return json.dumps(path, ensure_ascii=False)


def _condition(c: Condition) -> str:
    op = _PRINT_SYMBOL.get(c.op, c.op)
    return f"{_field(c.field)} {op}{_value(c.op, c.value)}" + (" case_sensitive" if c.case_sensitive else "")


def _window(w: Any) -> str:
    if isinstance(w, LastDays):
        return f"last {w.last_days} days"
    if isinstance(w, DaysAgo):
        return f"{w.days_ago[0]} to {w.days_ago[1]} days ago"
    if isinstance(w, CalendarWindow):
        return w.calendar
    assert isinstance(w, BetweenDates)
    return f"from {w.between[0].isoformat()} to {w.between[1].isoformat()}"


def _activity(a: Activity) -> str:
    fn = a.measure.fn if a.measure else "count"
    src = a.activity if a.activity != "events" else f"events[{json.dumps(a.event or '', ensure_ascii=False)}]"
    if a.activity == "events" and a.event is None:
        src = "events"
    if a.measure is not None and a.measure.field is not None:
        src += "." + _field(a.measure.field)
    parts = [src]
    if a.where:
        parts.append("where " + " and ".join(_condition(c) for c in a.where))
    if a.window is not None:
        parts.append("during " + _window(a.window))
    op = _PRINT_SYMBOL.get(a.op, a.op)
    return f"{fn}({' '.join(parts)}) {op}{_value(a.op, a.value)}"


def _node(n: NodeType, parent: str | None = None) -> str:
    if isinstance(n, And | Or):
        items = n.and_ if isinstance(n, And) else n.or_
        word = "and" if isinstance(n, And) else "or"
        if len(items) < 2:
            return ("all(" if word == "and" else "any(") + ", ".join(_node(x) for x in items) + ")"
        text = f" {word} ".join(_node(x, word) for x in items)
        return f"({text})" if parent is not None else text
    if isinstance(n, Not):
        return "not " + _node(n.not_, "not")
    if isinstance(n, Condition):
        return _condition(n)
    if isinstance(n, Activity):
        return _activity(n)
    if isinstance(n, InSegment):
        return f"in_segment {json.dumps(n.in_segment, ensure_ascii=False)}"
    assert isinstance(n, Sample)
    return f"sample {n.sample.percent}% seed {json.dumps(n.sample.seed, ensure_ascii=False)}"


def to_text(rule: Rule | NodeType) -> str:
    """The text form of a rule (ids are not part of it)."""
    return _node(rule.root if isinstance(rule, Rule) else rule)


# -- parsing -------------------------------------------------------------------------------------------------------

_ws = P.regex(r"\s*")


def _lex(p: P.Parser) -> P.Parser:
    return p << _ws


def _kw(word: str) -> P.Parser:
    return _lex(P.regex(re.escape(word) + r"(?![A-Za-z0-9_])")).desc(repr(word))


def _sym(s: str) -> P.Parser:
    return _lex(P.string(s))


_STRING_RE = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'


def _json_string(s: str) -> str:
    out: str = json.loads(s)
    return out


string_lit = _lex(P.regex(_STRING_RE).map(_json_string)).desc("a quoted string")
_DATETIME_RE = (r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?"
                r"(?:Z|[+-]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?)?(?![0-9A-Za-z_])")
datetime_lit = _lex(P.regex(_DATETIME_RE)).desc("a date")
_NUMBER_RE = r"-?\d+(\.\d+)?([eE][+-]?\d+)?(?![0-9A-Za-z_])"


def _number(s: str) -> int | Decimal:
    if re.fullmatch(r"-?\d+", s):
        if len(s) > 40:
            raise ValueError("number too long")
        return int(s)
    return Decimal(s)


number_lit = _lex(P.regex(_NUMBER_RE).map(_number)).desc("a number")
int_lit = _lex(P.regex(r"\d{1,9}(?![0-9A-Za-z_.])").map(int)).desc("a whole number")
bool_lit = _kw("true").result(True) | _kw("false").result(False)
scalar = string_lit | bool_lit | datetime_lit | number_lit
list_lit = _sym("(") >> scalar.sep_by(_sym(",")) << _sym(")")
path = _lex(P.regex(_PATH_RE.pattern + r"(?![A-Za-z0-9_])")).desc("a field name")


@P.generate("a field")
def field_name() -> Any:
    p = yield path | string_lit
    return p


def _op_name(word: str) -> P.Parser:
    return _kw(word).result(word)


_symbol_op = P.alt(*[_sym(s).result(name) for s, name in SYMBOLS.items()])
op_parser = (_symbol_op | P.alt(*[_op_name(o) for o in sorted(OPERATORS, key=len, reverse=True)])).desc(
    "an operator")


@P.generate
def op_and_value() -> Any:
    op = yield op_parser
    if op == "between":
        pair = yield (P.seq(scalar << _kw("and"), scalar).map(list)).optional()
        if pair is not None:
            return op, pair
    value = yield (list_lit | scalar).optional()
    return op, value


@P.generate
def condition() -> Any:
    fld = yield field_name
    if isinstance(fld, str) and fld in RESERVED and _NAME_RE.fullmatch(fld):
        yield P.fail("a field")
    op, value = yield op_and_value
    cs = yield _kw("case_sensitive").result(True).optional()
    return Condition(field=fld, op=op, value=value, case_sensitive=bool(cs))


@P.generate("a window")
def window() -> Any:
    last = yield (_kw("last") >> int_lit << _kw("days")).optional()
    if last is not None:
        return LastDays(last_days=last)
    ago = yield P.seq(int_lit << _kw("to"), int_lit << _kw("days") << _kw("ago")).optional()
    if ago is not None:
        return DaysAgo(days_ago=(ago[0], ago[1]))
    between = yield P.seq(_kw("from") >> datetime_lit, _kw("to") >> datetime_lit).optional()
    if between is not None:
        return BetweenDates.model_validate({"between": between})
    period = yield P.alt(*[_kw(p).result(p) for p in CALENDAR_PERIODS])
    return CalendarWindow(calendar=period)


@P.generate("an activity")
def activity() -> Any:
    fn = yield P.alt(*[_kw(f).result(f) for f in FUNCTIONS])
    yield _sym("(")
    act = yield P.alt(*[_kw(a).result(a) for a in sorted(ACTIVITIES, key=len, reverse=True)])
    event = None
    if act == "events":
        event = yield (_sym("[") >> string_lit << _sym("]")).optional()
    mfield = yield (P.string(".") >> field_name).optional()
    where = yield (_kw("where") >> condition.sep_by(_kw("and"), min=1)).optional()
    win = yield (_kw("during") >> window).optional()
    yield _sym(")")
    op, value = yield op_and_value
    measure = None if fn == "count" and mfield is None else Measure(fn=fn, field=mfield)
    return Activity(activity=act, event=event, where=where or [], window=win, measure=measure, op=op, value=value)


rule_parser = P.forward_declaration()


@P.generate("a group")
def group_call() -> Any:
    kind = yield _kw("all").result("and") | _kw("any").result("or")
    yield _sym("(")
    items = yield rule_parser.sep_by(_sym(","))
    yield _sym(")")
    return And(**{"and": items}) if kind == "and" else Or(**{"or": items})


in_segment = (_kw("in_segment") >> string_lit).map(lambda s: InSegment(in_segment=s))
sample = P.seq(_kw("sample") >> number_lit << _sym("%"), _kw("seed") >> string_lit).combine(
    lambda pct, seed: Sample(sample=SampleSpec(percent=Decimal(pct), seed=seed)))
parens = _sym("(") >> rule_parser << _sym(")")
atom = parens | group_call | in_segment | sample | activity | condition


@P.generate
def unary() -> Any:
    negate = yield _kw("not").optional()
    if negate is not None:
        inner = yield unary
        return Not(**{"not": inner})
    node = yield atom
    return node


def _group(kind: str) -> Any:
    def make(items: list[Any]) -> Any:
        if len(items) == 1:
            return items[0]
        return And(**{"and": items}) if kind == "and" else Or(**{"or": items})
    return make


and_expr = unary.sep_by(_kw("and"), min=1).map(_group("and"))
or_expr = and_expr.sep_by(_kw("or"), min=1).map(_group("or"))
rule_parser.become(or_expr)
document = _ws >> rule_parser


def parse_text(text: str) -> Rule:
    """Parse the text form into a :class:`Rule` (structure and limits checked; validate it against a catalog
    with :func:`cohorta.rules.validate`). Raises :class:`RuleError` with the position of a syntax error."""
    from .validate import parse_rule_json

    if not isinstance(text, str):
        raise RuleError("the rule text must be a string")
    if len(text) > limits.MAX_TEXT_LENGTH:
        raise RuleError(f"the rule text is longer than {limits.MAX_TEXT_LENGTH} characters")
    if text.count("(") > limits.MAX_NODES * 2 + 50:
        raise RuleError("the rule text has too many parentheses")
    try:
        node = document.parse(text)
    except P.ParseError as exc:
        line, col = P.line_info_at(exc.stream, exc.index) if exc.index <= len(exc.stream) else (0, exc.index)
        expected = ", ".join(sorted(exc.expected)[:8])
        raise RuleError(f"syntax error at line {line + 1}, column {col + 1}: expected {expected}") from exc
    except RecursionError as exc:
        raise RuleError("the rule text is nested too deeply") from exc
    except (ValueError, ArithmeticError) as exc:  # pydantic errors are ValueErrors
        raise RuleError(f"invalid rule text: {str(exc).splitlines()[0]}") from exc
    return parse_rule_json(Rule(node).to_json())


def _strip_date(v: dt.date) -> str:  # pragma: no cover - kept for symmetry with the printer
    return v.isoformat()
