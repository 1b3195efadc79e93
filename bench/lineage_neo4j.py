"""Lineage latency at scale: `Neo4jGraph` against `SqlGraph` on SQLite, on the same graph.

    python -m bench.lineage_neo4j [--quick] [--edges N] [--neo4j bolt://host:port] [--compare]
                                  [--limit N] [--postgres] [--no-neo4j]

Builds a lineage graph of about a million edges (`--quick`: 50k) straight into both stores
with batched inserts (Neo4j: `UNWIND … CREATE`; SQLite: multi-row INSERTs), bypassing the
event log, then times `lineage(start, direction, depth=10, limit=1000)` (the API's default
node limit; `--limit 0`: none) from the same random start nodes in both, checks that the
stores return identical answers, and prints a table. `--postgres` also times the SQL graph
on a fresh PostgreSQL database (dropped afterwards).

The shape imitates teams working side by side: each team has a project, experiments,
datasets whose versions form chains, runs that use recent versions, code versions and
sometimes a model version, and produce an artifact, new dataset versions and model
versions; a few shared datasets are used by every team, so impact queries can fan out.

The Neo4j database named by `--neo4j` (else `resolve_engines().neo4j_uri`, which honours
MODELDB_TEST_NEO4J) loses its lineage graph: the bench resets the graph projection there
before loading and after measuring (`--keep` leaves the loaded graph in place).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from random import Random
from typing import Any

from neo4j import AsyncGraphDatabase, AsyncSession
from sqlalchemy import insert

from modeldb.event_schema.nodes import EDGE_KINDS, NODE_KINDS
from modeldb.projectors.db import create_engine
from modeldb.projectors.graph_neo4j import Neo4jGraph, connection_params
from modeldb.projectors.graph_sql import SqlGraph, graph_edges, graph_nodes
from modeldb.projectors.lineage import Direction, LineageGraph

CHUNK = 10_000  # rows per UNWIND / INSERT: large enough to amortise a round trip
RUNS_PER_TEAM = 200
SHARED_DATASETS = 5


@dataclass
class Graph:
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)  # id → (kind, name)
    edges: set[tuple[str, str, str]] = field(default_factory=set)  # (source, target, kind)
    hubs: list[str] = field(default_factory=list)  # first versions of the shared datasets

    def node(self, kind: str, ident: str, name: str) -> str:
        node_id = f"{kind.lower()}:{ident}"
        self.nodes[node_id] = (kind, name)
        return node_id

    def edge(self, source: str, target: str, kind: str) -> None:
        self.edges.add((source, target, kind))


def _sha(rng: Random) -> str:
    return "sha256:" + hashlib.sha256(rng.getrandbits(64).to_bytes(8, "big")).hexdigest()


def build_graph(target_edges: int, seed: int = 7) -> Graph:
    """A realistic lineage graph of at least `target_edges` edges, the same for a given seed."""
    rng = Random(seed)
    g = Graph()
    shared: list[list[str]] = []
    for d in range(SHARED_DATASETS):
        dataset = g.node("Dataset", f"shared{d}", f"shared{d}")
        versions: list[str] = []
        for _ in range(5):
            digest = _sha(rng)
            version = g.node("DatasetVersion", f"shared{d}@{digest}", f"shared{d}@{digest[7:19]}")
            g.edge(version, dataset, "VERSION_OF")
            if versions:
                g.edge(version, versions[-1], "DERIVED_FROM")
            versions.append(version)
        shared.append(versions)
        g.hubs.append(versions[0])

    team = 0
    while len(g.edges) < target_edges:
        _team(g, rng, f"team{team}", shared)
        team += 1
    return g


def _team(g: Graph, rng: Random, name: str, shared: list[list[str]]) -> None:
    project = g.node("Project", name, name)
    experiments = []
    for e in range(4):
        experiments.append(g.node("Experiment", f"{name}/e{e}", f"e{e}"))
        g.edge(experiments[-1], project, "PART_OF")
    datasets = [g.node("Dataset", f"{name}-d{d}", f"{name}-d{d}") for d in range(3)]
    chains: list[list[str]] = []
    for dataset in datasets:
        digest = _sha(rng)
        ident = dataset.split(":", 1)[1]
        first = g.node("DatasetVersion", f"{ident}@{digest}", f"{ident}@{digest[7:19]}")
        g.edge(first, dataset, "VERSION_OF")
        chains.append([first])
    model = g.node("RegisteredModel", f"{name}-model", f"{name}-model")
    code: list[str] = []
    model_versions: list[str] = []
    runs: list[str] = []
    for r in range(RUNS_PER_TEAM):
        run = g.node("Run", str(uuid.UUID(int=rng.getrandbits(128))), f"{name}-run{r}")
        g.edge(run, rng.choice(experiments), "PART_OF")
        if runs and rng.random() < 0.2:
            g.edge(run, rng.choice(runs[-20:]), "CHILD_OF")
        if r % 10 == 0:
            commit = hashlib.sha1(rng.getrandbits(64).to_bytes(8, "big")).hexdigest()
            code.append(g.node("CodeVersion", commit, commit[:12]))
        g.edge(run, code[-1], "USED")
        used = rng.sample(range(len(chains)), rng.choice((1, 1, 2)))
        for d in used:
            g.edge(run, rng.choice(chains[d][-3:]), "USED")  # recent versions get reused
        if rng.random() < 0.1:
            g.edge(run, rng.choice(rng.choice(shared)), "USED")
        if model_versions and rng.random() < 0.3:
            g.edge(run, rng.choice(model_versions[-5:]), "USED")  # fine-tuning, evaluation
        artifact = g.node("Artifact", _sha(rng), f"model-{r}.pkl")
        g.edge(artifact, run, "GENERATED_BY")
        if rng.random() < 0.5:
            d = used[0]
            digest = _sha(rng)
            ident = datasets[d].split(":", 1)[1]
            version = g.node("DatasetVersion", f"{ident}@{digest}", f"{ident}@{digest[7:19]}")
            g.edge(version, datasets[d], "VERSION_OF")
            g.edge(version, chains[d][-1], "DERIVED_FROM")
            g.edge(version, run, "GENERATED_BY")
            chains[d].append(version)
        if rng.random() < 0.3:
            number = len(model_versions) + 1
            version = g.node("ModelVersion", f"{name}-model/{number}", f"{name}-model v{number}")
            g.edge(version, model, "VERSION_OF")
            g.edge(version, run, "GENERATED_BY")
            g.edge(version, artifact, "DERIVED_FROM")
            model_versions.append(version)
        runs.append(run)


# ---------------------------------------------------------------- loading


def _chunks(rows: Sequence[Any]) -> list[Sequence[Any]]:
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]


async def load_neo4j(store: Neo4jGraph, g: Graph) -> None:
    """Plain CREATE (the graph is known to be new), labels and types from the whitelists."""
    by_kind: dict[str, list[dict[str, str]]] = defaultdict(list)
    for node_id, (kind, name) in g.nodes.items():
        by_kind[kind].append({"id": node_id, "kind": kind, "name": name})
    edges: dict[str, list[dict[str, str]]] = defaultdict(list)
    for source, target, kind in g.edges:
        edges[kind].append({"source": source, "target": target})
    uri, auth, database = connection_params(store.url)
    async with AsyncGraphDatabase.driver(uri, auth=auth) as driver:
        for kind in NODE_KINDS:
            for rows in _chunks(by_kind[kind]):
                await driver.execute_query(
                    f"UNWIND $rows AS row CREATE (n:Entity:{kind} {{id: row.id, kind: row.kind, "
                    "name: row.name, placeholder: false})", {"rows": rows}, database_=database)
        for kind in EDGE_KINDS:
            for rows in _chunks(edges[kind]):
                await driver.execute_query(
                    "UNWIND $rows AS row MATCH (s:Entity {id: row.source}) "
                    f"MATCH (t:Entity {{id: row.target}}) CREATE (s)-[:{kind}]->(t)",
                    {"rows": rows}, database_=database)


async def load_sql(store: SqlGraph, g: Graph) -> None:
    nodes = [{"id": i, "kind": k, "name": n, "placeholder": False} for i, (k, n) in g.nodes.items()]
    edges = [{"source": s, "target": t, "kind": k} for s, t, k in sorted(g.edges)]
    async with store.engine.begin() as conn:
        for rows in _chunks(nodes):
            await conn.execute(insert(graph_nodes), list(rows))
        for rows in _chunks(edges):
            await conn.execute(insert(graph_edges), list(rows))


# ---------------------------------------------------------------- measuring


async def _timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = await fn()
    return (time.perf_counter() - start) * 1000, result


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Sample:
    ms: list[float] = field(default_factory=list)
    nodes: list[int] = field(default_factory=list)
    edges: list[int] = field(default_factory=list)

    def row(self, store: str, starts: str) -> dict[str, Any]:
        return {
            "store": store, "starts": starts, "queries": len(self.ms),
            "p50_ms": round(statistics.median(self.ms), 1),
            "p95_ms": round(_percentile(self.ms, 95), 1),
            "max_ms": round(max(self.ms), 1),
            "mean_nodes": round(statistics.mean(self.nodes)),
            "max_nodes": max(self.nodes),
            "mean_edges": round(statistics.mean(self.edges)),
        }


async def frontier_lineage(
    session: AsyncSession, start: str, direction: Direction, depth: int
) -> tuple[int, int]:
    """The alternative the store does not use, for comparison: breadth-first from Python,
    one query per level over the frontier, then one for the nodes and their edges.
    Returns the numbers of nodes and edges."""
    types = "|".join(EDGE_KINDS)
    arrow = f"-[:{types}]->" if direction == "UPSTREAM" else f"<-[:{types}]-"
    step = f"UNWIND $frontier AS id MATCH (:Entity {{id: id}}){arrow}(m) RETURN DISTINCT m.id AS id"
    visited, frontier = {start}, [start]
    for _ in range(depth):
        result = await session.run(step, {"frontier": frontier})
        frontier = [record["id"] async for record in result if record["id"] not in visited]
        if not frontier:
            break
        visited.update(frontier)
    result = await session.run(
        f"UNWIND $ids AS id MATCH (n:Entity {{id: id}}) "
        f"RETURN collect([n.id, n.kind, n.name, [(n)-[r:{types}]->(m) | [m.id, type(r)]]]) AS nodes",
        {"ids": list(visited)})
    found = (await result.single(strict=True))["nodes"]
    edges = sum(target in visited for _, _, _, out in found for target, _ in out)
    return len(found), edges


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    target = args.edges or (50_000 if args.quick else 1_000_000)
    t0 = time.perf_counter()
    g = build_graph(target)
    print(f"graph: {len(g.nodes):,} nodes, {len(g.edges):,} edges "
          f"(generated in {time.perf_counter() - t0:.1f} s)")

    limit = getattr(args, "limit", 1000) or None
    stores: dict[str, Neo4jGraph | SqlGraph] = {}
    neo4j: Neo4jGraph | None = None
    if not getattr(args, "no_neo4j", False):
        if args.neo4j:
            uri = args.neo4j
        else:
            from modeldb.infra.engines import resolve_engines

            uri = resolve_engines().neo4j_uri
        neo4j = stores["neo4j"] = Neo4jGraph(uri)
        await neo4j.setup()
        await neo4j.reset()
        ms, _ = await _timed(lambda: load_neo4j(neo4j, g))
        print(f"neo4j: loaded in {ms / 1000:.1f} s ({len(g.edges) / ms * 1000:,.0f} edges/s)")

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(str(Path(tmp) / "graph.db"))
        sql = stores["sqlite"] = SqlGraph(engine)
        await sql.setup()
        ms, _ = await _timed(lambda: load_sql(sql, g))
        print(f"sqlite: loaded in {ms / 1000:.1f} s ({len(g.edges) / ms * 1000:,.0f} edges/s)")
        postgres = await _postgres(g) if getattr(args, "postgres", False) else None
        if postgres is not None:
            stores["postgresql"] = postgres[0]

        rng = Random(args.seed)
        ids = sorted(g.nodes)
        starts = rng.sample(ids, args.starts)
        warmup = rng.sample(ids, 10)
        rows: list[dict[str, Any]] = []
        mismatches = compared = 0
        # Random starts are mostly runs and artifacts with modest answers; the shared
        # datasets' first versions are the worst case: their impact spans every team.
        cases: list[tuple[Direction, list[str], str]] = [
            ("UPSTREAM", starts, "random"), ("DOWNSTREAM", starts, "random"),
            ("DOWNSTREAM", g.hubs * 4, "shared dataset")]  # each 4 times: a p95 over 20
        for direction, case_starts, label in cases:
            answers: dict[str, list[LineageGraph]] = {}
            for name, store in stores.items():
                for start in warmup:
                    await store.lineage(start, direction, args.depth, limit=limit)
                sample = Sample()
                answers[name] = []
                for start in case_starts:
                    ms, answer = await _timed(partial(store.lineage, start, direction, args.depth,
                                                      limit=limit))
                    sample.ms.append(ms)
                    sample.nodes.append(len(answer.nodes))
                    sample.edges.append(len(answer.edges))
                    answers[name].append(answer)
                rows.append(sample.row(name, f"{direction} ({label})"))
            for name in answers.keys() - {"sqlite"}:
                mismatches += sum(a != b for a, b in zip(answers[name], answers["sqlite"], strict=True))
                compared += len(case_starts)
            if args.compare and neo4j is not None:
                address, auth, database = connection_params(neo4j.url)
                async with AsyncGraphDatabase.driver(address, auth=auth) as driver, \
                        driver.session(database=database) as session:
                    sample = Sample()
                    for start in warmup:
                        await frontier_lineage(session, start, direction, args.depth)
                    for start in case_starts:
                        ms, (nodes, edges) = await _timed(
                            partial(frontier_lineage, session, start, direction, args.depth))
                        sample.ms.append(ms)
                        sample.nodes.append(nodes)
                        sample.edges.append(edges)
                    rows.append(sample.row("neo4j, one query per level", f"{direction} ({label})"))
        print(f"answers identical in every store: {mismatches == 0} ({mismatches} of {compared} differ)")
        await engine.dispose()
        if postgres is not None:
            await postgres[0].engine.dispose()
            await postgres[1]()

    if neo4j is not None:
        if not args.keep:
            ms, _ = await _timed(neo4j.reset)
            print(f"neo4j: reset in {ms / 1000:.1f} s")
        await neo4j.close()
    return rows


async def _postgres(g: Graph) -> tuple[SqlGraph, Callable[[], Awaitable[None]]]:
    """The graph in a fresh PostgreSQL database, and how to drop that database."""
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg

    from modeldb.infra.engines import fresh_postgres_database, resolve_engines
    from modeldb.projectors.migrations import migrate

    url = await asyncio.to_thread(fresh_postgres_database, resolve_engines(), "modeldb_bench_lineage")
    store = SqlGraph(create_engine(url))
    await migrate(store.engine)
    ms, _ = await _timed(lambda: load_sql(store, g))
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE graph_edges")
        await conn.exec_driver_sql("ANALYZE graph_nodes")
    print(f"postgresql: loaded in {ms / 1000:.1f} s ({len(g.edges) / ms * 1000:,.0f} edges/s)")

    async def drop() -> None:
        parts = urlsplit(url)
        conn = await asyncpg.connect(urlunsplit(parts._replace(scheme="postgresql", path="/postgres")))
        try:
            await conn.execute(f'DROP DATABASE "{parts.path.strip("/")}"')
        finally:
            await conn.close()

    return store, drop


def table(rows: list[dict[str, Any]]) -> str:
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()) + " |"
              for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lineage_neo4j", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 50k edges instead of 1M")
    parser.add_argument("--edges", type=int, help="at least this many edges (overrides --quick)")
    parser.add_argument("--neo4j", help="bolt://host:port (default: resolve_engines())")
    parser.add_argument("--starts", type=int, default=50, help="random start nodes per direction")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42, help="picks the start nodes")
    parser.add_argument("--compare", action="store_true",
                        help="also time a breadth-first walk with one query per level, for comparison")
    parser.add_argument("--keep", action="store_true", help="leave the loaded graph in Neo4j")
    parser.add_argument("--limit", type=int, default=1000, help="node limit per answer (0: none)")
    parser.add_argument("--postgres", action="store_true", help="also the SQL graph on PostgreSQL")
    parser.add_argument("--no-neo4j", action="store_true", help="skip Neo4j (SQL stores only)")
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args))
    size = "quick" if args.quick and not args.edges else f"{args.edges or 1_000_000:,} edges"
    print(f"\nlineage depth {args.depth}, limit {args.limit or 'none'}, {args.starts} random starts "
          f"({size})\n")
    print(table(rows))


if __name__ == "__main__":
    main()
