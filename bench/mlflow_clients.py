"""The client side of the MLflow comparison, one measurement per child process so that each
client's threads, queues and memory are its own:

    python -m bench.mlflow_clients hotpath {modeldb|mlflow-sync|mlflow-async} URL CALLS [DRAIN_WAIT]
    python -m bench.mlflow_clients ingest {modeldb|mlflow} URL RUNS METRICS STEPS
    python -m bench.mlflow_clients load-mlflow BACKEND_URI ARTIFACTS RUNS HISTORY_POINTS

Each prints one JSON object on its last line. `load-mlflow` runs under the MLflow server's
python (see bench.processes) and fills a store through MLflow's own store API.
Everything here imports lazily: the same file serves both interpreters.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from random import Random
from typing import Any

SEARCH_PARAMS = 20
SEARCH_METRICS = 10
HISTORY_KEY = "loss"


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    """This process's peak RSS. Not getrusage's ru_maxrss: Linux keeps that across fork and
    exec, so a child reports its parent's peak when the parent's was larger."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; bytes on macOS


def _percentiles(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    n = len(ordered)
    return {f"p{p}_us": ordered[min(n - 1, int(n * p / 100))] / 1000 for p in (50, 99)}


# ---------------------------------------------------------------- the data both stores get


def search_runs(n: int, seed: int = 11) -> Iterator[dict[str, Any]]:
    """`n` runs with 20 params, 10 metrics (step 0), a team tag and a status, the same for a
    given seed in both stores."""
    rng = Random(seed)
    for i in range(n):
        params = {f"p{j}": f"v{rng.randrange(10)}" for j in range(10)}
        params |= {f"p{j}": f"{rng.random():.4f}" for j in range(10, SEARCH_PARAMS)}
        yield {
            "name": f"run-{i}",
            "params": params,
            "metrics": {f"m{j}": rng.random() for j in range(SEARCH_METRICS)},
            "team": f"team{rng.randrange(20)}",
            "status": "FAILED" if rng.random() < 0.1 else "FINISHED",
            "start_ms": 1_700_000_000_000 + i * 1000,
        }


def history_value(step: int) -> float:
    return 1.0 / (1 + step) + (step % 7) * 1e-4


# ---------------------------------------------------------------- scenario 1 and 7: log_metric


def hotpath(which: str, url: str, calls: int, drain_wait: float = 60.0) -> dict[str, Any]:
    """µs per log_metric call, each timed; then how long the client needs to deliver."""
    clock = time.perf_counter_ns
    samples = [0] * calls
    if which == "modeldb":
        import tempfile

        import modeldb
        from modeldb import _client

        spool = tempfile.mkdtemp(prefix="bench-spool-")
        modeldb.init(url, project="bench", experiment="hotpath", spool_dir=spool)
        run = modeldb.start_run(name="hotpath")
        log = run.log_metric
        for step in range(min(calls, 20_000)):  # warm up like bench_client: worker, caches
            log("warmup", 0.5, step)
        modeldb.flush(120)
        base = _rss_mb()  # after imports and warm-up: what follows is the logging's own
        for step in range(calls):
            t0 = clock()
            log("loss", 0.5, step)
            samples[step] = clock() - t0
        points = _client.current().points  # points are written into chunks, see modeldb._batch
        queued = points.queued + points.chunk.n  # not yet taken by the worker
        rss_logged = _rss_mb()
        t0 = clock()
        delivered = modeldb.flush(600)
        run.end()
        modeldb.flush(60)
    else:
        import threading

        import mlflow

        mlflow.set_tracking_uri(url)
        mlflow.set_experiment("hotpath")
        synchronous = which == "mlflow-sync"
        # MLflow's defaults: async logging sends one log-batch request per call (its
        # MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS merges them, but with it flush() hung in
        # 3.17.2 here), so its queue drains at the server's request rate: the drain is
        # waited for at most `drain_wait` s, then the process exits with points unsent.
        mlflow.start_run(run_name="hotpath")  # no `with`: its exit would wait for the drain
        for step in range(min(calls, 50)):
            mlflow.log_metric("warmup", 0.5, step=step, synchronous=synchronous)
        mlflow.flush_async_logging()
        base = _rss_mb()
        for step in range(calls):
            t0 = clock()
            mlflow.log_metric("loss", 0.5, step=step, synchronous=synchronous)
            samples[step] = clock() - t0
        queued = -1  # MLflow exposes no queue length
        rss_logged = _rss_mb()
        t0 = clock()
        flusher = threading.Thread(target=mlflow.flush_async_logging, daemon=True)
        flusher.start()
        flusher.join(drain_wait)
        delivered = not flusher.is_alive()
        if delivered:
            mlflow.end_run()
    drain_s = round((clock() - t0) / 1e9, 3) if delivered else None
    return {"client": which, "calls": calls, **_percentiles(samples),
            "mean_us": sum(samples) / calls / 1000, "drain_s": drain_s,
            "delivered": delivered, "queued_after_logging": queued,
            "rss_base_mb": round(base, 1), "rss_after_logging_mb": round(rss_logged, 1),
            "peak_rss_mb": round(_peak_rss_mb(), 1)}


# ---------------------------------------------------------------- scenario 2: ingest


_http: Any = None


def _graphql(url: str, query: str, **variables: Any) -> dict[str, Any]:
    global _http
    import httpx

    if _http is None:  # one keep-alive connection, as any client polling would use (a new
        _http = httpx.Client(timeout=120)  # httpx client per poll costs ~30 ms of TLS setup)
    r = _http.post(f"{url}/graphql", json={"query": query, "variables": variables})
    body = r.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL error: {body['errors']}")
    return body["data"]


VISIBLE = """query($e: String!, $n: Int!) { runs(project: "ingest", experiment: $e, first: $n) {
  edges { node { metrics { key count } } } } }"""


def ingest(which: str, url: str, runs: int, metrics: int, steps: int) -> dict[str, Any]:
    """From the first logging call until every point can be read back through the query API.
    ModelDB: log_metrics per step through the SDK (it batches); MLflow: log_batch of 1000
    points (its fastest path; each call returns once the points are committed)."""
    total = runs * metrics * steps
    experiment = f"ingest-{uuid.uuid4().hex[:8]}"
    keys = [f"m{k}" for k in range(metrics)]
    if which == "modeldb":
        import tempfile

        import modeldb

        modeldb.init(url, project="ingest", experiment=experiment,
                     spool_dir=tempfile.mkdtemp(prefix="bench-spool-"))
        start = time.perf_counter()
        for r in range(runs):
            run = modeldb.start_run(name=f"r{r}")
            for step in range(steps):
                run.log_metrics({k: history_value(step) for k in keys}, step=step)
            run.end()
        logged = time.perf_counter() - start
        seen, polls = 0, 0
        deadline = time.perf_counter() + 600
        while seen < total:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"after 600 s the query API shows {seen} of {total} points")
            data = _graphql(url, VISIBLE, e=experiment, n=runs)["runs"]["edges"]
            seen = sum(m["count"] for edge in data for m in edge["node"]["metrics"])
            polls += 1
            if seen < total:
                time.sleep(0.05)
        elapsed = time.perf_counter() - start
        modeldb.flush(60)
    else:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        client = MlflowClient(url)
        exp = client.create_experiment(experiment)
        start = time.perf_counter()
        ids = []
        for r in range(runs):
            run_id = client.create_run(exp, run_name=f"r{r}").info.run_id
            ids.append(run_id)
            batch: list[Any] = []
            for step in range(steps):
                ts = int(time.time() * 1000)
                batch += [Metric(k, history_value(step), ts, step) for k in keys]
                if len(batch) >= 1000:
                    client.log_batch(run_id, metrics=batch[:1000])
                    batch = batch[1000:]
            if batch:
                client.log_batch(run_id, metrics=batch)
            client.set_terminated(run_id)
        logged = time.perf_counter() - start
        # log_batch returns after the commit: reading the last run's last key proves it.
        polls = 1
        assert len(client.get_metric_history(ids[-1], keys[-1])) == steps
        elapsed = time.perf_counter() - start
        seen = sum(len(client.get_metric_history(run_id, k)) for run_id in ids for k in keys)
        if seen != total:
            raise RuntimeError(f"MLflow has {seen} of {total} points")
    return {"client": which, "points": total, "runs": runs, "metrics": metrics, "steps": steps,
            "seconds": round(elapsed, 3), "logging_s": round(logged, 3), "polls": polls,
            "points_per_s": round(total / elapsed), "peak_rss_mb": round(_peak_rss_mb(), 1)}


# ---------------------------------------------------------------- scenario 3 and 4: MLflow data


def load_mlflow(backend_uri: str, artifacts: str, runs: int, history_points: int) -> dict[str, Any]:
    """Search runs and one long metric history into an MLflow store, in this process.

    The experiments and the history run come from the store API; the rows themselves go in
    through MLflow's own ORM tables (`mlflow.store.tracking.dbmodels`) in transactions of
    1000 runs / 50,000 points: the rows `create_run`, `log_batch` and `update_run_info`
    write, at about a hundred times their speed (they commit three times per run)."""
    from mlflow.entities import Metric
    from mlflow.store.tracking.dbmodels import models as orm
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy import insert

    store = SqlAlchemyStore(backend_uri, artifacts)
    exp = store.create_experiment("search")
    start = time.perf_counter()
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        rows: dict[Any, list[dict[str, Any]]] = {orm.SqlRun: [], orm.SqlParam: [], orm.SqlTag: [],
                                                 orm.SqlMetric: [], orm.SqlLatestMetric: []}
        for run in chunk:
            rid = uuid.uuid4().hex
            rows[orm.SqlRun].append({
                "run_uuid": rid, "name": run["name"], "source_type": "LOCAL", "source_name": "",
                "entry_point_name": "", "user_id": "bench", "status": run["status"],
                "start_time": run["start_ms"], "end_time": run["start_ms"] + 60_000,
                "source_version": "", "lifecycle_stage": "active",
                "artifact_uri": f"{artifacts}/{exp}/{rid}/artifacts", "experiment_id": int(exp)})
            rows[orm.SqlParam] += [{"key": k, "value": v, "run_uuid": rid} for k, v in run["params"].items()]
            rows[orm.SqlTag] += [{"key": "team", "value": run["team"], "run_uuid": rid},
                                 {"key": "mlflow.runName", "value": run["name"], "run_uuid": rid}]
            points = [{"key": k, "value": v, "timestamp": run["start_ms"], "step": 0, "is_nan": False,
                       "run_uuid": rid} for k, v in run["metrics"].items()]
            rows[orm.SqlMetric] += points
            rows[orm.SqlLatestMetric] += points
        with store.ManagedSessionMaker() as session:
            for model, values in rows.items():
                session.execute(insert(model.__table__), values)
        chunk.clear()

    for run in search_runs(runs):
        chunk.append(run)
        if len(chunk) == 1000:
            flush()
    if chunk:
        flush()
    search_s = time.perf_counter() - start
    hist_exp = store.create_experiment("history")
    history = store.create_run(hist_exp, "bench", 1_700_000_000_000, [], "history").info.run_id
    start = time.perf_counter()
    last = history_points - 1  # logged through log_batch below, which sets latest_metrics
    for first in range(0, last, 50_000):
        steps = range(first, min(last, first + 50_000))
        with store.ManagedSessionMaker() as session:
            session.execute(insert(orm.SqlMetric.__table__), [
                {"key": HISTORY_KEY, "value": history_value(s), "timestamp": 1_700_000_000_000 + s,
                 "step": s, "is_nan": False, "run_uuid": history} for s in steps])
    store.log_batch(history, metrics=[Metric(HISTORY_KEY, history_value(last), 1_700_000_000_000 + last,
                                             last)], params=[], tags=[])
    history_s = time.perf_counter() - start
    return {"experiment_id": exp, "history_run_id": history, "search_load_s": round(search_s, 1),
            "history_load_s": round(history_s, 1)}


def main(argv: list[str]) -> int:
    command, *rest = argv
    if command == "hotpath":
        result = hotpath(rest[0], rest[1], int(rest[2]), *(float(x) for x in rest[3:4]))
    elif command == "ingest":
        result = ingest(rest[0], rest[1], *(int(x) for x in rest[2:5]))
    elif command == "load-mlflow":
        result = load_mlflow(rest[0], rest[1], int(rest[2]), int(rest[3]))
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result), flush=True)
    if command == "hotpath" and not result["delivered"]:
        import os

        os._exit(0)  # undelivered MLflow points: the interpreter's exit would wait for them
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
