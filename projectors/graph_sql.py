"""The lineage graph in plain SQL tables (the embedded default; Neo4j holds the same graph
at scale), traversed with a recursive CTE, or level by level when a node limit bounds it."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import orjson
from sqlalchemy import Boolean, Column, Index, MetaData, String, Table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modeldb.event_schema import RecordedEvent
from modeldb.projectors.base import SqlProjection
from modeldb.projectors.db import is_postgres, upsert
from modeldb.projectors.lineage import (
    Direction,
    Edge,
    GraphStore,
    LineageGraph,
    Node,
    bounded_walk,
    check_lineage_args,
    graph_changes,
    lineage_events,
)

metadata = MetaData()
graph_nodes = Table(
    "graph_nodes",
    metadata,
    Column("id", String(760), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("name", String(760), nullable=False),
    Column("placeholder", Boolean, nullable=False),  # referred to, not yet defined
)
graph_edges = Table(
    "graph_edges",
    metadata,
    Column("source", String(760), primary_key=True),
    Column("target", String(760), primary_key=True),
    Column("kind", String(20), primary_key=True),
    Index("graph_edges_by_target", "target", "kind", "source"),
)


class SqlGraph(SqlProjection, GraphStore):
    name = "graph"
    metadata = metadata

    async def apply_events(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        changes = graph_changes(lineage_events(events))
        real = [{"id": n.id, "kind": n.kind, "name": n.name, "placeholder": False}
                for n in changes.nodes.values()]
        refs = [{"id": n.id, "kind": n.kind, "name": n.name, "placeholder": True}
                for n in changes.refs.values() if n.id not in changes.nodes]
        # A definition overwrites a placeholder; a reference never overwrites anything.
        await upsert(conn, graph_nodes, real, ["id"], ["kind", "name", "placeholder"])
        await upsert(conn, graph_nodes, refs, ["id"])
        edges = [{"source": e.source, "target": e.target, "kind": e.kind} for e in changes.edges]
        await upsert(conn, graph_edges, sorted(edges, key=lambda r: tuple(r.values())),
                     ["source", "target", "kind"])

    async def lineage(
        self,
        start: str,
        direction: Direction = "UPSTREAM",
        depth: int = 5,
        edge_kinds: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> LineageGraph:
        check_lineage_args(direction, depth, limit)
        kinds = list(edge_kinds or [])
        async with self.engine.connect() as conn:
            ids = _IdSets(conn)
            if limit is None:
                visited, truncated = await _closure(conn, ids, start, direction, depth, kinds), False
            else:
                visited, truncated = await bounded_walk(
                    start, depth, limit, partial(_step, conn, ids, direction, kinds))
            nodes = await _nodes(conn, ids, visited)
            if not nodes:
                return LineageGraph()
            edges = await _edges_within(conn, ids, visited, kinds)
        return LineageGraph(nodes, edges, truncated)


class _IdSets:
    """A list of strings as ONE bound parameter that SQL reads as a set (`col IN <set>`):
    a JSON array through `json_each` on SQLite, an array on PostgreSQL. Unlike an expanding
    IN, no statement grows with the list, needs chunking under the bound-parameter limits,
    or costs SQLAlchemy a per-parameter compile on every call."""

    def __init__(self, conn: AsyncConnection):
        self.postgres = is_postgres(conn)

    def set(self, name: str) -> str:
        if self.postgres:
            return f"(SELECT unnest(CAST(:{name} AS VARCHAR[])))"
        return f"(SELECT value FROM json_each(:{name}))"

    def param(self, values: Sequence[str]) -> object:
        return list(values) if self.postgres else orjson.dumps(list(values)).decode()

    def kind_filter(self, kinds: list[str], params: dict[str, object], alias: str = "") -> str:
        if not kinds:
            return ""
        params["kinds"] = self.param(kinds)
        return f"AND {alias}kind IN {self.set('kinds')}"


async def _closure(conn: AsyncConnection, ids: _IdSets, start: str, direction: Direction, depth: int,
                   kinds: list[str]) -> list[str]:
    """Everything within `depth` hops, in one recursive query (no limit: nothing to stop for)."""
    near, far = ("source", "target") if direction == "UPSTREAM" else ("target", "source")
    params: dict[str, object] = {"start": start, "depth": depth}
    kind_filter = ids.kind_filter(kinds, params, "e.")
    walk = text(f"""
        WITH RECURSIVE walk(node, depth) AS (
            SELECT CAST(:start AS VARCHAR(760)), 0
            UNION
            SELECT e.{far}, w.depth + 1
            FROM graph_edges e JOIN walk w ON e.{near} = w.node
            WHERE w.depth < :depth {kind_filter}
        )
        SELECT DISTINCT node FROM walk
    """)
    return [row[0] for row in await conn.execute(walk, params)]


async def _step(conn: AsyncConnection, ids: _IdSets, direction: Direction, kinds: list[str],
                frontier: list[str], seen: set[str], want: int | None) -> list[str]:
    """One level of `bounded_walk`: the neighbours of `frontier`, smallest ids first.

    A recursive CTE with a LIMIT cannot stop early (its UNION and the final DISTINCT see
    the whole closure first), so the walk goes level by level and each level's query stops
    after enough rows: `want` new ones plus however many seen ones may sort before them.
    Ordered by code point, as Python and Neo4j order ids ("C" collation on PostgreSQL), so
    that every store cuts a level at the same node."""
    near, far = ("source", "target") if direction == "UPSTREAM" else ("target", "source")
    params: dict[str, object] = {"frontier": ids.param(frontier)}
    kind_filter = ids.kind_filter(kinds, params)
    order = ""
    if want is not None:
        order = "ORDER BY node LIMIT :n"
        params["n"] = want + len(seen)
    collate = ' COLLATE "C"' if ids.postgres else ""
    query = text(f"SELECT DISTINCT {far}{collate} AS node FROM graph_edges "
                 f"WHERE {near} IN {ids.set('frontier')} {kind_filter} {order}")
    return [row[0] for row in await conn.execute(query, params)]


async def _nodes(conn: AsyncConnection, ids: _IdSets, members: list[str]) -> list[Node]:
    # On SQLite, CROSS JOIN fixes the loop order: one primary-key probe per listed id.
    query = ("SELECT id, kind, name FROM graph_nodes WHERE id IN (SELECT unnest(CAST(:ids AS VARCHAR[])))"
             if ids.postgres else
             "SELECT n.id, n.kind, n.name FROM json_each(:ids) AS j "
             "CROSS JOIN graph_nodes AS n ON n.id = j.value")
    rows = await conn.execute(text(query), {"ids": ids.param(members)})
    return sorted((Node(*row) for row in rows), key=lambda n: n.id)


async def _edges_within(conn: AsyncConnection, ids: _IdSets, members: list[str],
                        kinds: list[str]) -> list[Edge]:
    params: dict[str, object] = {"ids": ids.param(members)}
    kind_filter = ids.kind_filter(kinds, params, "e.")
    if ids.postgres:
        query = (f"SELECT source, target, kind FROM graph_edges AS e WHERE source IN {ids.set('ids')} "
                 f"AND target IN {ids.set('ids')} {kind_filter}")
    else:
        # The edges out of each member (by the primary key), kept when the target is a member
        # too. `+` keeps SQLite from reading the target end through its index instead: for a
        # hub that would mean every edge into it.
        query = ("SELECT e.source, e.target, e.kind FROM json_each(:ids) AS j CROSS JOIN graph_edges AS e "
                 f"ON e.source = j.value WHERE +e.target IN {ids.set('ids')} {kind_filter}")
    rows = await conn.execute(text(query), params)
    # Each stored edge comes once (the primary key): no dedupe.
    return sorted((Edge(*row) for row in rows), key=lambda e: (e.source, e.target, e.kind))


def sql_graph(engine: AsyncEngine) -> SqlGraph:
    return SqlGraph(engine)
