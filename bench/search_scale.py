"""`runs(filter, orderBy)` latency at scale on one read model, ModelDB alone (issue #4).

    python -m bench.search_scale --runs 100000 [--postgres]

Loads N runs of 20 params and 10 metrics (bench.mlflow_data, the same runs the MLflow
comparison uses) into an embedded log, projects them into SQLite or a fresh PostgreSQL
database of the local launcher, then times the comparison's ten filter+sort queries through
the GraphQL schema in-process (no HTTP), first page of 100: without a total (as
mlflow.search_runs returns it), then with totalCount.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.mlflow_compare import COUNTED_QUERY, PAGE, QUERIES, RUNS_QUERY, percentile
from bench.mlflow_data import events
from modeldb.infra.ops import freeze_startup_heap
from modeldb.infra.settings import Settings
from modeldb.infra.system import System
from modeldb.projectors.db import create_engine
from modeldb.projectors.migrations import migrate
from modeldb.query_api.app import build_schema, graphql_context
from modeldb.query_api.runs import RunQueries
from modeldb.writer import Writer


async def measure(runs: int, read_db: str | None, repeats: int) -> list[dict[str, object]]:
    settings = Settings.load(Path(tempfile.mkdtemp(prefix="modeldb-search-")))
    if read_db:
        settings = replace(settings, read_db=read_db)
        engine = create_engine(read_db)
        await migrate(engine)
        await engine.dispose()
    wire, _ = events(runs, 1)
    system = await System.open(settings)
    try:
        writer = Writer(system.log)
        for i in range(0, len(wire), 5000):
            await system.log.append(writer.prepare(wire[i : i + 5000], "bench"))
        start = time.perf_counter()
        await system.runtimes["sql"].catch_up()
        print(f"projected {len(wire):,} events in {time.perf_counter() - start:.0f} s", flush=True)
        del wire  # then freeze what is left, as `modeldb serve` freezes its startup heap
        freeze_startup_heap()
        schema, rows = build_schema(), []
        for filter_, order in QUERIES:
            row: dict[str, object] = {"filter": filter_, "order_by": order}
            for name, query in (("page", RUNS_QUERY), ("counted", COUNTED_QUERY)):
                samples = []
                for _ in range(repeats + 1):  # the first one warms caches and is not counted
                    began = time.perf_counter()
                    result = await schema.execute(
                        query, variable_values={"f": filter_ or None, "o": order, "n": PAGE},
                        context_value=graphql_context(RunQueries(system.engine), system.graph, system.audit))
                    samples.append((time.perf_counter() - began) * 1000)
                    assert not result.errors, result.errors
                timed = samples[1:]
                row |= {f"{name}_p50_ms": statistics.median(timed), f"{name}_p95_ms": percentile(timed, 95)}
            row["total"] = result.data["runs"]["totalCount"]
            rows.append(row)
        return rows
    finally:
        await system.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search_scale")
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--postgres", action="store_true",
                        help="a fresh database of the launcher's PostgreSQL")
    args = parser.parse_args()
    read_db = None
    if args.postgres:
        from modeldb.infra.engines import fresh_postgres_database, resolve_engines

        read_db = fresh_postgres_database(resolve_engines(), "modeldb_bench_search")
    rows = asyncio.run(measure(args.runs, read_db, args.repeats))
    store = "PostgreSQL" if read_db else "SQLite"
    print(f"\n{args.runs:,} runs, {store}, first page of {PAGE}: as search_runs returns it (no total), "
          "then with totalCount\n")
    print("| filter | order by | matches | p50 ms | p95 ms | with totalCount p50 ms | p95 ms |\n"
          "| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| `{r['filter']}` | {', '.join(r['order_by'])} | {r['total']:,} | {r['page_p50_ms']:.1f} | "
              f"{r['page_p95_ms']:.1f} | {r['counted_p50_ms']:.1f} | {r['counted_p95_ms']:.1f} |")
    for name in ("page", "counted"):
        every = [r[f"{name}_p95_ms"] for r in rows]
        print(f"\n{name}: median of the per-query p95 {statistics.median(every):.1f} ms; "
              f"worst {max(every):.1f} ms")


if __name__ == "__main__":
    main()
