"""Per-snapshot indexes of activity rows, so that an activity measure over a window costs two binary searches.

Many rules count or sum the same rows (same activity, event and ``where`` filters) over different windows with
different thresholds. :class:`RowSpec` names such a set of rows (interned: equal filters give the same spec, whatever
rule they come from); :meth:`RowSpec.fetch` builds, once per snapshot, a :class:`RowIndex` of the counted rows sorted
by time and keeps it on the snapshot. A window ``[lo, hi)`` is then the slice ``bisect_left(times, lo) ..
bisect_left(times, hi)``: its count is the difference of the two, its sum the difference of two prefix sums of the
measured column (:class:`ColumnIndex`, built on first use).

Exactly the semantics of the plain row scan (:func:`cohorta.rules.predicate.measure_rows` and ``measure_value``):
rows with a NULL time never count; NULL measured values are skipped; a list value counts by its first element.
Prefix sums are used only where they are exact: a column whose present values are all ints (money, integers,
points). Otherwise (floats, anything else) and for min/max, the measure is the plain one over the window's rows in
the snapshot's order.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left
from collections.abc import Callable, Hashable, Sequence
from itertools import accumulate, pairwise
from typing import Any

from .timeutil import UTC, to_utc_naive

Row = dict[str, Any]
RowFilter = Callable[[Row], Any]
Measure = Callable[[list[Row]], Any]


class RowSpec:
    """The rows of one activity list that count for a set of activity conditions: event name and row filters.

    Get one with :func:`row_spec`; identity is equality (specs are interned), so a spec is a cheap dictionary key. A
    spec with filters is its ``parent`` (the same without the last filter) narrowed by the last filter, so rules that
    share the first filters (the default order statuses, then a brand ...) share their work.
    """

    __slots__ = ("__weakref__", "attr", "event", "group", "last", "parent", "time_column")

    def __init__(
        self,
        attr: str,
        time_column: str,
        event: str | None,
        parent: RowSpec | None = None,
        last: RowFilter | None = None,
        group: Group | None = None,
    ) -> None:
        self.attr = attr
        self.time_column = time_column
        self.event = event
        self.parent = parent
        self.last = last
        self.group = group

    def fetch(self, snapshot: Any) -> RowIndex:
        """The index of these rows in ``snapshot``, built on first use and kept on the snapshot.

        Rebuilt if the activity list was replaced or changed length since (rows are not expected to be edited in
        place once a snapshot has been evaluated).
        """
        memo: dict[Any, Any] = snapshot._indexes
        rows = getattr(snapshot, self.attr)
        ix = memo.get(self)
        if ix is None or ix.src is not rows or ix.n != len(rows):
            if self.parent is None or self.last is None:
                ix = RowIndex.scan(rows, self.time_column, self.event)
            elif self.group is not None:
                ix = self.parent.fetch(snapshot).narrow_to(self.group)
            else:
                ix = self.parent.fetch(snapshot).narrow(self.last)
            memo[self] = ix
        return ix


_SPECS: weakref.WeakValueDictionary[Hashable, RowSpec] = weakref.WeakValueDictionary()


class Group:
    """A row filter "the value read from the row (lowercased if ``lower``) is one of ``values``" (a value that is
    None fails), done by grouping the rows by that value once per index: rules naming different brands or categories
    then share one pass over the rows. ``key`` names the grouping (the same read and lowering)."""

    __slots__ = ("key", "lower", "read", "values")

    def __init__(self, key: Hashable, read: Callable[[Row], Any], lower: bool, values: Sequence[Any]) -> None:
        self.key = key
        self.read = read
        self.lower = lower
        self.values = tuple(values)


def row_spec(
    attr: str, time_column: str, event: str | None, filters: Sequence[tuple[Hashable, RowFilter, Group | None]]
) -> RowSpec:
    """The interned spec of the rows of ``attr`` (with ``event``) passing ``filters``, as (key, function, group)
    triples: equal keys must mean equal functions; ``group``, if given, is an equivalent form of the function."""
    key: Hashable = (attr, time_column, event)
    spec = _SPECS.get(key)
    if spec is None:
        spec = _SPECS[key] = RowSpec(attr, time_column, event)
    for f_key, f, group in filters:
        key = (key, f_key)
        try:
            child = _SPECS.get(key)
        except TypeError:  # pragma: no cover - bound filters are hashable; unshared otherwise
            child = None
            key = object()
        if child is None:
            child = _SPECS[key] = RowSpec(attr, time_column, event, spec, f, group)
        spec = child
    return spec


class RowIndex:
    """The counted rows of one snapshot for one :class:`RowSpec`, sorted by (naive UTC) time, ties in list order."""

    __slots__ = ("columns", "empty", "groups", "n", "ordered", "positions", "rows", "src", "times")

    def __init__(self, src: list[Row], times: list[Any], positions: list[int], rows: list[Row], ordered: bool) -> None:
        self.src = src
        self.n = len(src)
        self.times = times
        self.positions = positions
        self.rows = rows
        self.ordered = ordered  # positions ascend: the slices are in the snapshot's order
        self.columns: dict[tuple[str, bool], ColumnIndex] = {}
        self.groups: dict[Hashable, dict[Any, list[int]]] | None = None
        self.empty: RowIndex | None = None

    @classmethod
    def scan(cls, src: list[Row], time_column: str, event: str | None) -> RowIndex:
        """The rows of ``src`` with a time (and the event name), sorted by time."""
        kept: list[tuple[Any, int, Row]] = []
        for pos, r in enumerate(src):
            if event is not None and r.get("name") != event:
                continue
            t = r.get(time_column)
            if t is not None:
                tz = t.tzinfo
                # as to_utc_naive(t), without its calls for naive and UTC times (astimezone(UTC) keeps a UTC time)
                kept.append((t if tz is None else t.replace(tzinfo=None) if tz is UTC else to_utc_naive(t), pos, r))
        times = [k[0] for k in kept]
        ordered = all(a <= b for a, b in pairwise(times))
        if not ordered:
            kept.sort(key=lambda k: k[0])  # stable: ties keep the list order
            times = [k[0] for k in kept]
        return cls(src, times, [k[1] for k in kept], [k[2] for k in kept], ordered)

    def narrow(self, keep: RowFilter) -> RowIndex:
        """The rows of this index that pass ``keep`` (still sorted)."""
        return self.pick([i for i, r in enumerate(self.rows) if keep(r)])

    def narrow_to(self, group: Group) -> RowIndex:
        """The rows of this index that pass the filter ``group`` stands for (still sorted)."""
        if self.groups is None:
            self.groups = {}
        groups = self.groups.get(group.key)
        if groups is None:
            groups = self.groups[group.key] = {}
            read, lower = group.read, group.lower
            for i, r in enumerate(self.rows):
                v = read(r)
                if v is not None:
                    groups.setdefault(v.lower() if lower else v, []).append(i)
        if len(group.values) == 1:
            return self.pick(groups.get(group.values[0], []))
        return self.pick(sorted(i for v in group.values for i in groups.get(v, ())))

    def pick(self, picked: list[int]) -> RowIndex:
        """The index of some of these rows (``picked``: ascending indexes); shared when it is all or none of them."""
        if len(picked) == len(self.rows):
            return self
        if not picked:
            if self.empty is None:
                self.empty = RowIndex(self.src, [], [], [], True)
            return self.empty
        times, positions, rows = self.times, self.positions, self.rows
        return RowIndex(
            self.src,
            [times[i] for i in picked],
            [positions[i] for i in picked],
            [rows[i] for i in picked],
            self.ordered,
        )

    def window(self, lo: Any, hi: Any) -> tuple[int, int]:
        """Slice of the rows with ``lo <= time < hi`` (``lo`` None: unbounded); empty when ``lo >= hi``."""
        i = 0 if lo is None else bisect_left(self.times, lo)
        return i, bisect_left(self.times, hi, i)

    def rows_between(self, i: int, j: int) -> list[Row]:
        """The rows of a slice in the snapshot's order (as the plain scan sees them)."""
        if self.ordered:
            return self.rows[i:j]
        return [r for _, r in sorted(zip(self.positions[i:j], self.rows[i:j], strict=True), key=lambda p: p[0])]

    def column(self, name: str, prop: bool) -> ColumnIndex:
        found = self.columns.get((name, prop))
        if found is None:
            found = self.columns[(name, prop)] = ColumnIndex(self.times, self.rows, name, prop)
        return found


class ColumnIndex:
    """Prefix sums and prefix counts of present values of one measured column (or event property) of a RowIndex.

    ``sums`` is None unless every present value is an int (then the prefix sums are exact). ``times`` are the
    index's.
    """

    __slots__ = ("counts", "sums", "times")

    def __init__(self, times: list[Any], rows: list[Row], name: str, prop: bool) -> None:
        self.times = times
        values = []
        for r in rows:
            v = (r.get("properties") or {}).get(name) if prop else r.get(name)
            if isinstance(v, list):
                v = v[0] if v else None
            values.append(v)
        exact = all(v is None or isinstance(v, int) for v in values)
        self.sums: list[int] | None = list(accumulate((v or 0 for v in values), initial=0)) if exact else None
        self.counts = list(accumulate((v is not None for v in values), initial=0))


def window_measure_at(
    spec: RowSpec,
    fn: str,
    column: str | None,
    prop: bool,
    number: bool,
    avg_pair: bool,
    plain: Measure,
) -> Callable[[Any, Any, Any], Any]:
    """(snapshot, lo, hi) -> the measure over the window ``[lo, hi)`` of ``spec``'s rows; same answer as ``plain``
    (the measure over the rows of the plain scan), which is used for what prefix sums cannot give exactly. Taking
    the window as arguments lets one function serve every instant (next-change scans move the window)."""
    if fn == "count":

        def count(s: Any, lo: Any, hi: Any) -> int:
            i, j = spec.fetch(s).window(lo, hi)
            return j - i

        return count
    col = column or ""
    key = (col, prop)
    exact_fn = fn if fn == "sum" or (fn == "avg" and avg_pair) else None
    if number:  # values converted to float: summed as the plain scan does
        exact_fn = None
    fetch = spec.fetch

    def measure(s: Any, lo: Any, hi: Any) -> Any:
        ix = fetch(s)
        times = ix.times
        i = 0 if lo is None else bisect_left(times, lo)
        j = bisect_left(times, hi, i)
        if exact_fn is not None:
            c = ix.columns.get(key) or ix.column(col, prop)
            sums = c.sums
            if sums is not None:
                total = sums[j] - sums[i]
                if exact_fn == "sum":
                    return total
                n = c.counts[j] - c.counts[i]
                return (total, n) if n else None
        return plain(ix.rows_between(i, j))

    return measure
