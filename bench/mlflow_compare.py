"""ModelDB side by side with MLflow 3.17.2 (issue #8): the same workloads through each one's
client and server, with the issue's targets.

    python -m bench.mlflow_compare [--quick] [--engines] [--out DIR]

1. log_metric hot path (µs per call, p50/p99): ModelDB SDK vs MLflow sync and async;
2. ingest to queryable: runs x metrics x steps, points/s from the first call until the
   query API returns every point;
3. search: runs with 20 params and 10 metrics, ten filter+sort queries, p50/p95;
4. metric history: one long series, whole and downsampled to 1000 points;
5. lineage depth 10 (MLflow has none: ModelDB against its target);
6. replay: every projection rebuilt from the log, events/s;
7. memory: peak RSS of the clients (scenario 1) and of the servers.

Servers are child processes on free loopback ports (bench.processes): `modeldb serve` on an
embedded home and MLflow's tracking server on SQLite; with --engines also ModelDB on Kafka +
PostgreSQL and MLflow on PostgreSQL (fresh databases on the running server). Numbers are
printed and written to bench/results (latest.* for a full run, mlflow-quick.* for --quick),
never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from random import Random
from typing import Any

import httpx
import orjson

from bench import mlflow_data
from bench.mlflow_clients import HISTORY_KEY
from bench.processes import Server, healthy, mlflow_python, start_mlflow, start_modeldb

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Sizes:
    hot_modeldb: int
    hot_mlflow_async: int
    hot_mlflow_sync: int
    ingest: tuple[int, int, int]  # runs, metrics, steps
    search_runs: int
    search_repeats: int  # samples per query and store (fewer once budget_s is spent)
    history_points: int
    history_repeats: int
    lineage_edges: int
    drain_wait: float  # s the MLflow async client gets to deliver after its last call
    budget_s: float  # s one query may be repeated for, per store (at least once)


# 20 search samples at full size: the p95 of five is their maximum, so one hiccup of a
# shared 2-core machine decided a query's p95 (MLflow's slow queries stop at the budget).
QUICK = Sizes(50_000, 2_000, 200, (4, 5, 500), 1_000, 3, 50_000, 1, 20_000, 5.0, 15.0)
FULL = Sizes(1_000_000, 100_000, 2_000, (10, 10, 1_000), 100_000, 20, 1_000_000, 1, 1_000_000, 60.0, 30.0)

# Ten representative searches, in the filter language both share.
QUERIES: list[tuple[str, list[str]]] = [
    ("", []),
    ("metrics.m0 > 0.9", ["metrics.m0 DESC"]),
    ("params.p0 = 'v3'", []),
    ("params.p1 = 'v5' and metrics.m1 < 0.2", []),
    ("tags.team = 'team7'", ["metrics.m2 ASC"]),
    ("metrics.m3 > 0.5 and metrics.m4 < 0.5", ["metrics.m5 DESC"]),
    ("attributes.status = 'FAILED'", ["attributes.start_time DESC"]),
    ("params.p12 LIKE '0.1%'", []),
    ("", ["params.p3 ASC"]),
    ("metrics.m9 >= 0.99 and tags.team = 'team1'", ["metrics.m9 DESC"]),
]
PAGE = 100

# Scenario 3 asks for what mlflow.search_runs returns: a page of runs with their params,
# metrics and tags, no total (MLflow counts nothing); and again with totalCount, which
# costs a count of every match.
RUNS_QUERY = """query($f: String, $o: [String!], $n: Int!) {
  runs(filter: $f, orderBy: $o, first: $n, project: "bench", experiment: "search") {
    edges { node { id name status params { key value } metrics { key value }
    tags { key value } } } } }"""
COUNTED_QUERY = RUNS_QUERY.replace("edges {", "totalCount edges {", 1)
# Scenario 4 reads as a user does: modeldb.get_metric_history's query (the columnar
# `metricSeries`, whole or maxPoints=1000), parsed as the SDK parses it.
HISTORY_QUERY = """query($id: ID!, $key: String!, $maxPoints: Int) {
  run(id: $id) { metricSeries(key: $key, maxPoints: $maxPoints) } }"""
SAMPLED_QUERY = HISTORY_QUERY  # with maxPoints: 1000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def graphql(url: str, query: str, http: httpx.Client | None = None, **variables: Any) -> dict[str, Any]:
    """The query's `data`, parsed with orjson as the SDK parses it; over `http` (a kept-alive
    client, as the SDK's and MLflow's are) when given."""
    post = http.post if http is not None else partial(httpx.post, timeout=600)
    body = orjson.loads(post(f"{url}/graphql", json={"query": query, "variables": variables}).content)
    if body.get("errors"):
        raise RuntimeError(f"GraphQL error: {body['errors']}")
    return body["data"]


def child(*args: str, python: str = sys.executable, timeout: float = 3600) -> dict[str, Any]:
    """Run `python -m bench.mlflow_clients ARGS` and return the JSON it prints last."""
    done = subprocess.run([python, "-m", "bench.mlflow_clients", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"bench.mlflow_clients {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(fn: Any, repeats: int, budget_s: float = float("inf")) -> tuple[list[float], Any]:
    """`repeats` timed calls, fewer once `budget_s` is spent (always at least one)."""
    ms: list[float] = []
    result = None
    deadline = time.perf_counter() + budget_s
    while len(ms) < repeats and (not ms or time.perf_counter() < deadline):
        start = time.perf_counter()
        result = fn()
        ms.append((time.perf_counter() - start) * 1000)
    return ms, result


SLOW_MS = 10_000  # a warm-up slower than this counts as the first sample: no time to repeat it


def warm_then_timed(fn: Any, repeats: int, budget_s: float) -> tuple[list[float], Any]:
    warm, result = timed(fn, 1)
    if warm[0] > SLOW_MS:
        more, result = timed(fn, repeats - 1, budget_s - warm[0] / 1000) if warm[0] < budget_s * 1000 \
            else ([], result)
        return warm + more, result
    return timed(fn, repeats, budget_s)


# ---------------------------------------------------------------- the report


class Report:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.details: dict[str, Any] = {}
        self.notes: list[str] = []
        self.neo4j = False
        self.started = time.perf_counter()

    def add(self, scenario: str, measure: str, modeldb: float | None, mlflow: float | None,
            *, higher_is_better: bool, target: str = "", meets: bool | None = None, unit: str = "") -> None:
        ratio = None
        if modeldb and mlflow:
            ratio = modeldb / mlflow if higher_is_better else mlflow / modeldb
        self.rows.append({"scenario": scenario, "measure": measure, "unit": unit, "modeldb": modeldb,
                          "mlflow": mlflow, "advantage": ratio, "target": target, "meets": meets})
        print(f"  [{time.perf_counter() - self.started:5.0f} s] {scenario} | {measure}: "
              f"ModelDB {_fmt(modeldb)} {unit}, MLflow {_fmt(mlflow)} {unit}"
              f"{'' if ratio is None else f', ModelDB {ratio:,.1f}x'}", flush=True)

    def markdown(self, header: str) -> str:
        lines = [header, "", "| scenario | measure | ModelDB | MLflow 3.17.2 | ModelDB advantage | target | "
                 "met |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in self.rows:
            unit = f" {r['unit']}" if r["unit"] else ""
            adv = "" if r["advantage"] is None else f"{r['advantage']:,.1f}x"
            met = {True: "yes", False: "**no**", None: ""}[r["meets"]]
            mlflow = "n/a" if r["mlflow"] is None else _fmt(r["mlflow"]) + unit
            lines.append(f"| {r['scenario']} | {r['measure']} | {_fmt(r['modeldb'])}{unit} | {mlflow} | "
                         f"{adv} | {r['target']} | {met} |")
        lines += ["", "Advantage: how many times faster (or smaller) ModelDB is; below 1x MLflow is ahead.",
                  *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}" if value >= 1 else f"{value:.3g}"


def _ten_x(advantage: float | None) -> bool | None:
    return None if advantage is None else advantage >= 10


# ---------------------------------------------------------------- scenarios


def hot_path(report: Report, sizes: Sizes, modeldb: Server, mlflow: Server) -> None:
    print("1. log_metric hot path", flush=True)
    ours = child("hotpath", "modeldb", modeldb.url, str(sizes.hot_modeldb))
    sync = child("hotpath", "mlflow-sync", mlflow.url, str(sizes.hot_mlflow_sync))
    async_ = child("hotpath", "mlflow-async", mlflow.url, str(sizes.hot_mlflow_async),
                   str(sizes.drain_wait))
    report.details["hot_path"] = {"modeldb": ours, "mlflow_sync": sync, "mlflow_async": async_}
    for pct in ("p50", "p99"):
        report.add("1 log_metric", f"{pct}, MLflow synchronous ({sync['calls']:,} calls)",
                   ours[f"{pct}_us"], sync[f"{pct}_us"], higher_is_better=False, unit="µs",
                   target="≤ 2 µs; ≥ 10x MLflow",
                   meets=ours[f"{pct}_us"] <= 2 and ours[f"{pct}_us"] * 10 <= sync[f"{pct}_us"])
        report.add("1 log_metric", f"{pct}, MLflow synchronous=False ({async_['calls']:,} calls)",
                   ours[f"{pct}_us"], async_[f"{pct}_us"], higher_is_better=False, unit="µs",
                   target="≤ 2 µs; ≥ 10x MLflow",
                   meets=ours[f"{pct}_us"] <= 2 and ours[f"{pct}_us"] * 10 <= async_[f"{pct}_us"])
    drained = (f"delivered {async_['drain_s']} s after its last call" if async_["delivered"] else
               f"had not delivered everything {sizes.drain_wait:.0f} s after its last call "
               "(one request per call)")
    report.notes.append(f"1: ModelDB {ours['calls']:,} timed calls (SDK → `modeldb serve` over HTTP; the "
                        f"call only enqueues), delivered {ours['drain_s']} s after the last call; MLflow "
                        f"async {drained}.")


INGEST_REPEATS = 3  # the median run of each side is reported


def settle(server: Server) -> None:
    """Wait until `modeldb serve` has projected everything it was sent: scenario 1 leaves a
    backlog of a million points, and measuring scenario 2 on top of it would time both."""
    r = httpx.get(f"{server.url}/api/v1/projections", params={"wait": "true", "timeout": 60},
                  timeout=90)
    if r.status_code != 200:
        raise RuntimeError(f"{server.name} did not catch up within 60 s: {r.text[:300]}")


def _median_run(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(samples, key=lambda s: s["points_per_s"])[len(samples) // 2]


def ingest(report: Report, sizes: Sizes, pairs: list[tuple[str, Server, Server]]) -> None:
    print("2. ingest to queryable", flush=True)
    runs, metrics, steps = sizes.ingest
    shape = (str(runs), str(metrics), str(steps))
    for label, modeldb, mlflow in pairs:
        ours_all, theirs_all = [], []
        for _ in range(INGEST_REPEATS):
            settle(modeldb)
            ours_all.append(child("ingest", "modeldb", modeldb.url, *shape))
            theirs_all.append(child("ingest", "mlflow", mlflow.url, *shape))
        ours, theirs = _median_run(ours_all), _median_run(theirs_all)
        report.details.setdefault("ingest", {})[label] = {"modeldb": ours, "mlflow": theirs,
                                                          "modeldb_runs": ours_all,
                                                          "mlflow_runs": theirs_all}
        embedded = "embedded" in label
        ratio = ours["points_per_s"] / theirs["points_per_s"]
        report.add("2 ingest→queryable", f"{runs}x{metrics}x{steps:,} points, median of "
                   f"{INGEST_REPEATS}, {label}",
                   ours["points_per_s"], theirs["points_per_s"], higher_is_better=True, unit="points/s",
                   target="≥ 100,000/s embedded; ≥ 10x MLflow" if embedded else "≥ 10x MLflow",
                   meets=(ours["points_per_s"] >= 100_000 or not embedded) and ratio >= 10)


def search(report: Report, sizes: Sizes, pairs: list[tuple[str, Server, Server, str]]) -> None:
    from mlflow.tracking import MlflowClient

    print("3. search", flush=True)
    http = httpx.Client(timeout=600)
    for label, modeldb, mlflow, experiment_id in pairs:
        settle(modeldb)
        client = MlflowClient(mlflow.url)
        ours_all: list[float] = []
        counted_all: list[float] = []
        theirs_all: list[float] = []
        per_query = []
        for filter_, order in QUERIES:
            ours = partial(_search_ours, http, modeldb.url, RUNS_QUERY, filter_, order)
            counted = partial(_search_ours, http, modeldb.url, COUNTED_QUERY, filter_, order)
            theirs = partial(_search_theirs, client, experiment_id, filter_, order)
            ms_ours, n_ours = warm_then_timed(ours, sizes.search_repeats, sizes.budget_s)
            ms_counted, _ = warm_then_timed(counted, sizes.search_repeats, sizes.budget_s)
            ms_theirs, n_theirs = warm_then_timed(theirs, sizes.search_repeats, sizes.budget_s)
            ours_all += ms_ours
            counted_all += ms_counted
            theirs_all += ms_theirs
            per_query.append({"filter": filter_, "order_by": order, "modeldb_rows": n_ours,
                              "mlflow_rows": n_theirs, "modeldb_samples": len(ms_ours),
                              "mlflow_samples": len(ms_theirs), "modeldb_p50_ms": statistics.median(ms_ours),
                              "modeldb_p95_ms": percentile(ms_ours, 95),
                              "modeldb_counted_p50_ms": statistics.median(ms_counted),
                              "modeldb_counted_p95_ms": percentile(ms_counted, 95),
                              "mlflow_p50_ms": statistics.median(ms_theirs),
                              "mlflow_p95_ms": percentile(ms_theirs, 95)})
        report.details.setdefault("search", {})[label] = per_query
        differ = [q["filter"] or "(none)" for q in per_query if q["modeldb_rows"] != q["mlflow_rows"]]
        if differ:
            report.notes.append(f"3 ({label}): page sizes differ between the stores for {differ}")
        search_rows(report, sizes.search_runs, label, per_query, ours_all, theirs_all)
        search_rows(report, sizes.search_runs, f"{label}, with totalCount (MLflow: none)", per_query,
                    counted_all, theirs_all, "modeldb_counted_p95_ms")
    http.close()


def search_rows(report: Report, runs: int, label: str, per_query: list[dict[str, Any]],
                ours_all: list[float], theirs_all: list[float], ours_p95: str = "modeldb_p95_ms") -> None:
    """Pooled p50/p95 over every sample, and the slowest query's p95: MLflow's slow queries
    get fewer samples within the time budget, so the pooled figures understate them."""
    for pct in (50, 95):
        ours_p, theirs_p = percentile(ours_all, pct), percentile(theirs_all, pct)
        report.add("3 search", f"p{pct}, {runs:,} runs, 10 queries, {label}", ours_p,
                   theirs_p, higher_is_better=False, unit="ms",
                   target="p95 ≤ 100 ms at 100k; ≥ 10x MLflow" if pct == 95 else "≥ 10x MLflow",
                   meets=(ours_p <= 100 or pct == 50) and theirs_p >= 10 * ours_p)
    worst_o = max(q[ours_p95] for q in per_query)
    worst_t = max(q["mlflow_p95_ms"] for q in per_query)
    report.add("3 search", f"slowest query's p95, {runs:,} runs, {label}", worst_o, worst_t,
               higher_is_better=False, unit="ms", target="p95 ≤ 100 ms at 100k; ≥ 10x MLflow",
               meets=worst_o <= 100 and worst_t >= 10 * worst_o)


def _search_ours(http: httpx.Client, url: str, query: str, filter_: str, order: list[str]) -> int:
    return len(graphql(url, query, http, f=filter_ or None, o=order or None, n=PAGE)["runs"]["edges"])


def _search_theirs(client: Any, experiment_id: str, filter_: str, order: list[str]) -> int:
    return len(client.search_runs([experiment_id], filter_, order_by=order or None, max_results=PAGE))


def _history_ours(http: httpx.Client, url: str, run_id: str, sampled: bool) -> Any:
    """What modeldb.get_metric_history(run_id, key, max_points=1000 if sampled) does over HTTP
    (the SDK keeps its connection open, hence `http`)."""
    from modeldb._history import parse_series

    data = graphql(url, SAMPLED_QUERY if sampled else HISTORY_QUERY, http, id=run_id, key=HISTORY_KEY,
                   maxPoints=1000 if sampled else None)
    return parse_series(run_id, HISTORY_KEY, data)


def _sampled_theirs(http: httpx.Client, url: str, run_id: str) -> list[Any]:
    r = http.get(f"{url}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
                  params={"run_ids": run_id, "metric_key": HISTORY_KEY, "max_results": 1000}, timeout=600)
    r.raise_for_status()
    return r.json().get("metrics", [])


def has_max_points(url: str) -> bool:
    fields = graphql(url, '{ __type(name: "ExperimentRun") { fields { name args { name } } } }')
    return any(f["name"] == "metricSeries" and any(a["name"] == "maxPoints" for a in f["args"])
               for f in fields["__type"]["fields"])


def history(report: Report, sizes: Sizes, pairs: list[tuple[str, Server, Server, str, str]]) -> None:
    from mlflow.tracking import MlflowClient

    print("4. metric history", flush=True)
    n = sizes.history_points
    # One kept-alive connection for each side, as the SDK and a browser keep theirs (a new
    # httpx client per call costs ~25 ms of TLS-context setup on this machine, for nothing).
    http = httpx.Client(timeout=600)
    for label, modeldb, mlflow, ours_id, theirs_id in pairs:
        settle(modeldb)
        client = MlflowClient(mlflow.url)
        ms_ours, rows = timed(partial(_history_ours, http, modeldb.url, ours_id, False),
                              sizes.history_repeats)
        ms_theirs, points = timed(partial(client.get_metric_history, theirs_id, HISTORY_KEY),
                                  sizes.history_repeats)
        if len(rows) != n or len(points) != n:
            report.notes.append(f"4 ({label}): expected {n:,} points, ModelDB gave {len(rows):,}, "
                                f"MLflow {len(points):,}")
        full_o, full_t = statistics.median(ms_ours), statistics.median(ms_theirs)
        report.add("4 metric history", f"{n:,} points, whole series, median, {label}", full_o, full_t,
                   higher_is_better=False, unit="ms", target="≥ 10x MLflow", meets=full_t >= 10 * full_o)

        repeats = sizes.search_repeats
        ms_sampled_t, sampled_t = timed(partial(_sampled_theirs, http, mlflow.url, theirs_id), repeats,
                                        sizes.budget_s)
        if has_max_points(modeldb.url):
            ms_sampled_o, sampled_o = timed(partial(_history_ours, http, modeldb.url, ours_id, True), repeats)
            ours_p95: float | None = percentile(ms_sampled_o, 95)
            count_o: int | None = len(sampled_o)
        else:
            ours_p95, count_o = None, None
            report.notes.append("4: metricSeries(maxPoints) does not exist yet: downsampled is n/a")
        theirs_p95 = percentile(ms_sampled_t, 95)
        report.add("4 metric history", f"{n:,} points → ≤ 1000, p95, {label}", ours_p95, theirs_p95,
                   higher_is_better=False, unit="ms", target="≤ 50 ms at 1M; ≥ 10x MLflow",
                   meets=None if ours_p95 is None else ours_p95 <= 50 and theirs_p95 >= 10 * ours_p95)
        report.details.setdefault("history", {})[label] = {
            "modeldb_whole_ms": ms_ours, "mlflow_whole_ms": ms_theirs, "modeldb_sampled_points": count_o,
            "mlflow_sampled_points": len(sampled_t), "mlflow_sampled_ms": ms_sampled_t}
    http.close()
    report.notes.append("4: ModelDB reads as `modeldb.get_metric_history` does (GraphQL `metricSeries`, "
                        "columns; max_points=1000 downsampled); the per-point `metricHistory` field "
                        "is not timed (about 19 s whole, bench/results of earlier rounds). "
                        "MLflow's downsampled read is its UI's `get-history-bulk-interval` "
                        "(max_results=1000); the whole series is `MlflowClient.get_metric_history`.")


def lineage(report: Report, sizes: Sizes, neo4j: bool) -> None:
    print("5. lineage depth 10", flush=True)
    from bench import lineage_neo4j

    if neo4j:  # resets the Neo4j graph (Community has one database): not while tests use it
        rows = asyncio.run(lineage_neo4j.run(Namespace(
            quick=False, edges=sizes.lineage_edges, neo4j=None, starts=50, depth=10, seed=42,
            compare=False, keep=False, limit=LINEAGE_LIMIT, postgres=True, no_neo4j=False)))
    else:
        rows = asyncio.run(_lineage_sqlite(sizes.lineage_edges))
    report.details["lineage"] = rows
    for row in rows:
        store = {"sqlite": "SQL graph (SQLite)", "postgresql": "SQL graph (PostgreSQL)",
                 "neo4j": "Neo4j"}.get(row["store"], row["store"])
        report.add("5 lineage depth 10", f"p95, {store}, {row['starts']}, limit {LINEAGE_LIMIT:,}, "
                   f"{sizes.lineage_edges:,} edges",
                   row["p95_ms"], None, higher_is_better=False, unit="ms", target="p95 ≤ 50 ms",
                   meets=row["p95_ms"] <= 50)
    report.notes.append("5: MLflow has no lineage graph; ModelDB alone against the target "
                        f"(store-level `lineage()`, no HTTP, with the API's default node limit of "
                        f"{LINEAGE_LIMIT:,}: nearest nodes first, `truncated` beyond).")


LINEAGE_LIMIT = 1000  # the GraphQL default (modeldb.projectors.lineage.DEFAULT_LIMIT)


async def _lineage_sqlite(edges: int) -> list[dict[str, Any]]:
    from bench.lineage_neo4j import Sample, build_graph, load_sql
    from modeldb.projectors.db import create_engine
    from modeldb.projectors.graph_sql import SqlGraph

    g = build_graph(edges)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(str(Path(tmp) / "graph.db"))
        try:
            store = SqlGraph(engine)
            await store.setup()
            await load_sql(store, g)
            rng = Random(42)
            starts = rng.sample(sorted(g.nodes), 50)
            # The shared datasets' first versions (the worst case: their impact spans every
            # team), each 4 times for a p95 over 20 queries.
            for direction, case, label in [("UPSTREAM", starts, "random"), ("DOWNSTREAM", starts, "random"),
                                           ("DOWNSTREAM", g.hubs * 4, "shared dataset")]:
                for start in starts[:5]:
                    await store.lineage(start, direction, 10, limit=LINEAGE_LIMIT)  # type: ignore[arg-type]
                sample = Sample()
                for start in case:
                    t0 = time.perf_counter()
                    answer = await store.lineage(start, direction, 10,  # type: ignore[arg-type]
                                                 limit=LINEAGE_LIMIT)
                    sample.ms.append((time.perf_counter() - t0) * 1000)
                    sample.nodes.append(len(answer.nodes))
                    sample.edges.append(len(answer.edges))
                rows.append(sample.row("sqlite", f"{direction} ({label})"))
        finally:
            await engine.dispose()
    return rows


def replay(report: Report, label: str, result: mlflow_data.Replay) -> None:
    rate = result.events / result.total_s
    report.details.setdefault("replay", {})[label] = asdict(result) | {"events_per_s": rate}
    report.add("6 replay", f"{result.events:,} events ({result.points:,} points), "
               f"all {len(result.seconds)} projections, {label}",
               rate, None, higher_is_better=True, unit="events/s", target="≥ 200,000 events/s",
               meets=rate >= 200_000)
    for name, seconds in result.seconds.items():
        report.add("6 replay", f"projection {name} alone, {label}", result.events / seconds, None,
                   higher_is_better=True, unit="events/s")


def memory(report: Report, servers: list[tuple[str, Server, Server]]) -> None:
    hot = report.details["hot_path"]
    ours, theirs = hot["modeldb"], hot["mlflow_async"]
    report.add("7 memory", "client peak RSS, whole process", ours["peak_rss_mb"], theirs["peak_rss_mb"],
               higher_is_better=False, unit="MiB")
    for name, r in (("ModelDB", ours), ("MLflow async", theirs)):
        report.add("7 memory", f"{name} client: RSS growth over {r['calls']:,} log_metric calls",
                   round(r["peak_rss_mb"] - r["rss_base_mb"], 1) if name == "ModelDB" else None,
                   None if name == "ModelDB" else round(r["peak_rss_mb"] - r["rss_base_mb"], 1),
                   higher_is_better=False, unit="MiB")
    report.notes.append(f"7: ModelDB client RSS {ours['rss_base_mb']} MiB after warm-up, "
                        f"{ours['rss_after_logging_mb']} MiB right after its last call, with "
                        f"{ours['queued_after_logging']:,} points still queued; the call counts differ, "
                        "so the growth rows are not a ratio.")
    for label, modeldb, mlflow in servers:
        report.add("7 memory", f"server peak RSS under load (scenarios 1-4), {label}", modeldb.peak_rss_mb,
                   mlflow.peak_rss_mb, higher_is_better=False, unit="MiB")
        report.add("7 memory", f"server peak private memory (RSS less mapped files), {label}",
                   modeldb.peak_private_mb, mlflow.peak_private_mb, higher_is_better=False, unit="MiB")
    report.notes.append("7: RSS counts the pages of files a process maps: ModelDB reads its SQLite read "
                        "model through a memory map (up to 256 MiB per connection), pages of the OS "
                        "page cache that MLflow's reads also use, without mapping them; private memory "
                        "(RSS less file-backed and shared pages) is what each process holds itself.")


# ---------------------------------------------------------------- plots


def plots(report: Report, out: Path, suffix: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    compared = [r for r in report.rows if r["modeldb"] and r["mlflow"] and not r["scenario"].startswith("7")]
    if compared:
        fig, ax = plt.subplots(figsize=(10, 0.45 * len(compared) + 1.5))
        labels = [f"{r['scenario']}: {r['measure']}"[:80] for r in compared]
        values = [r["advantage"] for r in compared]
        ax.barh(labels, values, color=["tab:green" if v >= 10 else "tab:orange" if v >= 1 else "tab:red"
                                       for v in values])
        ax.axvline(10, color="black", linestyle="--", linewidth=1, label="target 10x")
        ax.axvline(1, color="grey", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("ModelDB advantage over MLflow 3.17.2 (x, log scale)")
        ax.invert_yaxis()
        ax.legend(loc="lower right")
        fig.tight_layout()
        paths.append(out / f"mlflow-advantage{suffix}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    for label, queries in report.details.get("search", {}).items():
        fig, ax = plt.subplots(figsize=(10, 4.5))
        xs = range(len(queries))
        ax.bar([x - 0.2 for x in xs], [q["modeldb_p95_ms"] for q in queries], 0.4, label="ModelDB p95")
        ax.bar([x + 0.2 for x in xs], [q["mlflow_p95_ms"] for q in queries], 0.4, label="MLflow p95")
        ax.axhline(100, color="black", linestyle="--", linewidth=1, label="target 100 ms")
        ax.set_xticks(list(xs), [f"Q{i + 1}" for i in xs])
        ax.set_yscale("log")
        ax.set_ylabel("ms (log scale)")
        ax.set_title(f"search, {label}")
        ax.legend()
        fig.tight_layout()
        slug = "".join(c if c.isalnum() else "-" for c in label).strip("-")
        paths.append(out / f"mlflow-search-{slug}{suffix}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


# ---------------------------------------------------------------- the run


def run(quick: bool, engines: bool, neo4j: bool | None = None, **overrides: int) -> Report:
    """`overrides`: Sizes fields to change (e.g. search_runs=50_000); `neo4j` defaults to `engines`."""
    # MLflow's client gives up on a request after 120 s; at 100,000 runs some of its
    # metric- and param-sorted searches take longer than that.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "3600")
    sizes = replace(QUICK if quick else FULL, **{k: v for k, v in overrides.items() if v})
    report = Report()
    report.neo4j = engines if neo4j is None else neo4j
    python = mlflow_python()
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            _run(report, sizes, engines, python, tmp, servers)
        finally:
            for server in servers:
                server.stop()
    order = "1234567"
    report.rows.sort(key=lambda r: order.index(r["scenario"][0]))
    report.notes.sort(key=lambda n: n[0])
    return report


def _run(report: Report, sizes: Sizes, engines: bool, python: str, tmp: Path, servers: list[Server]) -> None:
    t0 = time.perf_counter()
    print(f"loading {sizes.search_runs:,} runs and a {sizes.history_points:,}-point history", flush=True)
    mlflow_sqlite = child("load-mlflow", f"sqlite:///{tmp / 'mlflow.db'}", str(tmp / "mlflow-art"),
                          str(sizes.search_runs), str(sizes.history_points), python=python)
    wire, ours_history = mlflow_data.events(sizes.search_runs, sizes.history_points)
    embedded, env = mlflow_data.load(tmp / "modeldb", wire)
    replay(report, "embedded (SQLite log → SQLite)", embedded)
    pg = None
    if engines:
        from modeldb.infra.engines import fresh_postgres_database, fresh_topic_name, resolve_engines

        found = resolve_engines()
        mlflow_db = fresh_postgres_database(found, "bench_mlflow")
        # psycopg2 named: SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql://
        pg = "postgresql+psycopg2://" + mlflow_db.split("://", 1)[1]
        mlflow_pg = child("load-mlflow", pg, str(tmp / "mlflow-pg-art"), str(sizes.search_runs),
                          str(sizes.history_points), python=python)
        kafka = f"kafka://{found.kafka_bootstrap}?topic={fresh_topic_name('bench-mlflow')}"
        at_scale, env_pg = mlflow_data.load(tmp / "modeldb-pg", wire, event_log=kafka,
                                            read_db=fresh_postgres_database(found, "bench_modeldb"))
        replay(report, "Kafka → PostgreSQL", at_scale)
    del wire
    report.notes.append(f"3/4/6: data loaded in {time.perf_counter() - t0:.0f} s; MLflow's rows through its "
                        f"ORM tables (SQLite {mlflow_sqlite['search_load_s']} s), ModelDB's as events "
                        "appended to its log and then replayed (scenario 6).")

    print("starting servers", flush=True)
    started = [start_modeldb(tmp / "modeldb", env), start_mlflow(f"sqlite:///{tmp / 'mlflow.db'}",
                                                                 tmp / "mlflow-srv", python)]
    if pg is not None:
        started += [start_modeldb(tmp / "modeldb-pg", env_pg | {"MODELDB_GRAPH": "sql"}),
                    start_mlflow(pg, tmp / "mlflow-pg-srv", python)]
    servers += started
    for server in started:
        healthy(server)
    pairs = [("embedded / SQLite", started[0], started[1])]
    searches = [("SQLite", started[0], started[1], mlflow_sqlite["experiment_id"])]
    histories = [("SQLite", started[0], started[1], ours_history, mlflow_sqlite["history_run_id"])]
    if pg is not None:
        pairs.append(("Kafka+PostgreSQL / PostgreSQL", started[2], started[3]))
        searches.append(("PostgreSQL", started[2], started[3], mlflow_pg["experiment_id"]))
        histories.append(("PostgreSQL", started[2], started[3], ours_history, mlflow_pg["history_run_id"]))
    hot_path(report, sizes, started[0], started[1])
    ingest(report, sizes, pairs)
    search(report, sizes, searches)
    history(report, sizes, histories)
    memory(report, pairs)
    for server in started:
        server.stop()
    lineage(report, sizes, report.neo4j)


def write(report: Report, quick: bool, engines: bool, out: Path = RESULTS) -> str:
    mode = ("quick" if quick else "full") + ("-engines" if engines else "")
    header = (f"ModelDB vs MLflow 3.17.2 ({mode}), {time.strftime('%Y-%m-%d %H:%M')}, "
              f"Python {platform.python_version()}, {platform.machine()}, {_cpus()} CPUs")
    out.mkdir(exist_ok=True)
    suffix = "" if not quick else "-quick"
    name = "latest" if not quick else "mlflow-quick"
    paths = plots(report, out, suffix)
    text = report.markdown(header)
    if paths:
        text += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in paths) + "\n"
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(json.dumps({"header": header, "rows": report.rows,
                                                  "details": report.details, "notes": report.notes},
                                                 indent=2, default=str))
    return text


def _cpus() -> int:
    return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mlflow_compare",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about two minutes")
    parser.add_argument("--engines", action="store_true",
                        help="also ModelDB on Kafka+PostgreSQL, MLflow on PostgreSQL, lineage on Neo4j")
    parser.add_argument("--no-neo4j", dest="neo4j", action="store_false", default=None,
                        help="with --engines, keep lineage on SQLite (Neo4j's graph is reset)")
    parser.add_argument("--search-runs", type=int, help="override the size of scenario 3")
    parser.add_argument("--history-points", type=int, help="override the size of scenario 4")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = run(args.quick, args.engines, args.neo4j, search_runs=args.search_runs,
                 history_points=args.history_points)
    print(write(report, args.quick, args.engines, args.out))


if __name__ == "__main__":
    main()
