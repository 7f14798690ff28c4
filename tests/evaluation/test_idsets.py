"""The id-set algebra behind the preview's drop-off, against Python's sets over a small universe of customers."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cohorta.evaluation.idsets import IdSet

#: The customers that exist: id 0 and a few others never do (deleted, or never assigned), as in a real id range.
CUSTOMERS = frozenset({1, 2, 3, 5, 6, 7, 9, 10, 11})

leaves = st.frozensets(st.sampled_from(sorted(CUSTOMERS)))
expressions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.tuples(st.just("not"), inner),
        st.tuples(st.sampled_from(["and", "or"]), inner, inner),
    ),
    max_leaves=8,
)


def as_idset(expression: Any) -> IdSet:
    if isinstance(expression, frozenset):
        return IdSet.of(np.array(sorted(expression), dtype=np.int64))
    if expression[0] == "not":
        return ~as_idset(expression[1])
    left, right = as_idset(expression[1]), as_idset(expression[2])
    return left & right if expression[0] == "and" else left | right


def as_set(expression: Any) -> frozenset[int]:
    if isinstance(expression, frozenset):
        return expression
    if expression[0] == "not":
        return CUSTOMERS - as_set(expression[1])
    left, right = as_set(expression[1]), as_set(expression[2])
    return left & right if expression[0] == "and" else left | right


@given(expressions)
def test_counts_and_ids_are_those_of_the_same_expression_over_sets(expression: Any) -> None:
    got, want = as_idset(expression), as_set(expression)
    assert got.count(len(CUSTOMERS)) == len(want)
    if not got.complement:
        assert got.ids() == sorted(want)
        assert got.ids(2) == sorted(want)[:2]
    # membership of every customer (and of ids past every mask's end)
    assert {c for c in range(max(CUSTOMERS) + 3) if c in got} & CUSTOMERS == want


def test_everybody_and_nobody_are_the_identities_of_and_and_or() -> None:
    some = IdSet.of(np.array([2, 5], dtype=np.int64))
    assert (IdSet.everybody() & some).ids() == [2, 5]
    assert (IdSet.nobody() | some).ids() == [2, 5]
    assert IdSet.everybody().count(len(CUSTOMERS)) == len(CUSTOMERS)
    assert IdSet.nobody().count(len(CUSTOMERS)) == 0
