"""The lineage graph in plain SQL tables, traversed with recursive CTEs (the embedded
default; Neo4j holds the same graph at scale)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Boolean, Column, Index, MetaData, String, Table, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modeldb.event_schema import RecordedEvent
from modeldb.projectors.base import SqlProjection
from modeldb.projectors.db import upsert
from modeldb.projectors.lineage import (
    Direction,
    Edge,
    GraphStore,
    LineageGraph,
    Node,
    check_lineage_args,
    graph_changes,
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
        changes = graph_changes(e.event for e in events)
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
    ) -> LineageGraph:
        check_lineage_args(direction, depth)
        near, far = ("source", "target") if direction == "UPSTREAM" else ("target", "source")
        kinds = list(edge_kinds or [])
        kind_filter = "AND e.kind IN :kinds" if kinds else ""
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
        params: dict[str, object] = {"start": start, "depth": depth}
        if kinds:
            walk = walk.bindparams(bindparam("kinds", expanding=True))
            params["kinds"] = kinds
        async with self.engine.connect() as conn:
            visited = [row[0] for row in await conn.execute(walk, params)]
            nodes = await _nodes(conn, visited)
            if not nodes:
                return LineageGraph()
            edges = await _edges_within(conn, visited, kinds)
        return LineageGraph(nodes, edges)


async def _nodes(conn: AsyncConnection, ids: list[str]) -> list[Node]:
    found: list[Node] = []
    for start in range(0, len(ids), 500):
        rows = await conn.execute(
            select(graph_nodes.c.id, graph_nodes.c.kind, graph_nodes.c.name)
            .where(graph_nodes.c.id.in_(ids[start : start + 500]))
        )
        found.extend(Node(*row) for row in rows)
    return sorted(found, key=lambda n: n.id)


async def _edges_within(conn: AsyncConnection, ids: list[str], kinds: list[str]) -> list[Edge]:
    members = set(ids)
    found: set[Edge] = set()
    for start in range(0, len(ids), 500):
        query = select(graph_edges).where(graph_edges.c.source.in_(ids[start : start + 500]))
        if kinds:
            query = query.where(graph_edges.c.kind.in_(kinds))
        for source, target, kind in await conn.execute(query):
            if target in members:
                found.add(Edge(source, target, kind))
    return sorted(found, key=lambda e: (e.source, e.target, e.kind))


def sql_graph(engine: AsyncEngine) -> SqlGraph:
    return SqlGraph(engine)
