"""Fixtures for the autolog tests: a fresh embedded home per test, strict hooks, and a
reader that turns the event log into runs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import modeldb
from modeldb import _client, _run
from modeldb.writer.artifacts import LocalArtifactStore
from modeldb.writer.sqlite_log import SQLiteEventLog

# Keras reads its backend once, at import: torch on CPU spares the suite TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "torch")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # outside any git repository
    monkeypatch.setenv("MODELDB_AUTOLOG_STRICT", "1")  # a broken hook fails the test
    yield
    modeldb.autolog(disable=True)
    _client.shutdown(timeout=5)
    _run._active.set(None)


@dataclass
class LoggedRun:
    id: str
    name: str | None
    parent: str | None
    status: str | None = None
    sources: set[str] = field(default_factory=set)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # key → (step, value)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # name → DatasetVersion id

    def steps(self, key: str) -> list[int]:
        return [step for step, _ in self.metrics[key]]

    def last(self, key: str) -> float:
        return self.metrics[key][-1][1]


@dataclass
class Logged:
    home: Path
    events: list[dict[str, Any]]
    runs: list[LoggedRun]

    def only_run(self) -> LoggedRun:
        assert len(self.runs) == 1, [r.name for r in self.runs]
        return self.runs[0]

    def artifact_path(self, run: LoggedRun, name: str) -> Path:
        return LocalArtifactStore(self.home / "artifacts").path_of(run.artifacts[name]["digest"])


def read(home: Path) -> Logged:
    assert modeldb.flush(10)
    log = SQLiteEventLog(home / "events.db")
    events: list[dict[str, Any]] = []
    while batch := log.read_sync(events[-1]["_position"] if events else 0):
        events.extend({**e.raw, "_position": e.position} for e in batch)
    runs: dict[str, LoggedRun] = {}
    for event in events:
        if event["aggregate"]["kind"] != "run":
            continue
        run_id, payload = event["aggregate"]["id"], event["payload"]
        if event["type"] == "RunStarted":
            runs[run_id] = LoggedRun(run_id, payload["name"], payload["parent_run_id"])
        run = runs[run_id]
        run.sources.add(event["source"])
        match event["type"]:
            case "ParamsLogged":
                run.params.update(payload["params"])
            case "MetricsLogged":
                for p in payload["points"]:
                    run.metrics.setdefault(p["key"], []).append((p["step"], p["value"]))
            case "TagsSet":
                run.tags.update(payload["tags"])
            case "ArtifactLogged":
                run.artifacts[payload["name"]] = payload
            case "RunInputLogged":
                run.inputs[payload["name"]] = payload["id"]
            case "RunFinished":
                run.status = payload["status"]
    return Logged(home, events, list(runs.values()))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    modeldb.init(home)
    return home


@pytest.fixture
def logged(home: Path) -> Callable[[], Logged]:
    """Flush, then read everything the embedded home holds."""
    return lambda: read(home)


def dataset_id(name: str, data: Any) -> str:
    """The DatasetVersion id that `data` has under `name` (content-addressed)."""
    from modeldb.ingest_adapters._log import fingerprintable

    return modeldb.log_dataset(name, fingerprintable(data)).id


def assert_model_logged(run: LoggedRun, framework: str, filename: str) -> None:
    artifact = run.artifacts[filename]
    assert artifact["kind"] == "model"
    assert run.tags["modeldb.model.framework"] == framework
    assert run.tags["modeldb.model.framework_version"]
    assert run.tags["modeldb.model.media_type"]
    assert run.tags["modeldb.model.artifact"] == filename
