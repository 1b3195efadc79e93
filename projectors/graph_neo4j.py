"""The lineage graph in Neo4j (the store at scale; SQL tables are the embedded default).

What the database holds:
- one node per lineage node, `(:Entity:<Kind> {id, kind, name, placeholder})`, `id` unique;
- one relationship per edge, typed by its kind (USED, GENERATED_BY, …), from effect to cause;
- `(:AppliedEvent {projection, event_id})` per applied event, for idempotency;
- `(:Checkpoint {projection, part, position})` per log partition.

Nodes and edges come from `graph_changes`, as for `SqlGraph`, and `lineage` answers exactly
as `SqlGraph.lineage` does. Labels and relationship types cannot be query parameters, so
they are formatted into the Cypher text, but only from the fixed kind lists in
`modeldb.event_schema.nodes`, never from anything a caller or an event supplies.

URL: `bolt://[user:password@]host:port[/database]` (or `neo4j://…`); no user means auth off,
no database means the server's default one.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson
from neo4j import (
    AsyncDriver,
    AsyncGraphDatabase,
    AsyncManagedTransaction,
    AsyncSession,
    NotificationDisabledClassification,
)

from modeldb.event_schema import RecordedEvent
from modeldb.event_schema.nodes import EDGE_KINDS, NODE_KINDS
from modeldb.projectors.base import Projection
from modeldb.projectors.lineage import (
    Direction,
    Edge,
    GraphChanges,
    GraphStore,
    LineageGraph,
    Node,
    bounded_walk,
    check_lineage_args,
    graph_changes,
    lineage_events,
)
from modeldb.writer.log import Batch, Checkpoint

DELETE_BATCH = 10_000  # rows per inner transaction in reset: bounded memory on any graph size

# Uniqueness constraints double as the indexes every MERGE and lookup uses.
_CONSTRAINTS = {
    "entity_id": "CREATE CONSTRAINT entity_id IF NOT EXISTS FOR (n:Entity) REQUIRE n.id IS UNIQUE",
    "applied_event_id": "CREATE CONSTRAINT applied_event_id IF NOT EXISTS "
    "FOR (a:AppliedEvent) REQUIRE (a.projection, a.event_id) IS UNIQUE",
    "checkpoint_part": "CREATE CONSTRAINT checkpoint_part IF NOT EXISTS "
    "FOR (c:Checkpoint) REQUIRE (c.projection, c.part) IS UNIQUE",
}

_SEEN = """
UNWIND $ids AS id
MATCH (a:AppliedEvent {projection: $projection, event_id: id})
RETURN a.event_id AS id
"""
_MARK_APPLIED = """
UNWIND $ids AS id
MERGE (:AppliedEvent {projection: $projection, event_id: id})
"""
# Merged per partition, never replaced: other partitions' consumers own the other rows.
_SAVE_CHECKPOINT = """
UNWIND $parts AS row
MERGE (c:Checkpoint {projection: $projection, part: row.part})
SET c.position = row.position
"""
_LOAD_CHECKPOINT = """
MATCH (c:Checkpoint {projection: $projection})
RETURN c.part AS part, c.position AS position
"""

# One statement per node kind and per edge kind, all built here from the whitelists.
# A definition overwrites whatever a reference left; a reference never overwrites anything.
_MERGE_NODES = {
    kind: f"""
UNWIND $rows AS row
MERGE (n:Entity {{id: row.id}})
SET n:{kind}, n.kind = row.kind, n.name = row.name, n.placeholder = false
"""
    for kind in NODE_KINDS
}
_MERGE_REFS = {
    kind: f"""
UNWIND $rows AS row
MERGE (n:Entity {{id: row.id}})
ON CREATE SET n:{kind}, n.kind = row.kind, n.name = row.name, n.placeholder = true
"""
    for kind in NODE_KINDS
}
# Both ends exist by now: graph_changes names every edge end as a node or a reference.
_MERGE_EDGES = {
    kind: f"""
UNWIND $rows AS row
MATCH (s:Entity {{id: row.source}})
MATCH (t:Entity {{id: row.target}})
MERGE (s)-[:{kind}]->(t)
"""
    for kind in EDGE_KINDS
}


class Neo4jGraph(Projection, GraphStore):
    """The graph projection and traversal over one Neo4j database."""

    name = "graph"

    def __init__(self, url: str):
        self.url = url
        self._uri, self._auth, self._database = connection_params(url)
        self._driver: AsyncDriver | None = None

    # -- connection ------------------------------------------------------------------------

    def _session(self) -> AsyncSession:
        # Created on first use, inside the event loop that will use it: the async driver's
        # pool belongs to one loop.
        if self._driver is None:
            self._driver = AsyncGraphDatabase.driver(
                self._uri,
                auth=self._auth,
                # Our queries are fixed and legitimately name properties an empty graph has
                # never seen; the server's "property key does not exist" would only be noise.
                notifications_disabled_classifications=[NotificationDisabledClassification.UNRECOGNIZED],
            )
        return self._driver.session(database=self._database)

    async def close(self) -> None:
        if self._driver is not None:
            await self._driver.close()
            self._driver = None

    # -- Projection --------------------------------------------------------------------------

    async def setup(self) -> None:
        async with self._session() as session:
            # Runs before every catch-up: look first, so that existing constraints cost one
            # query and no "already exists" notice in the server's and our logs.
            result = await session.run("SHOW CONSTRAINTS YIELD name")
            existing = {record["name"] async for record in result}
            for name, statement in _CONSTRAINTS.items():
                if name not in existing:  # IF NOT EXISTS still covers a concurrent setup
                    await (await session.run(statement)).consume()

    async def load_checkpoint(self) -> Checkpoint | None:
        async with self._session() as session:
            result = await session.run(_LOAD_CHECKPOINT, {"projection": self.name})
            checkpoint = {record["part"]: record["position"] async for record in result}
        return checkpoint or None

    async def apply(self, batch: Batch) -> None:
        async with self._session() as session:
            await session.execute_write(self._apply, batch)

    async def _apply(self, tx: AsyncManagedTransaction, batch: Batch) -> None:
        # A managed transaction: the driver may run this again after a transient error
        # (deadlock, leader switch), so it changes nothing outside the transaction.
        fresh = await self._unseen(tx, batch.events)
        if fresh:
            await _run(tx, _MARK_APPLIED, projection=self.name,
                       ids=sorted(e.raw["event_id"] for e in fresh))
            await _write_changes(tx, graph_changes(lineage_events(fresh)))
        if batch.checkpoint:
            await _run(tx, _SAVE_CHECKPOINT, projection=self.name, parts=[
                {"part": part, "position": position} for part, position in batch.checkpoint.items()])

    async def _unseen(self, tx: AsyncManagedTransaction, events: list[RecordedEvent]) -> list[RecordedEvent]:
        ids = list({e.raw["event_id"] for e in events})
        result = await tx.run(_SEEN, {"projection": self.name, "ids": ids})
        seen: set[str] = {record["id"] async for record in result}
        fresh: list[RecordedEvent] = []
        for event in events:
            event_id = event.raw["event_id"]
            if event_id not in seen:
                seen.add(event_id)  # a duplicate inside one batch counts too
                fresh.append(event)
        return fresh

    async def reset(self) -> None:
        # Not one transaction (a big graph would not fit in one), so the order is what keeps
        # an interrupted reset safe: the checkpoint goes first (a restart replays from zero),
        # the dedupe marks next (so no replayed event is skipped), the graph last (replay
        # MERGEs whatever is left). Relationships before nodes, so that deleting a node with
        # a million relationships never lands in a single inner transaction.
        statements = (
            "MATCH (c:Checkpoint {projection: $projection}) DELETE c",
            "MATCH (a:AppliedEvent {projection: $projection}) "
            f"CALL (a) {{ DELETE a }} IN TRANSACTIONS OF {DELETE_BATCH} ROWS",
            f"MATCH (:Entity)-[r]->() CALL (r) {{ DELETE r }} IN TRANSACTIONS OF {DELETE_BATCH} ROWS",
            f"MATCH (n:Entity) CALL (n) {{ DETACH DELETE n }} IN TRANSACTIONS OF {DELETE_BATCH} ROWS",
        )
        async with self._session() as session:
            for statement in statements:
                # CALL … IN TRANSACTIONS needs an auto-commit transaction: session.run.
                await (await session.run(statement, {"projection": self.name})).consume()

    async def digest(self) -> str:
        """The bytes `SqlGraph.digest()` hashes on SQLite for the same graph, so the stores
        can be compared directly. (Neo4j sorts strings by UTF-16 units, SQLite by code points:
        they differ only for ids mixing characters above U+FFFF with ones in U+E000-U+FFFF.)"""
        hasher = hashlib.sha256()
        async with self._session() as session:
            hasher.update(b"graph_edges")
            edges = await session.run(
                "MATCH (s:Entity)-[r]->(t:Entity) RETURN s.id, t.id, type(r) "
                "ORDER BY s.id, t.id, type(r)")
            async for record in edges:
                hasher.update(orjson.dumps(list(record.values())))
            hasher.update(b"graph_nodes")
            nodes = await session.run(
                "MATCH (n:Entity) RETURN n.id, n.kind, n.name, n.placeholder ORDER BY n.id")
            async for record in nodes:
                hasher.update(orjson.dumps(list(record.values())))
        return hasher.hexdigest()

    # -- GraphStore --------------------------------------------------------------------------

    async def lineage(
        self,
        start: str,
        direction: Direction = "UPSTREAM",
        depth: int = 5,
        edge_kinds: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> LineageGraph:
        check_lineage_args(direction, depth, limit)
        # Only whitelisted kinds reach the query text; unknown ones match nothing, as in SQL.
        kinds = [k for k in EDGE_KINDS if not edge_kinds or k in edge_kinds]
        async with self._session() as session:
            return await session.execute_read(_lineage, start, direction, depth, kinds, limit)


def lineage_cypher(direction: Direction, depth: int, kinds: Sequence[str], capped: bool = False) -> str:
    """The one query behind `lineage`: the nodes within `depth` hops, each with its
    outgoing edges of the chosen kinds. Arguments must already be checked (see `lineage`).

    `MATCH (s)-[*0..depth]->(n)` followed by nothing but `DISTINCT n` is planned as a
    breadth-first expand that prunes nodes already reached (`VarLengthExpand(Pruning,BFS)`),
    so it touches each node and relationship at most once instead of enumerating every path
    through the diamonds lineage is full of, and costs one round trip instead of one per
    level. The contract suite checks the plan, so a server that plans it otherwise is noticed.
    The answer comes back as one collected row: the Python driver spends far longer per
    record than the server spends per node, so thousands of records would triple the time.
    `capped`: stop after `$cap` distinct nodes (whichever the expand meets first), and
    answer null instead of the nodes when it did stop there (so, without reading their edges).
    """
    if not kinds or depth == 0:
        reach = "MATCH (n:Entity {id: $start})"
    else:
        types = "|".join(kinds)
        arrow = f"-[:{types}*0..{depth}]->" if direction == "UPSTREAM" else f"<-[:{types}*0..{depth}]-"
        reach = f"MATCH (s:Entity {{id: $start}}) MATCH (s){arrow}(n) WITH DISTINCT n"
        if capped:
            return (f"{reach} LIMIT $cap WITH collect(n) AS reached RETURN CASE WHEN size(reached) < $cap "
                    f"THEN [n IN reached | [n.id, n.kind, n.name, {_out(kinds)}]] END AS nodes")
    return f"{reach} RETURN collect([n.id, n.kind, n.name, {_out(kinds)}]) AS nodes"


def _out(kinds: Sequence[str]) -> str:
    """Cypher for node `n`'s outgoing edges of the chosen kinds, as [target id, kind] pairs."""
    return f"[(n)-[r:{'|'.join(kinds)}]->(m) | [m.id, type(r)]]" if kinds else "[]"


def level_cypher(direction: Direction, kinds: Sequence[str]) -> str:
    """One level of `bounded_walk`: the `$want` smallest ids one hop from `$frontier`, as one
    collected row (one record per id would cost the driver more than the query)."""
    arrow = f"-[:{'|'.join(kinds)}]->" if direction == "UPSTREAM" else f"<-[:{'|'.join(kinds)}]-"
    return (f"UNWIND $frontier AS id MATCH (:Entity {{id: id}}){arrow}(m:Entity) "
            "WITH DISTINCT m.id AS found ORDER BY found LIMIT $want RETURN collect(found) AS found")


def nodes_cypher(kinds: Sequence[str]) -> str:
    """The nodes `$ids`, each with its outgoing edges of the chosen kinds to other nodes of
    `$ids` (filtered here: fewer values for the driver to decode), as one collected row."""
    out = f"[(n)-[r:{'|'.join(kinds)}]->(m) WHERE m.id IN $ids | [m.id, type(r)]]" if kinds else "[]"
    return (f"UNWIND $ids AS id MATCH (n:Entity {{id: id}}) "
            f"RETURN collect([n.id, n.kind, n.name, {out}]) AS nodes")


async def _lineage(
    tx: AsyncManagedTransaction, start: str, direction: Direction, depth: int, kinds: list[str],
    limit: int | None,
) -> LineageGraph:
    # One round trip answers whenever the whole reach fits the limit (most starts); only
    # when it does not is the walk redone level by level, to pick the nearest nodes.
    query = lineage_cypher(direction, depth, kinds, capped=limit is not None)
    result = await tx.run(query, {"start": start, "cap": (limit or 0) + 1})
    found: list[list[Any]] | None = (await result.single(strict=True))["nodes"]
    truncated = False
    if found is None:  # more than `limit` nodes within reach
        async def step(frontier: list[str], seen: set[str], want: int | None) -> list[str]:
            result = await tx.run(level_cypher(direction, kinds),
                                  {"frontier": frontier, "want": (want or 0) + len(seen)})
            found: list[str] = (await result.single(strict=True))["found"]
            return found

        walked, truncated = await bounded_walk(start, depth, limit, step)
        result = await tx.run(nodes_cypher(kinds), {"ids": walked})
        found = (await result.single(strict=True))["nodes"]
    return _graph(found, truncated)


def _graph(found: list[list[Any]], truncated: bool) -> LineageGraph:
    reached = {node_id for node_id, _, _, _ in found}
    nodes = [Node(node_id, kind, name) for node_id, kind, name, _ in found]
    # An edge is kept when both ends were returned, whatever the direction: as in SqlGraph.
    edges = {Edge(source, target, kind)
             for source, _, _, out in found for target, kind in out if target in reached}
    return LineageGraph(sorted(nodes, key=lambda n: n.id),
                        sorted(edges, key=lambda e: (e.source, e.target, e.kind)), truncated)


async def _write_changes(tx: AsyncManagedTransaction, changes: GraphChanges) -> None:
    # Rows sorted by id: concurrent writers (one per Kafka partition) then take their locks
    # in the same order, which keeps deadlocks rare.
    for kind, rows in _by_kind(changes.nodes.values()).items():
        await _run(tx, _MERGE_NODES[kind], rows=rows)
    refs = (n for n in changes.refs.values() if n.id not in changes.nodes)
    for kind, rows in _by_kind(refs).items():
        await _run(tx, _MERGE_REFS[kind], rows=rows)
    edges: dict[str, list[dict[str, str]]] = defaultdict(list)
    for edge in sorted(changes.edges, key=lambda e: (e.source, e.target, e.kind)):
        edges[edge.kind].append({"source": edge.source, "target": edge.target})
    for kind, rows in edges.items():
        await _run(tx, _MERGE_EDGES[kind], rows=rows)


def _by_kind(nodes: Iterable[Node]) -> dict[str, list[dict[str, str]]]:
    grouped: dict[str, list[dict[str, str]]] = defaultdict(list)
    for node in sorted(nodes, key=lambda n: n.id):
        grouped[node.kind].append({"id": node.id, "kind": node.kind, "name": node.name})
    return grouped


async def _run(tx: AsyncManagedTransaction, query: str, **parameters: Any) -> None:
    # Consumed at once so that an error surfaces at the statement that caused it.
    await (await tx.run(query, parameters)).consume()


def connection_params(url: str) -> tuple[str, tuple[str, str] | None, str | None]:
    """`bolt://user:pw@host:port/db` → (driver URI, auth or None, database or None)."""
    parts = urlsplit(url)
    if parts.scheme not in {"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"}:
        raise ValueError(f"not a Neo4j URL (bolt:// or neo4j://): {url!r}")
    auth = (unquote(parts.username), unquote(parts.password or "")) if parts.username else None
    netloc = parts.netloc.rsplit("@", 1)[-1]
    database = parts.path.strip("/") or None
    return urlunsplit((parts.scheme, netloc, "", parts.query, "")), auth, database
