"""The MLflow comparison's own correctness: the data set ModelDB is loaded with answers the ten
search queries as the generated runs say it must (the same runs MLflow gets), the history run
holds every point, and the report renders the targets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench import mlflow_data
from bench.mlflow_clients import HISTORY_KEY, _peak_rss_mb, history_value, search_runs
from bench.mlflow_compare import QUERIES, Report, percentile
from modeldb.projectors.db import create_engine
from modeldb.query_api.runs import RunQueries

RUNS = 300

# What each of QUERIES selects, evaluated in Python on the generated runs.
EXPECTED: list[Callable[[dict[str, Any]], bool]] = [
    lambda r: True,
    lambda r: r["metrics"]["m0"] > 0.9,
    lambda r: r["params"]["p0"] == "v3",
    lambda r: r["params"]["p1"] == "v5" and r["metrics"]["m1"] < 0.2,
    lambda r: r["team"] == "team7",
    lambda r: r["metrics"]["m3"] > 0.5 and r["metrics"]["m4"] < 0.5,
    lambda r: r["status"] == "FAILED",
    lambda r: r["params"]["p12"].startswith("0.1"),
    lambda r: True,
    lambda r: r["metrics"]["m9"] >= 0.99 and r["team"] == "team1",
]


def test_the_generated_runs_are_the_same_every_time() -> None:
    assert list(search_runs(20)) == list(search_runs(20))
    run = next(search_runs(1))
    assert len(run["params"]) == 20 and len(run["metrics"]) == 10


def test_the_loaded_runs_answer_the_ten_queries(tmp_path: Path) -> None:
    wire, history = mlflow_data.events(RUNS, 25_000)
    replay, env = mlflow_data.load(tmp_path / "home", wire)
    assert env == {}  # embedded: `modeldb serve --data-dir` needs nothing more
    assert replay.events == len(wire) == 5 * RUNS + 1 + 3  # the history: 3 events of ≤ 10,000 points
    assert replay.points == 10 * RUNS + 25_000
    assert set(replay.seconds) >= {"sql", "graph", "audit"}
    runs = list(search_runs(RUNS))

    async def check() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'home' / 'read.db'}")
        try:
            queries = RunQueries(engine)
            for (filter_, order), expected in zip(QUERIES, EXPECTED, strict=True):
                page = await queries.search(filter_ or None, order or None, 100, None, "bench", "search")
                assert page.total == sum(map(expected, runs)), filter_
                assert len(page.rows) == min(100, page.total)
            page = await queries.search("metrics.m0 > 0.9", ["metrics.m0 DESC"], 1, None, "bench", "search")
            best = max((r for r in runs if r["metrics"]["m0"] > 0.9), key=lambda r: r["metrics"]["m0"])
            assert page.rows[0].name == best["name"]
            points = await queries.metric_history(history, HISTORY_KEY)
            assert len(points) == 25_000
            assert points[-1].value == pytest.approx(history_value(24_999))
        finally:
            await engine.dispose()

    asyncio.run(check())


def test_the_report_states_targets_and_ratios() -> None:
    report = Report()
    report.add("1 log_metric", "p50", 0.5, 50.0, higher_is_better=False, unit="µs", meets=True)
    report.add("2 ingest", "points/s", 200_000, 10_000, higher_is_better=True, meets=True)
    report.add("5 lineage", "p95", 80.0, None, higher_is_better=False, unit="ms", meets=False)
    assert [r["advantage"] for r in report.rows] == [100.0, 20.0, None]
    text = report.markdown("header")
    assert "| 1 log_metric | p50 | 0.5 µs | 50.00 µs | 100.0x |" in text
    assert "| 5 lineage | p95 | 80.00 ms | n/a |  |  | **no** |" in text
    assert percentile([5, 1, 4, 2, 3], 50) == 3 and percentile([1, 2], 95) == 2
    assert _peak_rss_mb() > 10
