"""Pieces of the SDK on their own: URL resolution, settings, event building, capture."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

import modeldb
from modeldb import _capture, _settings
from modeldb._batch import METRIC, Batcher, fast_metrics
from modeldb._run import _scalar
from modeldb._transports import resolve
from modeldb.event_schema import new_event, to_wire
from tests.client.conftest import metric_points, read_events


def test_urls_resolve_to_transports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    http = resolve("http://127.0.0.1:8000/")
    assert (http.scheme, http.url) == ("http", "http://127.0.0.1:8000")
    folder = resolve(tmp_path / "h")
    assert (folder.scheme, folder.home, folder.log_path) == (
        "embedded", tmp_path / "h", tmp_path / "h" / "events.db")
    assert resolve(f"file://{tmp_path}/h") == folder
    assert resolve(f"sqlite:///{tmp_path}/h/events.db") == folder
    assert resolve(f"{tmp_path}/h/events.db") == folder
    monkeypatch.setenv("MODELDB_URL", "http://example.com:1")
    assert resolve(None).url == "http://example.com:1"
    monkeypatch.delenv("MODELDB_URL")
    monkeypatch.setenv("MODELDB_HOME", str(tmp_path / "env-home"))
    assert resolve(None).home == tmp_path / "env-home"
    assert resolve("http://a:1").key != resolve("http://a:2").key
    with pytest.raises(modeldb.ConfigError, match="unknown URL scheme"):
        resolve("ftp://x")


def test_kafka_urls_resolve_to_the_kafka_transport() -> None:
    target = resolve("kafka://127.0.0.1:9092?topic=t")
    assert (target.scheme, target.url) == ("kafka", "kafka://127.0.0.1:9092?topic=t")


def test_bad_settings_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELDB_MAX_QUEUE", "lots")
    with pytest.raises(modeldb.ConfigError, match="MODELDB_MAX_QUEUE"):
        _settings.Options.load()
    monkeypatch.setenv("MODELDB_MAX_QUEUE", "10")
    assert _settings.Options.load().max_queue == 10
    assert _settings.Options.load(max_queue=5).max_queue == 5
    with pytest.raises(modeldb.ConfigError):
        modeldb.init(project="")


def test_the_fast_metrics_path_matches_the_schemas() -> None:
    points = [{"key": "loss", "value": v, "step": i, "timestamp": 1_700_000_000_000 + i}
              for i, v in enumerate([0.5, math.nan, math.inf, -math.inf, 1e300])]
    fast = fast_metrics("run-1", points)
    assert fast is not None
    first = datetime.fromtimestamp(points[0]["timestamp"] / 1000, UTC)
    slow = to_wire(new_event("MetricsLogged", "run-1", {"points": points}, occurred_at=first))
    assert {**fast, "event_id": None} == {**slow, "event_id": None}
    assert fast_metrics("r", [{**points[0], "key": ""}]) is None
    assert fast_metrics("r", [{**points[0], "step": 1.5}]) is None


def test_invalid_points_are_set_aside_and_the_rest_kept() -> None:
    options = _settings.Options.load()
    set_aside: list[tuple[list, str]] = []
    batch = Batcher(options, threading.Lock(), lambda records, why: set_aside.append(
        (records, why)))
    batch.add((METRIC, "run", "ok", 1.0, 0, 1_700_000_000_000), 0.0)
    batch.add((METRIC, "run", "", 2.0, 1, 1_700_000_000_000), 0.0)
    batch.add((METRIC, "run", "ok", 3.0, "three", 1_700_000_000_000), 0.0)
    (event,) = batch.take()
    assert [p["value"] for p in event["payload"]["points"]] == [1.0]
    ((records, why),) = set_aside
    assert len(records) == 2 and "2 metric point(s)" in why


def test_metric_values_are_converted_or_refused_in_the_callers_thread(tmp_path: Path) -> None:
    modeldb.init(tmp_path / "home")
    run = modeldb.start_run()
    run.log_metric("np", np.float32(0.5), step=np.int64(3))
    run.log_metric("int", 2)
    with pytest.raises(modeldb.InvalidArgument, match="not a number"):
        run.log_metric("bad", "abc")
    with pytest.raises(modeldb.InvalidArgument, match="status"):
        run.end("DONE")  # type: ignore[arg-type]
    assert modeldb.flush(10)
    points = metric_points(read_events(tmp_path / "home" / "events.db"))
    assert [(p["key"], p["value"], p["step"]) for p in points] == [("np", 0.5, 3), ("int", 2.0, 0)]


def test_params_become_scalars() -> None:
    assert _scalar(np.float64(0.25)) == 0.25 and type(_scalar(np.int32(3))) is int
    assert _scalar(math.nan) == "nan"
    assert _scalar([1, 2]) == "[1, 2]" and _scalar(None) == "None"


def test_environment_is_cached_and_fits_the_schema() -> None:
    env = _capture.environment()
    assert env is _capture.environment()
    new_event("EnvironmentRecorded", "r", env)  # validates
    assert "pydantic" in env["packages"]


def test_remote_urls_lose_their_credentials() -> None:
    assert _capture.redact_url("https://u:tok@github.com/o/r.git") == "https://github.com/o/r.git"
    assert _capture.redact_url("git@github.com:o/r.git") == "git@github.com:o/r.git"
