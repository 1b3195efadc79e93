"""search_runs over both transports, and the parsing of the runs query's answer."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

import modeldb
from modeldb._search import parse_run
from tests.client.conftest import read_events
from tests.helpers import ServerProcess


def _log_three_runs() -> list[modeldb.Run]:
    runs = []
    for i in range(3):
        with modeldb.start_run(name=f"r{i}", params={"lr": i / 10}, tags={"team": "cv"}) as run:
            run.log_metric("acc", i / 10, step=0)
            run.log_metric("acc", i / 4, step=1)
        runs.append(run)
    return runs


def _check(found: list[modeldb.RunInfo], runs: list[modeldb.Run]) -> None:
    assert [r.id for r in found] == [runs[2].id, runs[1].id]
    best = found[0]
    assert best.name == "r2"
    assert best.status == "FINISHED"
    assert best.params == {"lr": "0.2"}
    assert best.metrics == {"acc": 0.5}  # the latest value of each key
    assert best.tags == {"team": "cv"}
    assert best.start_time is not None and best.end_time is not None
    assert best.start_time <= best.end_time


def test_search_runs_embedded(tmp_path: Path) -> None:
    pytest.importorskip("modeldb.infra.embedded")
    modeldb.init(tmp_path / "home", project="p", experiment="e")
    runs = _log_three_runs()
    _check(modeldb.search_runs("metrics.acc > 0.1", order_by="metrics.acc DESC"), runs)
    assert len(modeldb.search_runs(max_results=2)) == 2
    assert modeldb.search_runs(project="nope") == []
    with pytest.raises(modeldb.QueryError, match="filter"):
        modeldb.search_runs("metrics.acc >>> 1")


def test_search_runs_over_http(server: ServerProcess) -> None:
    modeldb.init(server.url, project="p", experiment="e")
    runs = _log_three_runs()
    assert modeldb.flush(20)
    # The read model follows the log: wait until it has applied everything sent.
    server.wait_projected(read_events(server.home / "events.db")[-1]["_position"])
    found = modeldb.search_runs("metrics.acc > 0.1 and tags.team = 'cv'",
                                order_by=["metrics.acc DESC"], max_results=10)
    _check(found, runs)
    with pytest.raises(modeldb.QueryError):
        modeldb.search_runs("params.lr = ")


def test_parse_run_reads_the_contracts_field_names() -> None:
    info = parse_run({
        "id": "r1", "name": None, "status": "RUNNING",
        "startTime": "2026-01-01T10:00:00Z", "endTime": None,
        "params": [{"key": "lr", "value": "0.1"}],
        "metrics": [{"key": "loss", "value": None, "step": 3}, {"key": "acc", "value": 1,
                                                                 "step": 0}],
        "tags": [],
    })
    assert info.start_time == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert info.end_time is None
    assert math.isnan(info.metrics["loss"]) and info.metrics["acc"] == 1.0
    assert info.params == {"lr": "0.1"} and info.tags == {}


def test_search_runs_as_a_data_frame(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")  # pandas is optional for the SDK (in the dev extra)
    modeldb.init(tmp_path / "home", project="p", experiment="e")
    for lr in (0.1, 0.01):
        with modeldb.start_run(params={"lr": lr}, tags={"team": "a"}) as run:
            run.log_metric("acc", 1 - lr)
    frame = modeldb.search_runs(order_by="metrics.acc DESC", as_frame=True)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["params.lr"]) == ["0.01", "0.1"]
    assert list(frame["metrics.acc"]) == [0.99, 0.9]
    assert set(frame["tags.team"]) == {"a"}
    assert {"run_id", "name", "status", "start_time", "end_time"} <= set(frame.columns)
