"""Live membership: every write re-evaluates the customers it touched, in the write's own transaction, against the
active dynamic segments whose rules can be affected by what changed (a loop over all segments only for a customer the
write created).

A dependency index maps each kind of write to the segments that read it:

| write | segments that read |
|---|---|
| ``profile`` (a customer's profile changed) | profile fields, custom attributes, samples |
| ``orders`` | order summary fields (count, spent, average, first and last order), order and order-item activity |
| ``events`` | event activity for one of the written event names |
| ``loyalty`` | loyalty summary fields (redemptions, referrals, gift cards), loyalty fields, points, redemptions |
| ``created`` (a new customer) | every segment: any rule may hold for someone with no activity yet |

and segments whose rules use ``in_segment`` follow the segments they use, in dependency order, in the same pass.
The response to the write therefore already shows the new membership.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cohorta import rules
from cohorta.config import Settings
from cohorta.customers.models import (
    AttributeDefinition,
    Customer,
    CustomerMonth,
    EventDefinition,
)
from cohorta.customers.service import ITEM_KEYS
from cohorta.customers.summary import chunked, read_summary_sources
from cohorta.db import (
    ReadAhead,
    array_literal,
    constant_rows,
    delete_rows,
    driver_cursor,
    insert_rows,
    pipelined,
    reading_ahead,
    select_rows,
    table_of,
)
from cohorta.evaluation.catalog import build_catalog
from cohorta.evaluation.snapshots import (
    ValueTypes,
    load_snapshots,
    read_event_properties_ahead,
    value_types,
    written_event_rows,
)
from cohorta.membership.service import (
    in_window,
    segment_figures,
    send_summary_sums,
    settle_diffs,
    store_figures,
    write_diff_rows,
)
from cohorta.segments.models import ChangeCause, Segment, SegmentMember, SegmentStatus, SegmentType, SegmentWakeup

WRITE_KINDS = ("profile", "orders", "events", "loyalty", "created")
T = TypeVar("T")
_ACTIVITY_KINDS = {"orders": "orders", "order_items": "orders", "events": "events", "loyalty_transactions": "loyalty"}


@dataclass
class LiveSegment:
    id: str
    version: int
    rule: rules.Rule
    timezone: str
    starts_at: datetime | None
    expires_at: datetime | None
    kinds: set[str]
    events: set[str]
    uses: set[str]
    requirements: rules.Requirements
    # What a new event row can do to the rule's answer (None: anything, whatever the row): rules.event_row_effect.
    event_effect: Callable[[dict[str, Any]], rules.RowEffect] | None = None
    # Likewise for a new order with its items: rules.order_effect; and a new loyalty journal row: rules.loyalty_effect.
    order_effect: Callable[[rules.NewOrder], rules.RowEffect] | None = None
    loyalty_effect: Callable[[dict[str, Any]], rules.RowEffect] | None = None
    _predicates: dict[datetime, Callable[[rules.CustomerSnapshot], bool]] = field(default_factory=dict)
    _next_change: dict[datetime, tuple[rules.Context, rules.NextChangeCache, rules.KeptAnswer | None]] = field(
        default_factory=dict
    )

    def context(self, now: datetime, settings: Settings, catalog: rules.Catalog) -> rules.Context:
        return rules.Context(
            as_of=now, timezone=self.timezone, currency_exponent=settings.currency_exponent, catalog=catalog
        )

    def predicate(
        self, now: datetime, settings: Settings, catalog: rules.Catalog
    ) -> Callable[[rules.CustomerSnapshot], bool]:
        """The predicate live evaluation uses at ``now``: compiled for :func:`evaluation_instant` (the end of the
        current second), so one compiled predicate serves every write of that second exactly (relative thresholds
        are fixed when a rule compiles, and compiling per write would cost more than evaluating)."""
        at = evaluation_instant(now)
        predicate = self._predicates.get(at)
        if predicate is None:
            predicate = rules.compile_predicate(self.rule, self.context(at, settings, catalog))
            self._predicates = {at: predicate}
        return predicate

    def next_change_tools(
        self, now: datetime, settings: Settings, catalog: rules.Catalog
    ) -> tuple[rules.Context, rules.NextChangeCache, rules.KeptAnswer | None]:
        """The context, :class:`rules.NextChangeCache` and :func:`rules.kept_answer` for wake-ups planned at
        ``now``, at the same instant as :meth:`predicate` and kept as long: the rule is bound and compiled once for
        every customer of that second."""
        at = evaluation_instant(now)
        found = self._next_change.get(at)
        if found is None:
            ctx, cache = self.context(at, settings, catalog), rules.NextChangeCache()
            found = (ctx, cache, rules.kept_answer(self.rule, ctx, cache))
            self._next_change = {at: found}
        return found

    def reads(self, kind: str, event_names: set[str] | None) -> bool:
        if kind == "created":
            return True
        if kind not in self.kinds:
            return False
        return kind != "events" or event_names is None or bool(self.events & event_names)


def evaluation_instant(now: datetime) -> datetime:
    """The instant live membership is decided at for a write or wake-up at ``now``: the last microsecond of its
    second. Every write of one second shares it, so compiled rules are reused, and it is never earlier than the
    write: activity stamped up to ``now`` always counts (an instant fixed by an earlier write of the same second would
    ignore it). Relative thresholds are therefore up to a second ahead of the clock."""
    return now.replace(microsecond=999_999)


#: Summary fields a loyalty write feeds; every other summary field is fed by orders alone. Every customer has a
#: summary row from creation on (``summary.ensure_summary_rows``), rebuilt from the raw rows on each write, so a write
#: of one kind leaves the other kind's fields as they were.
_LOYALTY_SUMMARY = frozenset({"summary.redemption_count", "summary.referral_count", "summary.gift_card_balance"})


def _kinds(requirements: rules.Requirements, catalog: rules.Catalog) -> set[str]:
    """The kinds of write that can change the rule's answer (see the module's table)."""
    kinds: set[str] = set()
    for path in requirements.fields:
        spec = catalog.field(path)
        group = spec.group if spec is not None else "profile"
        if group == "summary":
            kinds.add("loyalty" if spec is not None and spec.path in _LOYALTY_SUMMARY else "orders")
        elif group == "loyalty":
            kinds.add("loyalty")
        else:
            kinds.add("profile")
    for activity in requirements.activities:
        kinds.add(_ACTIVITY_KINDS[activity])
    if requirements.sample:
        kinds.add("profile")
    return kinds


def _fingerprint_query() -> sa.CompoundSelect:
    """One statement whose rows change whenever the index must reload: what the index keeps of every active dynamic
    segment (version, zone, start, expiry), and every attribute and event definition with its types. Whole rows, not
    counts and latest updates: with a frozen or coarse clock two changes can share one timestamp."""
    text, number = sa.Text(), sa.Integer()

    def none(type_: Any) -> Any:
        return sa.cast(sa.null(), type_)

    def raw(column: Any) -> Any:  # instants as the database's text: compared, never converted (that cost 3 ms)
        return sa.cast(column, text)

    segments = sa.select(
        sa.literal("segment"), Segment.id, Segment.version, Segment.timezone, raw(Segment.starts_at),
        raw(Segment.expires_at), raw(Segment.updated_at),
    ).where(Segment.type == SegmentType.dynamic.value, Segment.status == SegmentStatus.active.value)  # fmt: skip
    attributes = sa.select(
        sa.literal("attribute"), AttributeDefinition.name, none(number), AttributeDefinition.type, none(text),
        none(text), raw(AttributeDefinition.updated_at),
    )  # fmt: skip
    events = sa.select(
        sa.literal("event"), EventDefinition.name, none(number), raw(EventDefinition.properties), none(text),
        none(text), raw(EventDefinition.updated_at),
    )  # fmt: skip
    return sa.union_all(segments, attributes, events)


_FINGERPRINT = _fingerprint_query()


class SegmentIndex:
    """Active dynamic segments, parsed and indexed once; reloaded (with a fresh field catalog and declared value
    types) only when a segment, an attribute definition or an event definition changes. Checking costs one small
    query per write."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fingerprint: frozenset[Any] | None = None
        self._segments: list[LiveSegment] = []
        self.catalog = rules.Catalog()
        self.types = ValueTypes({}, {})
        self._reading_of: list[LiveSegment] | None = None
        self._reading: dict[tuple[str, frozenset[str] | None], list[LiveSegment]] = {}
        self._needs: dict[int, tuple[Sequence[LiveSegment], dict[str, rules.Requirements]]] = {}

    def current(self, session: Session, settings: Settings, now: datetime) -> list[LiveSegment]:
        fingerprint = frozenset(constant_rows(session.connection(), _FINGERPRINT))
        with self._lock:
            if fingerprint == self._fingerprint:
                return self._segments
        catalog = build_catalog(session)
        types = value_types(session)
        loaded = _load(session, settings, now, catalog)
        with self._lock:
            self._fingerprint, self._segments, self.catalog, self.types = fingerprint, loaded, catalog, types
        return loaded

    def reading(
        self, session: Session, settings: Settings, now: datetime, kind: str, event_names: set[str] | None
    ) -> list[LiveSegment]:
        """The current segments a ``kind`` write (of these event names) can affect, with the segments using them:
        worked out once per kind and set of names while the segments stay the same (a loop over every segment cost
        a quarter of a millisecond per write)."""
        segments = self.current(session, settings, now)
        key = (kind, None if event_names is None else frozenset(event_names))
        with self._lock:
            if self._reading_of is not segments or len(self._reading) > 256:
                self._reading_of, self._reading = segments, {}
            found = self._reading.get(key)
        if found is None:
            found = _affected(segments, lambda s: s.reads(kind, event_names))
            with self._lock:
                if self._reading_of is segments:
                    self._reading[key] = found
        return found

    def needs(self, affected: Sequence[LiveSegment]) -> dict[str, rules.Requirements]:
        """:func:`_needs` of these segments, worked out once per list (:meth:`reading` hands out the same list while
        the segments stay the same): its pairwise walk over ~60 segments cost an order a quarter of a millisecond."""
        with self._lock:
            found = self._needs.get(id(affected))
        if found is not None and found[0] is affected:
            return found[1]
        needs = _needs(affected)
        with self._lock:
            if len(self._needs) > 256:
                self._needs = {}
            self._needs[id(affected)] = (affected, needs)  # the list is kept, so its id is not reused meanwhile
        return needs


def _load(session: Session, settings: Settings, now: datetime, catalog: rules.Catalog) -> list[LiveSegment]:
    rows = session.scalars(
        sa.select(Segment).where(
            Segment.type == SegmentType.dynamic.value, Segment.status == SegmentStatus.active.value
        )
    ).all()
    loaded: dict[str, LiveSegment] = {}
    for row in rows:
        if not row.rule:
            continue
        rule = rules.validate(row.rule, catalog, settings.currency_exponent)
        zone = row.timezone or settings.timezone
        ctx = rules.Context(as_of=now, timezone=zone, currency_exponent=settings.currency_exponent, catalog=catalog)
        requirements = rules.rule_requirements(rule, ctx)
        loaded[row.id] = LiveSegment(
            id=row.id, version=row.version, rule=rule, timezone=zone, starts_at=row.starts_at,
            expires_at=row.expires_at, kinds=_kinds(requirements, catalog), events=set(requirements.events),
            uses=set(requirements.segments), requirements=requirements, event_effect=rules.event_row_effect(rule, ctx),
            order_effect=rules.order_effect(rule, ctx), loyalty_effect=rules.loyalty_effect(rule, ctx),
        )  # fmt: skip
    return _dependency_order(loaded)


def _dependency_order(segments: dict[str, LiveSegment]) -> list[LiveSegment]:
    ordered: list[LiveSegment] = []
    done: set[str] = set()

    def visit(segment: LiveSegment, path: set[str]) -> None:
        if segment.id in done or segment.id in path:  # cycles are refused on save; never loop
            return
        for used in sorted(segment.uses):
            if used in segments:
                visit(segments[used], path | {segment.id})
        done.add(segment.id)
        ordered.append(segment)

    for segment_id in sorted(segments):
        visit(segments[segment_id], set())
    return ordered


@dataclass(frozen=True)
class NewEvents:
    """What an events write changed: the events it inserted (rows as written, each with its property rows), and the
    customers one of whose events it rewrote (an update may have removed a row that counted)."""

    inserted: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]]
    rewritten: set[int]


@dataclass(frozen=True)
class NewOrders:
    """What an orders write changed: the orders it inserted, each with its items (rows as the tables hold them), by
    customer; and the customers one of whose orders it rewrote."""

    by_customer: dict[int, list[rules.NewOrder]]
    rewritten: set[int]

    @classmethod
    def of(cls, inserted: Iterable[rules.NewOrder], rewritten: set[int]) -> NewOrders:
        return cls(_by_customer(inserted, lambda order: order[0]), rewritten)


@dataclass(frozen=True)
class NewLoyalty:
    """What a loyalty write changed: the journal rows it inserted (as the table holds them), by customer; and the
    customers one of whose rows it rewrote."""

    by_customer: dict[int, list[dict[str, Any]]]
    rewritten: set[int]

    @classmethod
    def of(cls, inserted: Iterable[tuple[dict[str, Any], Any]], rewritten: set[int]) -> NewLoyalty:
        return cls(_by_customer((row for row, _children in inserted), lambda row: row), rewritten)


def _by_customer(items: Iterable[T], row_of: Callable[[T], Mapping[str, Any]]) -> dict[int, list[T]]:
    """The written items by the customer of their row."""
    grouped: dict[int, list[T]] = defaultdict(list)
    for item in items:
        grouped[row_of(item)["customer_id"]].append(item)
    return dict(grouped)


#: Which customers of a chunk a segment must be decided for because of the write or wake-up itself, given the
#: chunk's memberships in the segments read (segments that use it follow the customers whose membership moved).
Scope = Callable[["LiveSegment", Sequence[int], Mapping[int, set[str]]], set[int]]


def reevaluate(
    session: Session,
    settings: Settings,
    now: datetime,
    customer_ids: Iterable[int],
    kind: str,
    *,
    event_names: set[str] | None = None,
    new_events: NewEvents | None = None,
    new_orders: NewOrders | None = None,
    new_loyalty: NewLoyalty | None = None,
    index: SegmentIndex,
) -> dict[str, tuple[int, int]]:
    """Re-evaluate these customers against the segments a ``kind`` write can affect; returns entered/exited counts
    per segment that changed. For an events, orders or loyalty write, ``new_events``, ``new_orders`` or
    ``new_loyalty`` narrows it further, per customer and segment, by what the new rows can do to the rule's answer
    (:func:`rules.event_row_effect`, :func:`rules.order_effect`, :func:`rules.loyalty_effect`): nothing when they
    count for none of its activities and feed none of its fields; nothing either when they can only raise an answer
    that is already true (a member of "viewed at least 3 times" viewing again, of "spent over 1,000" ordering again)
    or only lower one already false. Those pairs keep their answer and their wake-up, which stays safe (never later
    than the new true change), and their snapshots are not even loaded."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    affected = index.reading(session, settings, now, kind, event_names)
    if not affected:
        return {}
    scope = None
    if new_events is not None:
        rows = written_event_rows(new_events.inserted, index.types)  # typed by the types current() just read
        scope = _changed_by(now, rows, new_events.rewritten, lambda s: s.event_effect)
    elif new_orders is not None:
        scope = _changed_by(now, new_orders.by_customer, new_orders.rewritten, lambda s: s.order_effect)
    elif new_loyalty is not None:
        scope = _changed_by(now, new_loyalty.by_customer, new_loyalty.rewritten, lambda s: s.loyalty_effect)
    return evaluate(session, settings, now, ids, affected, ChangeCause.data, index, scope, known=True)


#: Bulk writes to fewer customers than this read their pages themselves (:func:`read_ahead`).
READ_AHEAD_MIN_CUSTOMERS = 200


def read_ahead(
    reader: ReadAhead | None,
    session: Session,
    settings: Settings,
    now: datetime,
    kind: str,
    items: Sequence[Any],
    *,
    index: SegmentIndex,
    event_names: set[str] | None = None,
) -> None:
    """Before a bulk ``kind`` write of these items (each with its ``id`` and its ``customer``'s source id): read on
    ``reader``'s connections, in parallel, what the write and its re-evaluation will read of them, one customer at a
    time in the write's transaction (:class:`cohorta.db.ReadAhead`): the customers' ids, the items' existing rows, the
    summaries' sources (orders and loyalty writes refresh them), and for the segments the write can affect the
    customers' memberships, snapshots (what all those segments' rules read, event properties included), summary
    sums, months and wake-ups. Returns at once: the transaction, reading the same rows meanwhile, finds more and
    more of their pages in memory. A test holds every index the write searches to be searched here first."""
    wanted = sorted({item.customer for item in items})
    if reader is None or len(wanted) < READ_AHEAD_MIN_CUSTOMERS:
        return
    affected = index.reading(session, settings, now, kind, event_names)
    needs = _union([s.requirements for s in affected])
    read = sorted({s.id for s in affected}.union(*(s.uses for s in affected)))
    timed = sorted(s.id for s in affected if s.requirements.time_dependent)
    types = index.types
    model, id_column = ITEM_KEYS[kind]
    rows, people = table_of(model), table_of(Customer)

    def reads(source_ids: Sequence[str], own_ids: Sequence[str]) -> Callable[[Session], None]:
        def run(reading: Session) -> None:
            connection = reading.connection()
            ids = sorted(row["id"] for row in select_rows(connection, people, ("id",), {"source_id": source_ids}))
            if ids and kind in ("orders", "loyalty"):  # such writes refresh their customers' summaries
                read_summary_sources(connection, ids)
            with reading_ahead():  # the rows are read and dropped in the database
                for chunk in chunked(list(own_ids)):
                    select_rows(connection, rows, ("id",), {id_column: chunk})
                if not ids or not affected:
                    return
                memberships_of(reading, ids, read)
                load_snapshots(reading, ids, needs, types=types, known=True)
                # What a diff reads of the customers who move (whom only the write can tell): sums and months.
                send_summary_sums(connection, [tuple(ids)])()
                select_rows(connection, table_of(CustomerMonth), ("month",), {"customer_id": ids})
                if timed:
                    wakeups = {"segment_id": timed, "customer_id": ids}
                    select_rows(connection, table_of(SegmentWakeup), ("customer_id",), wakeups)
            read_event_properties_ahead(connection, ids, needs)

        return run

    parts = 2 * reader.threads  # smaller parts even out the threads' work
    size = -(-len(wanted) // parts)
    own = sorted({item.id for item in items})
    own_size = -(-len(own) // parts)
    reader.start([
        reads(wanted[i * size:(i + 1) * size], own[i * own_size:(i + 1) * own_size]) for i in range(parts)
    ])  # fmt: skip


def reevaluate_customers(session: Session, settings: Settings, now: datetime, changed: set[int], created: set[int],
                         *, index: SegmentIndex) -> None:  # fmt: skip
    """After a profile write: customers whose profile changed against the segments that read profiles; customers it
    created against every segment (any rule may hold for someone with no activity yet). In one pass when the write
    did both (a bulk write of new and known customers)."""
    if not created:
        reevaluate(session, settings, now, changed, "profile", index=index)
        return
    updated = changed - created
    reading_profiles = {s.id for s in index.reading(session, settings, now, "profile", None)} if updated else set()
    every_segment = index.reading(session, settings, now, "created", None)

    def scope(segment: LiveSegment, chunk: Sequence[int], _memberships: Mapping[int, set[str]]) -> set[int]:
        in_chunk = set(chunk)
        return in_chunk & created if segment.id not in reading_profiles else in_chunk & (created | updated)

    evaluate(session, settings, now, sorted(changed | created), every_segment, ChangeCause.data, index, scope,
             known=True)


def _changed_by(now: datetime, rows: Mapping[int, Sequence[Any]], rewritten: set[int],
                effect_in: Callable[[LiveSegment], Callable[[Any], rules.RowEffect] | None]) -> Scope:  # fmt: skip
    """The scope of a write that added these rows (by customer) and rewrote rows of ``rewritten``, given where a
    segment keeps what one new row does to its answer (``effect_in``; None: anything)."""
    # Per effect function, the customers whose new rows can change the answer, by how (variants of a rule share one
    # function): worked out once for the whole write.
    effects: dict[int, dict[rules.RowEffect, set[int]]] = {}
    # The chunk's customers and its members by segment, for the chunk in hand: the scope of ~20 segments per chunk of
    # 1,000 customers is then set operations, where a loop over (segment, customer) pairs cost a bulk events request
    # about 5%.
    last: tuple[Sequence[int], Mapping[int, set[str]], set[int], dict[str, set[int]]] | None = None

    def effects_of(effect_of: Callable[[Any], rules.RowEffect]) -> dict[rules.RowEffect, set[int]]:
        found = effects.get(id(effect_of))
        if found is None:
            found = {effect: set() for effect in rules.RowEffect}
            for cid, customer_rows in rows.items():
                effect = rules.RowEffect.NONE
                for row in customer_rows:
                    effect |= effect_of(row)
                found[effect].add(cid)
            effects[id(effect_of)] = found
        return found

    def chunk_sets(chunk: Sequence[int], memberships: Mapping[int, set[str]]) -> tuple[set[int], dict[str, set[int]]]:
        nonlocal last
        if last is None or last[0] is not chunk or last[1] is not memberships:
            members: dict[str, set[int]] = defaultdict(set)
            for cid, segment_ids in memberships.items():
                for segment_id in segment_ids:
                    members[segment_id].add(cid)
            last = (chunk, memberships, set(chunk), members)
        return last[2], last[3]

    def scope(segment: LiveSegment, chunk: Sequence[int], memberships: Mapping[int, set[str]]) -> set[int]:
        in_chunk, members_of = chunk_sets(chunk, memberships)
        out = in_chunk & rewritten  # a rewritten row may have removed one that counted
        effect_of = effect_in(segment)
        if effect_of is None:
            return out | (in_chunk & rows.keys())
        by_effect = effects_of(effect_of)
        members = members_of.get(segment.id, set())  # the chunk's members (memberships are the chunk's)
        # Rows that can only raise the answer change nothing for a member (outside its window nobody is a member,
        # whatever the answer: decided anyway); rows that can only lower it change nothing for a non-member.
        raised = by_effect[rules.RowEffect.RAISES] & in_chunk
        out |= raised - members if in_window(segment.starts_at, segment.expires_at, now) else raised
        out |= by_effect[rules.RowEffect.LOWERS] & members
        out |= by_effect[rules.RowEffect.ANY] & in_chunk
        return out

    return scope


def wake(session: Session, settings: Settings, now: datetime, due: Sequence[tuple[str, int]],
         *, index: SegmentIndex) -> dict[str, tuple[int, int]]:  # fmt: skip
    """Re-evaluate (segment, customer) pairs whose wake-up fell due (cause ``time``): each customer in the segments
    it is due in, and in the segments using those where its membership moved."""
    segments = index.current(session, settings, now)
    due_in: dict[str, set[int]] = defaultdict(set)
    for segment_id, customer_id in due:
        due_in[segment_id].add(customer_id)
    affected = _affected(segments, lambda s: s.id in due_in)
    return evaluate(session, settings, now, sorted({cid for _, cid in due}), affected, ChangeCause.time, index,
                    lambda segment, _chunk, _memberships: due_in.get(segment.id, set()))  # fmt: skip


def evaluate(
    session: Session,
    settings: Settings,
    now: datetime,
    ids: Sequence[int],
    affected: Sequence[LiveSegment],
    cause: ChangeCause,
    index: SegmentIndex,
    scope: Scope | None = None,
    *,
    known: bool = False,
) -> dict[str, tuple[int, int]]:
    """Decide membership of these customers in these segments now; apply the diff; plan their next wake-ups.
    ``scope`` (None: all of them) picks the customers each segment is decided for. ``known``: every id is a customer
    of this transaction (a write's own), so snapshots need not read the profile table to learn it
    (:func:`load_snapshots`); not so for due wake-ups, read before a concurrent delete may have committed."""
    if not affected or not ids:
        return {}
    needs = {} if scope is None else index.needs(affected)  # what a customer decided for one needs (see _alike)
    read = sorted({s.id for s in affected}.union(*(s.uses for s in affected)))  # memberships the rules look at
    # Inside its start/expiry window (the index holds active segments only); outside it nobody is a member.
    live = {s.id: in_window(s.starts_at, s.expires_at, now) for s in affected}
    changes: dict[str, tuple[int, int]] = {}
    chunks = list(chunked(list(ids), 1_000))
    with pipelined(session.connection()):  # the lock needs no answer: one round trip with the first memberships
        lock_segments(session, [s.id for s in affected])
        first_memberships = memberships_of(session, chunks[0], read)
    for number, chunk in enumerate(chunks):
        memberships = first_memberships if number == 0 else memberships_of(session, chunk, read)
        picked = None if scope is None else {s.id: scope(s, chunk, memberships) for s in affected}
        if picked is None:
            needed = chunk
        else:  # only customers some segment is decided for (a used segment's moves are among those)
            wanted = set().union(*picked.values())
            needed = [cid for cid in chunk if cid in wanted]
            if not needed:
                continue
        # every customer decided for every segment (no scope) needs all the segments read; else see _alike
        groups = [(list(needed), _union([s.requirements for s in affected]))] if picked is None else _alike(
            needed, picked, needs
        )
        snapshots: dict[int, rules.CustomerSnapshot] = {}
        for customers_alike, parts in groups:
            snapshots.update(
                load_snapshots(
                    session, customers_alike, parts, segment_ids=memberships, types=index.types, known=known
                )
            )
        # One mutable set per customer, shared with the snapshot: segments that use a segment see its changes.
        member_of: dict[int, set[str]] = {}
        for customer_id, snapshot in snapshots.items():
            member_of[customer_id] = set(snapshot.segment_ids)
            snapshot.segment_ids = member_of[customer_id]
        diffs: dict[str, tuple[list[int], list[int]]] = {}
        decided: dict[str, list[int]] = {}  # the customers each segment was decided for
        for segment in affected:
            if picked is None:
                customers = list(snapshots)
            else:
                chosen = set(picked[segment.id])
                for used in segment.uses:  # a used segment's moves, made earlier in this pass (dependency order)
                    moved = diffs.get(used)
                    if moved:
                        chosen.update(moved[0], moved[1])
                customers = [cid for cid in snapshots if cid in chosen]
            decided[segment.id] = customers
            predicate = segment.predicate(now, settings, index.catalog)
            entered, exited = [], []
            for customer_id in customers:
                should = live[segment.id] and predicate(snapshots[customer_id])
                member = segment.id in member_of[customer_id]
                if should and not member:
                    entered.append(customer_id)
                    member_of[customer_id].add(segment.id)
                elif member and not should:
                    exited.append(customer_id)
                    member_of[customer_id].discard(segment.id)
            if entered or exited:
                diffs[segment.id] = (entered, exited)
        planned, due = _wakeups_to_plan(affected, decided, snapshots, member_of, live, now, settings, index.catalog)
        if not diffs and not planned:
            continue
        figures = segment_figures(session, sorted(diffs)) if diffs else []
        rows = settle_diffs(session, [(f, *diffs[f.id]) for f in figures], cause=cause, now=now)
        for f, counts in zip(figures, rows.counts, strict=True):
            previous = changes.get(f.id, (0, 0))
            changes[f.id] = (previous[0] + counts[0], previous[1] + counts[1])
        with pipelined(session.connection()):  # writes needing no answer: one round trip on PostgreSQL
            write_diff_rows(session, rows)
            store_figures(session, figures)
            plan_wakeups(session, planned, due)
    return changes


def _wakeups_to_plan(
    affected: Sequence[LiveSegment],
    decided: Mapping[str, Sequence[int]],
    snapshots: Mapping[int, rules.CustomerSnapshot],
    member_of: Mapping[int, set[str]],
    live: Mapping[str, bool],
    now: datetime,
    settings: Settings,
    catalog: rules.Catalog,
) -> tuple[dict[str, list[int]], dict[tuple[str, int], datetime | None]]:
    """The (segment, customer) pairs decided now whose wake-up must be planned again, and when each is due."""
    planned: dict[str, list[int]] = {}
    due: dict[tuple[str, int], datetime | None] = {}
    for segment in affected:
        if not segment.requirements.time_dependent or not decided[segment.id]:
            continue
        ctx, cache, kept = segment.next_change_tools(now, settings, catalog)
        if not live[segment.id]:
            kept = None  # membership is not the rule's answer outside the segment's window
        for cid in decided[segment.id]:
            snapshot = snapshots[cid]
            # An answer only an arriving row can change (a non-member of "viewed at least 3 times in 30 days" with
            # no view after now): no wake-up to plan, and one stored earlier can only be early. Most pairs of a bulk
            # events write are such; the walk cost a fifth of the request.
            if kept is not None and kept.keeps(snapshot, segment.id in member_of[cid]):
                continue
            planned.setdefault(segment.id, []).append(cid)
            due[segment.id, cid] = next_wakeup(segment, snapshot, ctx, cache)
    return planned, due


def next_wakeup(
    segment: LiveSegment, snapshot: rules.CustomerSnapshot, ctx: rules.Context, cache: rules.NextChangeCache
) -> datetime | None:
    """When this customer's answer in the segment may next change by time alone; ``cache``: one per segment and
    context, shared across its customers."""
    # The segment's own start and expiry are handled by jobs.queue_window_edges for every type of segment.
    return rules.next_change(segment.rule, snapshot, ctx, cache)


def plan_wakeups(
    session: Session,
    customers: Mapping[str, Sequence[int]],
    due: dict[tuple[str, int], datetime | None],
) -> None:
    """Replace the wake-ups of these customers in these segments (segment -> customers) by ``due`` ((segment,
    customer) -> instant; missing or None: the answer cannot change by time alone). Segments with the same customers
    share one delete; one insert for all."""
    table = table_of(SegmentWakeup)
    sharing: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for segment_id, ids in customers.items():
        sharing[tuple(sorted(ids))].append(segment_id)
    for ids, segment_ids in sharing.items():
        for chunk in chunked(list(ids), 1_000):
            delete_rows(session.connection(), table, {"segment_id": sorted(segment_ids), "customer_id": chunk})
    insert_rows(
        session.connection(),
        table,
        [{"segment_id": sid, "customer_id": cid, "due_at": at} for (sid, cid), at in sorted(due.items()) if at],
    )


def _affected(segments: Sequence[LiveSegment], reads: Callable[[LiveSegment], bool]) -> list[LiveSegment]:
    """Segments that ``reads`` picks, and every segment that uses one of them (in dependency order)."""
    hit: set[str] = set()
    for segment in segments:  # dependency order: a user comes after what it uses
        if reads(segment) or segment.uses & hit:
            hit.add(segment.id)
    return [s for s in segments if s.id in hit]


def _needs(affected: Sequence[LiveSegment]) -> dict[str, rules.Requirements]:
    """Per segment, what a customer decided for it needs in their snapshot: its own requirements and those of the
    segments using it (they are decided for the customers whose membership in it moves)."""
    needs: dict[str, rules.Requirements] = {}
    for segment in reversed(affected):  # users come after what they use
        users = [needs[u.id] for u in affected if segment.id in u.uses and u.id in needs]
        needs[segment.id] = _union([segment.requirements, *users])
    return needs


def _alike(
    customers: Sequence[int], picked: Mapping[str, set[int]], needs: Mapping[str, rules.Requirements]
) -> list[tuple[list[int], rules.Requirements]]:
    """The customers grouped by what their snapshots must hold, given the segments each is decided for: a bulk
    events write decides most customers for a few product-view segments only, which need none of the orders,
    attributes or other events that the newsletter segments beside them read."""
    decided_for: dict[int, list[str]] = defaultdict(list)
    for segment_id, ids in picked.items():
        for cid in ids:
            decided_for[cid].append(segment_id)
    by_segments: dict[frozenset[str], list[int]] = defaultdict(list)
    for cid in customers:
        by_segments[frozenset(decided_for[cid])].append(cid)
    by_parts: dict[Any, tuple[list[int], rules.Requirements]] = {}
    for segment_ids, group in by_segments.items():
        parts = _union([needs[sid] for sid in segment_ids])
        key = (frozenset(parts.activities), frozenset(parts.events), frozenset(parts.fields),
               frozenset(parts.earliest_activity.items()))  # fmt: skip
        found = by_parts.setdefault(key, ([], parts))
        found[0].extend(group)
    return list(by_parts.values())


def _union(requirements: Sequence[rules.Requirements]) -> rules.Requirements:
    union = rules.Requirements()
    for r in requirements:
        union.activities |= r.activities
        union.events |= r.events
        union.fields |= r.fields
        union.segments |= r.segments
        for kind, since in r.earliest_activity.items():
            if kind in union.earliest_activity:
                current = union.earliest_activity[kind]
                union.earliest_activity[kind] = None if current is None or since is None else min(current, since)
            else:
                union.earliest_activity[kind] = since
    if any(r.events == set() and "events" in r.activities for r in requirements):
        union.events = set()  # some rule counts every event: load them all
    return union


def memberships_of(
    session: Session, customer_ids: Sequence[int], segment_ids: Sequence[str] | None = None
) -> dict[int, set[str]]:
    """The segments each customer is a member of (only ``segment_ids`` when given: a customer is in about half of
    200 segments, and reading them all cost a bulk write more than its rules needed)."""
    members = table_of(SegmentMember)
    found: dict[int, set[str]] = defaultdict(set)
    any_of: dict[str, Sequence[Any]] = {"customer_id": customer_ids}
    if segment_ids is not None:
        any_of = {"segment_id": segment_ids, **any_of}
    for row in select_rows(session.connection(), members, ("customer_id", "segment_id"), any_of):
        found[row["customer_id"]].add(row["segment_id"])
    return found


def lock_segments(session: Session, segment_ids: Sequence[str]) -> None:
    """Serialise with recomputes of the same segments (PostgreSQL row locks; SQLite has one writer anyway), so
    neither overwrites the other's changes. Always in the order of their ids, so two writes never wait on each other
    in a cycle. Through the driver: an order locks about 60 segments, and SQLAlchemy's expanded ``IN`` list cost
    more than the statement (2.3 of 3.2 ms per order at 100,000 customers)."""
    if session.get_bind().dialect.name == "postgresql" and segment_ids:
        driver_cursor(session.connection()).execute(
            "SELECT id FROM segments WHERE id = ANY(%s::varchar[]) ORDER BY id FOR UPDATE",
            [array_literal(sorted(segment_ids))],
        )
