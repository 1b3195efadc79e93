"""One contract for every lineage graph store: SQL tables (`SqlGraph`) and Neo4j (`Neo4jGraph`).

Each test takes a store through the `graph` fixture, parametrised over both; a store only
says how it is built (`open_store`). Events travel the real path: `new_event` → a SQLite
event log through the `Writer` → `ProjectorRuntime.catch_up()` into the store.

Neo4j isolation: Community edition has one database, so every Neo4j test starts by wiping
it whole (`_wipe_neo4j`: any node of any label, leftovers of a crashed run included) and
ends with the store's own `reset()`. The suite therefore owns the database it is pointed
at (`MODELDB_TEST_NEO4J`, see `modeldb.infra.engines`); never point it at one you keep.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from modeldb.event_schema import Event, new_event, uuid7
from modeldb.event_schema.nodes import EDGE_KINDS
from modeldb.infra.engines import resolve_engines
from modeldb.projectors.db import create_engine
from modeldb.projectors.graph_sql import SqlGraph
from modeldb.projectors.lineage import Direction, Edge, GraphChanges, LineageGraph, Node, graph_changes
from modeldb.projectors.runtime import ProjectorRuntime
from modeldb.writer.log import Batch
from modeldb.writer.service import Writer
from modeldb.writer.sqlite_log import SQLiteEventLog
from tests.helpers import DIGEST_A, DIGEST_B, T0, every_event_type, wire

if TYPE_CHECKING:
    from modeldb.projectors.graph_neo4j import Neo4jGraph

    GraphProjection = SqlGraph | Neo4jGraph

STORES = ["sql", pytest.param("neo4j", marks=pytest.mark.engines)]
DIRECTIONS: tuple[Direction, ...] = ("UPSTREAM", "DOWNSTREAM")
FILTERS: tuple[list[str] | None, ...] = (None, ["DERIVED_FROM"], ["USED", "GENERATED_BY"],
                                         ["PART_OF", "VERSION_OF"], ["NOT_A_KIND"])


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def neo4j_uri() -> Callable[[], str]:
    """Resolve the Neo4j endpoint lazily, so that a run without Neo4j tests starts no server.

    Session scope makes pytest build this before any function-scoped fixture (such as
    tests/conftest.py's autouse one) changes MODELDB_* variables; the snapshot keeps
    MODELDB_TEST_NEO4J and the launcher's MODELDB_INFRA_* for when the endpoint is needed.
    """
    snapshot = {k: v for k, v in os.environ.items() if k.startswith("MODELDB_")}

    def resolve() -> str:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in snapshot.items():
                patch.setenv(key, value)
            return resolve_engines().neo4j_uri

    return resolve


async def _wipe_neo4j(uri: str) -> None:
    from neo4j import AsyncGraphDatabase

    from modeldb.projectors.graph_neo4j import connection_params

    address, auth, database = connection_params(uri)
    async with AsyncGraphDatabase.driver(address, auth=auth) as driver, \
            driver.session(database=database) as session:
        result = await session.run(
            "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS")
        await result.consume()


OpenStore = Callable[[str], Awaitable["GraphProjection"]]


@pytest.fixture(scope="session")
def postgres_url() -> Callable[[], str]:
    """A fresh PostgreSQL database per call, resolved as `neo4j_uri` resolves Neo4j."""
    snapshot = {k: v for k, v in os.environ.items() if k.startswith("MODELDB_")}

    def resolve() -> str:
        from modeldb.infra.engines import fresh_postgres_database

        with pytest.MonkeyPatch.context() as patch:
            for key, value in snapshot.items():
                patch.setenv(key, value)
            return fresh_postgres_database(resolve_engines(), "modeldb_graph_test")

    return resolve


@pytest.fixture
async def open_store(tmp_path: Path, neo4j_uri: Callable[[], str],
                     postgres_url: Callable[[], str]) -> AsyncIterator[OpenStore]:
    """`await open_store("sql" | "postgres" | "neo4j")`: an empty store, set up, closed after the test."""
    opened: list[GraphProjection] = []
    engines: list[AsyncEngine] = []

    async def open_(kind: str) -> GraphProjection:
        store: GraphProjection
        if kind == "sql":
            engine = create_engine(str(tmp_path / f"read-{len(engines)}.db"))
            engines.append(engine)
            store = SqlGraph(engine)
        elif kind == "postgres":
            from modeldb.projectors.migrations import migrate

            engine = create_engine(postgres_url())
            engines.append(engine)
            await migrate(engine)  # as an operator does: a shared database is migrated once
            store = SqlGraph(engine)
        else:
            from modeldb.projectors.graph_neo4j import Neo4jGraph

            uri = neo4j_uri()
            await _wipe_neo4j(uri)
            store = Neo4jGraph(uri)
        opened.append(store)
        await store.setup()
        return store

    yield open_
    for store in opened:
        await store.reset()
        await store.close()
    for engine in engines:
        await engine.dispose()
        if engine.dialect.name == "postgresql":  # the fresh database goes too
            await _drop_database(engine.url.render_as_string(hide_password=False))


async def _drop_database(url: str) -> None:
    import asyncpg

    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")), timeout=30)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.strip("/")}"')
    finally:
        await conn.close()


@dataclass
class Harness:
    """A store fed through the real pipeline from its own SQLite event log."""

    store: GraphProjection
    log: SQLiteEventLog
    events: list[Event]  # everything ingested, in log order

    async def ingest(self, events: Sequence[Event], batch_size: int = 5000) -> None:
        await self.append(events)
        await self.catch_up(batch_size)

    async def append(self, events: Sequence[Event]) -> None:
        await Writer(self.log).ingest(wire(list(events)), "tester")
        self.events.extend(events)

    async def catch_up(self, batch_size: int = 5000) -> int:
        return await ProjectorRuntime(self.log, self.store, batch_size=batch_size).catch_up()

    async def lineage(self, start: str, direction: Direction = "UPSTREAM", depth: int = 5,
                      edge_kinds: Sequence[str] | None = None) -> LineageGraph:
        return await self.store.lineage(start, direction, depth, edge_kinds)


async def _harness(store: str, tmp_path: Path, open_store: OpenStore) -> AsyncIterator[Harness]:
    log = SQLiteEventLog(tmp_path / "events.db")
    try:
        yield Harness(await open_store(store), log, [])
    finally:
        await log.close()


@pytest.fixture(params=STORES)
async def graph(request: pytest.FixtureRequest, tmp_path: Path,
                open_store: OpenStore) -> AsyncIterator[Harness]:
    async for harness in _harness(request.param, tmp_path, open_store):
        yield harness


# ---------------------------------------------------------------- scenarios and the oracle


def deep_lineage() -> list[Event]:
    """A dataset chain of 12 versions with branches and diamonds, feeding runs and a model:
    eval run → model m v1 → train run → feat version → raw v11 → … → raw v0, 15 hops deep."""
    prep, train, evaluate = uuid7(), uuid7(), uuid7()
    raw = [f"raw@{digest(i)}" for i in range(12)]
    feat = f"feat@{digest(100)}"
    events = [
        new_event("ProjectCreated", "lab", {"name": "lab"}),
        new_event("ExperimentCreated", "lab/prep", {"project": "lab", "name": "prep"}),
        new_event("ExperimentCreated", "lab/train", {"project": "lab", "name": "train"}),
        new_event("DatasetCreated", "raw", {"name": "raw"}),
    ]
    for i in range(12):
        events.append(new_event("DatasetVersionCreated", "raw", {
            "digest": digest(i), "derived_from": [raw[i - 1]] if i else []}))
    events += [
        new_event("DatasetCreated", "clean", {"name": "clean"}),
        # Two parents on one chain: a diamond whose paths rejoin at raw v5.
        new_event("DatasetVersionCreated", "clean", {"digest": digest(50),
                                                     "derived_from": [raw[5], raw[7]]}),
        new_event("RunStarted", prep, {"project": "lab", "experiment": "prep", "name": "prep",
                                       "start_time": T0}),
        new_event("RunInputLogged", prep, {"kind": "DatasetVersion", "id": raw[11], "name": "in"}),
        new_event("RunInputLogged", prep, {"kind": "DatasetVersion", "id": f"clean@{digest(50)}"}),
        new_event("CodeVersionRecorded", prep, {"commit": "c0ffee1", "dirty": False}),
        new_event("RunOutputLogged", prep, {"kind": "DatasetVersion", "id": feat, "name": "features"}),
        new_event("DatasetVersionCreated", "feat", {"digest": digest(100), "derived_from": [raw[11]]}),
        new_event("RunStarted", train, {"project": "lab", "experiment": "train", "name": "train",
                                        "parent_run_id": prep, "start_time": T0}),
        new_event("RunInputLogged", train, {"kind": "DatasetVersion", "id": feat}),
        new_event("CodeVersionRecorded", train, {"commit": "c0ffee1", "dirty": False}),
        new_event("ArtifactLogged", train, {"name": "model.pkl", "digest": DIGEST_B, "size": 1,
                                            "uri": "file:model.pkl", "kind": "model"}),
        new_event("RegisteredModelCreated", "m", {"name": "m"}),
        new_event("ModelVersionCreated", "m", {"version": 1, "run_id": train,
                                               "artifact_name": "model.pkl",
                                               "artifact_digest": DIGEST_B}),
        # Experiment "lab/eval" is never created: it stays a placeholder.
        new_event("RunStarted", evaluate, {"project": "lab", "experiment": "eval", "name": "eval",
                                           "start_time": T0}),
        new_event("RunInputLogged", evaluate, {"kind": "ModelVersion", "id": "m/1"}),
    ]
    return events


def expected_lineage(changes: GraphChanges, start: str, direction: Direction, depth: int,
                     edge_kinds: Sequence[str] | None = None) -> LineageGraph:
    """The contract, spelled out over the mapping's own nodes and edges: breadth-first."""
    nodes = {**changes.refs, **changes.nodes}  # a definition wins over a reference
    if start not in nodes:
        return LineageGraph()
    edges = [e for e in changes.edges if not edge_kinds or e.kind in edge_kinds]
    seen, frontier = {start}, {start}
    for _ in range(depth):
        if direction == "UPSTREAM":
            frontier = {e.target for e in edges if e.source in frontier} - seen
        else:
            frontier = {e.source for e in edges if e.target in frontier} - seen
        seen |= frontier
    return LineageGraph(
        sorted((nodes[i] for i in seen), key=lambda n: n.id),
        sorted((e for e in edges if e.source in seen and e.target in seen),
               key=lambda e: (e.source, e.target, e.kind)),
    )


def ids(graph: LineageGraph) -> set[str]:
    return {n.id for n in graph.nodes}


def triples(graph: LineageGraph) -> set[tuple[str, str, str]]:
    return {(e.source, e.target, e.kind) for e in graph.edges}


async def neighbourhood(graph: Harness, node_ids: Sequence[str]) -> tuple[set[Node], set[Edge]]:
    """Every node given plus every edge touching one, read through the traversal port only."""
    nodes: set[Node] = set()
    edges: set[Edge] = set()
    for node in node_ids:
        for direction in DIRECTIONS:
            found = await graph.lineage(node, direction, 1)
            nodes.update(found.nodes)
            edges.update(found.edges)
    return nodes, edges


# ---------------------------------------------------------------- the contract


async def test_every_event_type_gives_its_nodes_and_edges(graph: Harness) -> None:
    events = every_event_type()
    await graph.ingest(events)
    run, child = events[4].aggregate.id, events[16].aggregate.id
    dirty = f"abc1234+dirty.{DIGEST_B[7:19]}"
    nodes = {
        Node("project:p", "Project", "p"),
        Node("project:q", "Project", "q"),
        Node("experiment:p/e", "Experiment", "e"),
        Node("experiment:p/old", "Experiment", "old"),
        Node("dataset:iris", "Dataset", "iris"),
        Node("dataset:tmp", "Dataset", "tmp"),
        Node(f"datasetversion:iris@{DIGEST_A}", "DatasetVersion", f"iris@{DIGEST_A[7:19]}"),
        Node(f"run:{run}", "Run", "r"),
        Node(f"run:{child}", "Run", "child"),
        Node(f"codeversion:{dirty}", "CodeVersion", dirty[:12]),
        Node(f"artifact:{DIGEST_B}", "Artifact", "model.pkl"),
        Node("registeredmodel:clf", "RegisteredModel", "clf"),
        Node("registeredmodel:gone", "RegisteredModel", "gone"),
        Node("modelversion:clf/1", "ModelVersion", "clf v1"),
        Node("modelversion:clf/2", "ModelVersion", "clf v2"),
        Node("environment:prod-eu", "Environment", "prod-eu"),
        Node("deployment:dep1", "Deployment", "clf v1 @ prod-eu"),
    }
    edges = {
        Edge("experiment:p/e", "project:p", "PART_OF"),
        Edge("experiment:p/old", "project:p", "PART_OF"),
        Edge(f"datasetversion:iris@{DIGEST_A}", "dataset:iris", "VERSION_OF"),
        Edge(f"run:{run}", "experiment:p/e", "PART_OF"),
        Edge(f"run:{child}", "experiment:p/e", "PART_OF"),
        Edge(f"run:{child}", f"run:{run}", "CHILD_OF"),
        Edge(f"run:{run}", f"codeversion:{dirty}", "USED"),
        Edge(f"run:{run}", f"datasetversion:iris@{DIGEST_A}", "USED"),
        Edge(f"artifact:{DIGEST_B}", f"run:{run}", "GENERATED_BY"),
        Edge("modelversion:clf/1", "registeredmodel:clf", "VERSION_OF"),
        Edge("modelversion:clf/1", f"run:{run}", "GENERATED_BY"),
        Edge("modelversion:clf/1", f"artifact:{DIGEST_B}", "DERIVED_FROM"),
        Edge("modelversion:clf/2", "registeredmodel:clf", "VERSION_OF"),
        Edge("deployment:dep1", "modelversion:clf/1", "USED"),
        Edge("deployment:dep1", "environment:prod-eu", "PART_OF"),
    }
    assert {e.kind for e in edges} == set(EDGE_KINDS)
    found_nodes, found_edges = await neighbourhood(graph, [n.id for n in nodes])
    assert found_nodes == nodes
    assert found_edges == edges

    upstream = await graph.lineage("modelversion:clf/1", "UPSTREAM", 10)
    assert ids(upstream) == {n.id for n in nodes} - {
        "project:q", "experiment:p/old", "dataset:tmp", "registeredmodel:gone",
        "modelversion:clf/2", f"run:{child}", "deployment:dep1", "environment:prod-eu"}
    assert upstream.nodes == sorted(upstream.nodes, key=lambda n: n.id)
    assert upstream.edges == sorted(upstream.edges, key=lambda e: (e.source, e.target, e.kind))


async def test_upstream_and_downstream_through_a_deep_chain(graph: Harness) -> None:
    events = deep_lineage()
    await graph.ingest(events)
    evaluate = f"run:{events[-1].aggregate.id}"
    raw = [f"datasetversion:raw@{digest(i)}" for i in range(12)]
    clean, feat = f"datasetversion:clean@{digest(50)}", f"datasetversion:feat@{digest(100)}"

    # Along the chain alone the first raw version is 12 hops above the features…
    assert raw[0] not in ids(await graph.lineage(feat, "UPSTREAM", 11, ["DERIVED_FROM"]))
    chain = await graph.lineage(feat, "UPSTREAM", 12, ["DERIVED_FROM"])
    assert ids(chain) == {feat, *raw}
    # …and 10 above the eval run, whose shortest way up branches off through the parent run
    # (eval → m/1 → train → prep → clean → raw v5 → … → raw v0).
    assert raw[0] not in ids(await graph.lineage(evaluate, "UPSTREAM", 9))
    full = await graph.lineage(evaluate, "UPSTREAM", 10)
    assert set(raw) | {feat, clean, "dataset:raw", "modelversion:m/1"} <= ids(full)
    assert (raw[1], raw[0], "DERIVED_FROM") in triples(full)

    # Downstream of the chain's root: the versions, then the branch (diamond) and the output.
    down = await graph.lineage(raw[0], "DOWNSTREAM", 12, ["DERIVED_FROM"])
    assert ids(down) == set(raw) | {clean, feat}
    assert (clean, raw[5], "DERIVED_FROM") in triples(down)
    assert (clean, raw[7], "DERIVED_FROM") in triples(down)
    assert ids(await graph.lineage(raw[0], "DOWNSTREAM", 11, ["DERIVED_FROM"])) == set(raw) | {clean}

    # Impact of a dataset: all its versions at 1 hop, what was made from or with them at 2.
    impact = await graph.lineage("dataset:raw", "DOWNSTREAM", 2)
    prep = f"run:{events[18].aggregate.id}"
    assert ids(impact) == {"dataset:raw", *raw, clean, feat, prep}

    changes = graph_changes(events)
    starts = [evaluate, raw[0], raw[6], feat, "dataset:raw", "project:lab", "modelversion:m/1", prep]
    for start in starts:
        for direction in DIRECTIONS:
            for depth in (1, 3, 10, 50):
                expected = expected_lineage(changes, start, direction, depth)
                assert await graph.lineage(start, direction, depth) == expected, (start, direction, depth)


async def test_edge_kind_filters_limit_the_walk_and_the_edges(graph: Harness) -> None:
    events = deep_lineage()
    await graph.ingest(events)
    raw = [f"datasetversion:raw@{digest(i)}" for i in range(12)]

    only_chain = await graph.lineage(raw[11], "UPSTREAM", 3, ["DERIVED_FROM"])
    assert ids(only_chain) == set(raw[8:])
    assert triples(only_chain) == {(raw[i], raw[i - 1], "DERIVED_FROM") for i in (9, 10, 11)}

    with_dataset = await graph.lineage(raw[11], "UPSTREAM", 3)
    assert ids(with_dataset) == set(raw[8:]) | {"dataset:raw"}
    assert {(raw[i], "dataset:raw", "VERSION_OF") for i in range(8, 12)} <= triples(with_dataset)

    # A kind outside the walk is not returned even between two returned nodes.
    versions = await graph.lineage(raw[11], "UPSTREAM", 3, ["VERSION_OF"])
    assert ids(versions) == {raw[11], "dataset:raw"}
    assert triples(versions) == {(raw[11], "dataset:raw", "VERSION_OF")}

    changes = graph_changes(events)
    for start in (f"run:{events[-1].aggregate.id}", raw[3], "dataset:raw", "project:lab"):
        for direction in DIRECTIONS:
            for kinds in FILTERS:
                for depth in (2, 20):
                    expected = expected_lineage(changes, start, direction, depth, kinds)
                    found = await graph.lineage(start, direction, depth, kinds)
                    assert found == expected, (start, direction, depth, kinds)


async def test_unknown_edge_kinds_match_nothing_and_are_never_run(graph: Harness) -> None:
    await graph.ingest(deep_lineage())
    before = await graph.store.digest()
    start = f"datasetversion:raw@{digest(3)}"
    for kinds in (["NOT_A_KIND"], ["USED]->() DETACH DELETE n //"], ["used"]):
        found = await graph.lineage(start, "UPSTREAM", 5, kinds)
        assert ids(found) == {start} and found.edges == []
    assert await graph.store.digest() == before
    # An empty filter means no filter.
    assert await graph.lineage(start, "UPSTREAM", 5, []) == await graph.lineage(start, "UPSTREAM", 5)


async def test_depth_limits(graph: Harness) -> None:
    await graph.ingest(deep_lineage())
    raw = [f"datasetversion:raw@{digest(i)}" for i in range(12)]
    start = raw[11]
    alone = await graph.lineage(start, "UPSTREAM", 0)
    assert alone == LineageGraph([Node(start, "DatasetVersion", f"raw@{digest(11)[7:19]}")], [])
    for depth in range(12):
        chain = await graph.lineage(start, "UPSTREAM", depth, ["DERIVED_FROM"])
        assert ids(chain) == set(raw[11 - depth:]), depth
        assert len(chain.edges) == depth
    assert await graph.lineage(start, "UPSTREAM", 50, ["DERIVED_FROM"]) == \
        await graph.lineage(start, "UPSTREAM", 11, ["DERIVED_FROM"])
    assert await graph.lineage("run:no-such-run", "UPSTREAM", 5) == LineageGraph()
    assert await graph.lineage("run:no-such-run", "DOWNSTREAM", 0) == LineageGraph()


async def test_depth_outside_the_api_range_is_refused(graph: Harness) -> None:
    await graph.ingest(deep_lineage())
    for depth in (-1, 51, True):
        with pytest.raises(ValueError, match="depth"):
            await graph.lineage("dataset:raw", "UPSTREAM", depth)



@pytest.mark.engines
@pytest.mark.parametrize("graph", ["neo4j"], indirect=True)
async def test_neo4j_walks_breadth_first_never_path_by_path(graph: Harness) -> None:
    """Enumerating paths explodes on lineage's diamonds; the plan must prune reached nodes.
    (The SQL store's recursive CTE over (node, depth) pairs never enumerates paths.)"""
    from neo4j import AsyncGraphDatabase

    from modeldb.projectors.graph_neo4j import connection_params, lineage_cypher

    await graph.ingest(deep_lineage())
    uri, auth, database = connection_params(graph.store.url)
    async with AsyncGraphDatabase.driver(uri, auth=auth) as driver:
        for direction in DIRECTIONS:
            for kinds in (EDGE_KINDS, ("DERIVED_FROM",)):
                query = lineage_cypher(direction, 10, kinds)
                _, summary, _ = await driver.execute_query(f"EXPLAIN {query}", {"start": "dataset:raw"},
                                                           database_=database)
                assert summary.plan is not None
                operators = _operators(summary.plan)
                expands = [op for op in operators if op.startswith("VarLengthExpand")]
                assert expands and all("Pruning,BFS" in op for op in expands), operators


def _operators(plan: dict[str, Any]) -> list[str]:
    return [plan["operatorType"], *(op for child in plan.get("children", []) for op in _operators(child))]

async def test_edges_may_arrive_before_their_nodes(graph: Harness) -> None:
    run = uuid7()
    version = f"datasetversion:iris@{DIGEST_A}"
    early = [
        # The model version and the run's input arrive before the run, dataset and model exist.
        new_event("ModelVersionCreated", "clf", {"version": 1, "run_id": run}),
        new_event("RunInputLogged", run, {"kind": "DatasetVersion", "id": f"iris@{DIGEST_A}",
                                          "name": "train split"}),
    ]
    late = [
        new_event("RegisteredModelCreated", "clf", {"name": "classifier"}),
        new_event("RunStarted", run, {"project": "p", "experiment": "e", "name": "real run",
                                      "start_time": T0}),
        new_event("DatasetCreated", "iris", {"name": "iris"}),
        new_event("DatasetVersionCreated", "iris", {"digest": DIGEST_A}),
    ]
    again = [new_event("RunInputLogged", uuid7(), {"kind": "DatasetVersion", "id": f"iris@{DIGEST_A}",
                                                   "name": "another name"})]
    await graph.ingest(early)
    found = await graph.lineage("modelversion:clf/1", "UPSTREAM", 5)
    assert found.nodes == [
        Node(version, "DatasetVersion", "train split"),
        Node("modelversion:clf/1", "ModelVersion", "clf v1"),
        Node("registeredmodel:clf", "RegisteredModel", "clf"),
        Node(f"run:{run}", "Run", run),
    ]
    assert triples(found) == {("modelversion:clf/1", "registeredmodel:clf", "VERSION_OF"),
                              ("modelversion:clf/1", f"run:{run}", "GENERATED_BY"),
                              (f"run:{run}", version, "USED")}

    await graph.ingest(late)
    filled = await graph.lineage("modelversion:clf/1", "UPSTREAM", 5)
    names = {n.id: n.name for n in filled.nodes}
    assert names[f"run:{run}"] == "real run"
    assert names["registeredmodel:clf"] == "classifier"
    assert names[version] == f"iris@{DIGEST_A[7:19]}"
    assert {"dataset:iris", "experiment:p/e", "project:p"} <= set(names)

    await graph.ingest(again)  # a later reference never renames a defined node
    assert {n.id: n.name for n in (await graph.lineage(version, "UPSTREAM", 0)).nodes} == {
        version: f"iris@{DIGEST_A[7:19]}"}

    # The same events in causal order build the same graph (placeholder flags included).
    out_of_order = await graph.store.digest()
    await graph.store.reset()
    in_order = Harness(graph.store, SQLiteEventLog(graph.log.path.with_name("in-order.db")), [])
    try:
        await in_order.ingest(late + early + again)
    finally:
        await in_order.log.close()
    assert await graph.store.digest() == out_of_order


async def test_duplicate_delivery_changes_nothing(graph: Harness) -> None:
    await graph.ingest(every_event_type())
    first = await graph.store.digest()
    checkpoint = await graph.store.load_checkpoint()
    assert checkpoint is not None
    delivered = await graph.log.read(0, 10_000)

    await graph.store.apply(Batch(delivered, checkpoint))  # the whole batch again
    assert await graph.store.digest() == first
    assert await graph.store.load_checkpoint() == checkpoint

    # Old events mixed with new ones, some new ones twice in the same batch.
    await graph.append(deep_lineage())
    head = await graph.log.head()
    fresh = await graph.log.read(checkpoint["position"], 10_000)
    mixed = delivered[:10] + fresh + fresh[:5] + delivered[10:]
    await graph.store.apply(Batch(mixed, head))
    assert await graph.store.load_checkpoint() == head
    assert await graph.catch_up() == 0  # the checkpoint says nothing is left
    twice = await graph.store.digest()
    await graph.store.apply(Batch(mixed, head))
    assert await graph.store.digest() == twice

    await ProjectorRuntime(graph.log, graph.store).rebuild()
    assert await graph.store.digest() == twice


async def test_checkpoints_merge_per_partition(graph: Harness) -> None:
    assert await graph.store.load_checkpoint() is None
    await graph.store.apply(Batch([], {"0": 5}))
    await graph.store.apply(Batch([], {"1": 7}))
    assert await graph.store.load_checkpoint() == {"0": 5, "1": 7}
    await graph.store.apply(Batch([], {"0": 9, "2": 1}))
    assert await graph.store.load_checkpoint() == {"0": 9, "1": 7, "2": 1}


class _CrashBeforeEdges:
    """Changes whose edges cannot be read: the store fails after writing nodes and marks."""

    def __init__(self, changes: GraphChanges):
        self.nodes, self.refs = changes.nodes, changes.refs

    @property
    def edges(self) -> set[Edge]:
        raise RuntimeError("crash between nodes and edges")


async def test_a_failed_batch_leaves_no_trace(graph: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    await graph.ingest(every_event_type())
    before, checkpoint = await graph.store.digest(), await graph.store.load_checkpoint()
    await graph.append(deep_lineage())
    module = importlib.import_module(type(graph.store).__module__)

    def crashing(events: Any) -> _CrashBeforeEdges:
        return _CrashBeforeEdges(graph_changes(events))

    monkeypatch.setattr(module, "graph_changes", crashing)
    with pytest.raises(RuntimeError, match="crash between nodes and edges"):
        await graph.catch_up()
    assert await graph.store.digest() == before  # no node of the failed batch
    assert await graph.store.load_checkpoint() == checkpoint

    monkeypatch.undo()  # no dedupe mark survived either: the retry applies everything
    await graph.catch_up()
    changes = graph_changes(graph.events)
    start = f"run:{graph.events[-1].aggregate.id}"
    assert await graph.lineage(start, "UPSTREAM", 50) == expected_lineage(changes, start, "UPSTREAM", 50)


async def test_rebuild_gives_the_same_graph(graph: Harness) -> None:
    events = every_event_type() + deep_lineage()
    await graph.ingest(events[:20], batch_size=3)
    await graph.ingest(events[20:], batch_size=7)
    incremental = await graph.store.digest()
    checkpoint = await graph.store.load_checkpoint()

    await graph.store.reset()
    assert await graph.store.load_checkpoint() is None
    assert await graph.lineage("dataset:raw", "DOWNSTREAM", 3) == LineageGraph()

    assert await graph.catch_up() == len(events)
    assert await graph.store.digest() == incremental
    assert await graph.store.load_checkpoint() == checkpoint


@pytest.mark.engines
async def test_sql_and_neo4j_give_identical_answers(tmp_path: Path, open_store: OpenStore) -> None:
    log = SQLiteEventLog(tmp_path / "shared-events.db")
    stores = [await open_store("sql"), await open_store("neo4j")]
    try:
        events = every_event_type() + deep_lineage()
        await Writer(log).ingest(wire(events), "tester")
        for store in stores:
            await ProjectorRuntime(log, store, batch_size=9).catch_up()
        sql, neo4j = stores
        assert await sql.digest() == await neo4j.digest()

        nodes = {**graph_changes(events).refs, **graph_changes(events).nodes}
        starts = [*sorted(nodes)[::3], "dataset:raw", "project:lab", "run:missing"]
        compared = 0
        for start in starts:
            for direction in DIRECTIONS:
                for depth in (0, 1, 3, 12):
                    for kinds in FILTERS:
                        answer = await sql.lineage(start, direction, depth, kinds)
                        assert await neo4j.lineage(start, direction, depth, kinds) == answer, \
                            (start, direction, depth, kinds)
                        compared += bool(answer.edges)
        assert compared > 100  # the comparison saw real subgraphs, not only empty answers
    finally:
        await log.close()



# ---------------------------------------------------------------- bounded walks (node limit)


LIMIT_STORES = ["sql", pytest.param("postgres", marks=pytest.mark.engines),
                pytest.param("neo4j", marks=pytest.mark.engines)]


def limited_lineage(changes: GraphChanges, start: str, direction: Direction, depth: int,
                    limit: int | None, edge_kinds: Sequence[str] | None = None) -> LineageGraph:
    """The limit's contract, spelled out: the first `limit` nodes by (distance, id), the
    edges between them, and `truncated` when the full answer has more nodes."""
    full = expected_lineage(changes, start, direction, depth, edge_kinds)
    if limit is None or len(full.nodes) <= limit:
        return full
    edges = [e for e in changes.edges if not edge_kinds or e.kind in edge_kinds]
    distance, frontier = {start: 0}, {start}
    for level in range(1, depth + 1):
        if direction == "UPSTREAM":
            frontier = {e.target for e in edges if e.source in frontier} - distance.keys()
        else:
            frontier = {e.source for e in edges if e.target in frontier} - distance.keys()
        distance.update(dict.fromkeys(frontier, level))
    kept = set(sorted(distance, key=lambda n: (distance[n], n))[:limit])
    return LineageGraph([n for n in full.nodes if n.id in kept],
                        [e for e in full.edges if e.source in kept and e.target in kept], True)


def shared_dataset(consumers: int = 50) -> list[Event]:
    """One dataset version used by `consumers` runs, each making an artifact and a model
    version from it: downstream fans out at the first hop and again at the second."""
    events = [new_event("ProjectCreated", "lab", {"name": "lab"}),
              new_event("DatasetCreated", "shared", {"name": "shared"}),
              new_event("DatasetVersionCreated", "shared", {"digest": digest(1), "derived_from": []}),
              new_event("RegisteredModelCreated", "m", {"name": "m"})]
    for i in range(consumers):
        run = uuid7()
        events += [
            new_event("RunStarted", run, {"project": "lab", "experiment": "train", "name": f"r{i}",
                                          "start_time": T0}),
            new_event("RunInputLogged", run, {"kind": "DatasetVersion", "id": f"shared@{digest(1)}"}),
            new_event("ArtifactLogged", run, {"name": "model.pkl", "digest": digest(1000 + i), "size": 1,
                                              "uri": f"file:{i}.pkl", "kind": "model"}),
            new_event("ModelVersionCreated", "m", {"version": i + 1, "run_id": run}),
        ]
    return events


@pytest.fixture(params=LIMIT_STORES)
async def limited(request: pytest.FixtureRequest, tmp_path: Path,
                  open_store: OpenStore) -> AsyncIterator[Harness]:
    async for harness in _harness(request.param, tmp_path, open_store):
        yield harness


async def test_a_node_limit_keeps_the_nearest_nodes_and_says_truncated(limited: Harness) -> None:
    events = shared_dataset(50)
    await limited.ingest(events)
    changes = graph_changes(events)
    version = f"datasetversion:shared@{digest(1)}"
    runs = sorted(n.id for n in changes.nodes.values() if n.kind == "Run")

    found = await limited.store.lineage(version, "DOWNSTREAM", 10, limit=10)
    assert found.truncated
    assert ids(found) == {version, *runs[:9]}  # the start, then the smallest ids of hop one
    assert triples(found) == {(run, version, "USED") for run in runs[:9]}
    assert found == limited_lineage(changes, version, "DOWNSTREAM", 10, 10)

    full = await limited.store.lineage(version, "DOWNSTREAM", 10)
    assert not full.truncated and len(full.nodes) == 1 + 50 * 3  # runs, artifacts, model versions
    exact = await limited.store.lineage(version, "DOWNSTREAM", 10, limit=len(full.nodes))
    assert exact == full  # a limit the answer fits is no truncation
    short = await limited.store.lineage(version, "DOWNSTREAM", 10, limit=len(full.nodes) - 1)
    assert short.truncated and len(short.nodes) == len(full.nodes) - 1
    level_one = await limited.store.lineage(version, "DOWNSTREAM", 10, limit=51)
    assert level_one.truncated and ids(level_one) == {version, *runs}  # hop one whole, nothing more
    alone = await limited.store.lineage(version, "DOWNSTREAM", 10, limit=1)
    assert alone == LineageGraph([changes.nodes[version]], [], True)
    assert not (await limited.store.lineage(version, "DOWNSTREAM", 0, limit=1)).truncated
    assert await limited.store.lineage("run:missing", "DOWNSTREAM", 5, limit=3) == LineageGraph()


async def test_every_limit_agrees_with_the_contract(limited: Harness) -> None:
    """On every store (PostgreSQL too), with and without limits and kind filters."""
    events = deep_lineage() + shared_dataset(12)
    await limited.ingest(events)
    changes = graph_changes(events)
    nodes = {**changes.refs, **changes.nodes}
    starts = [*sorted(nodes)[::4], "dataset:raw", "dataset:shared", "registeredmodel:m"]
    truncated = 0
    for start in starts:
        for direction in DIRECTIONS:
            for depth, limit, kinds in ((3, 2, None), (12, 5, None), (12, 1000, None),
                                        (12, 4, ["DERIVED_FROM"]), (12, 3, ["USED", "GENERATED_BY"]),
                                        (5, 7, ["NOT_A_KIND"]), (12, None, ["USED", "DERIVED_FROM"])):
                found = await limited.store.lineage(start, direction, depth, kinds, limit)
                assert found == limited_lineage(changes, start, direction, depth, limit, kinds), \
                    (start, direction, depth, limit, kinds)
                truncated += found.truncated
    assert truncated > 20  # the limits did bite


@pytest.mark.parametrize("limit", [0, -1, True, 1.5])
async def test_a_bad_limit_is_refused(graph: Harness, limit: Any) -> None:
    with pytest.raises(ValueError, match="limit must be a positive int"):
        await graph.store.lineage("dataset:raw", "UPSTREAM", 5, limit=limit)
