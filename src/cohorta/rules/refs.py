"""Node ids, segment references and cycle detection."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .model import Activity, And, Condition, InSegment, NodeType, Not, Or, Rule, walk


def assign_ids(rule: Rule) -> Rule:
    """A copy of ``rule`` where every node (``where`` conditions included) has an id.

    Nodes that already have one keep it; the others get ``n1``, ``n2`` ... in pre-order, skipping ids in use, so the
    result is deterministic and never reuses an existing id.
    """
    used = {n.id for n in walk(rule.root) if n.id is not None}
    counter = 0

    def fresh() -> str:
        nonlocal counter
        while True:
            counter += 1
            nid = f"n{counter}"
            if nid not in used:
                used.add(nid)
                return nid

    def visit(n: NodeType) -> NodeType:
        nid = n.id if n.id is not None else fresh()
        if isinstance(n, And):
            return n.model_copy(update={"id": nid, "and_": [visit(c) for c in n.and_]})
        if isinstance(n, Or):
            return n.model_copy(update={"id": nid, "or_": [visit(c) for c in n.or_]})
        if isinstance(n, Not):
            return n.model_copy(update={"id": nid, "not_": visit(n.not_)})
        if isinstance(n, Activity):
            node = n.model_copy(update={"id": nid})
            where: list[Condition] = []
            for w in n.where:
                where.append(w.model_copy(update={"id": w.id if w.id is not None else fresh()}))
            return node.model_copy(update={"where": where})
        return n.model_copy(update={"id": nid})

    return Rule(visit(rule.root))


def strip_ids(rule: Rule) -> Rule:
    """A copy without any node ids."""
    def visit(n: NodeType) -> NodeType:
        if isinstance(n, And):
            return n.model_copy(update={"id": None, "and_": [visit(c) for c in n.and_]})
        if isinstance(n, Or):
            return n.model_copy(update={"id": None, "or_": [visit(c) for c in n.or_]})
        if isinstance(n, Not):
            return n.model_copy(update={"id": None, "not_": visit(n.not_)})
        if isinstance(n, Activity):
            return n.model_copy(update={"id": None, "where": [w.model_copy(update={"id": None}) for w in n.where]})
        return n.model_copy(update={"id": None})

    return Rule(visit(rule.root))


def segment_references(rule: Rule | NodeType) -> set[str]:
    """Ids of the segments a rule refers to with ``in_segment``."""
    root = rule.root if isinstance(rule, Rule) else rule
    return {n.in_segment for n in walk(root) if isinstance(n, InSegment)}


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle in a segment -> referenced segments graph, as ``[a, b, ..., a]``, or None.

    Callers refuse to save a rule whose segment would then be on a cycle.
    """
    white, grey, black = 0, 1, 2
    color: dict[str, int] = {}
    for start in sorted(graph):
        if color.get(start, white) != white:
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph.get(start, ())))]
        path = [start]
        color[start] = grey
        while stack:
            node, todo = stack[-1]
            if not todo:
                color[node] = black
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop(0)
            state = color.get(nxt, white)
            if state == grey:
                return [*path[path.index(nxt):], nxt]
            if state == white:
                color[nxt] = grey
                path.append(nxt)
                stack.append((nxt, sorted(graph.get(nxt, ()))))
    return None
