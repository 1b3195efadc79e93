"""Fixtures for the SDK's tests: a fresh client per test, and readers of what arrived."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modeldb import _client, _run
from modeldb.writer.sqlite_log import SQLiteEventLog
from tests.helpers import ServerProcess, free_port, server_env


@pytest.fixture(autouse=True)
def _fresh_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    # Outside any git repository, so runs record a code version only where a test makes one.
    monkeypatch.chdir(tmp_path)
    yield
    _client.shutdown(timeout=5)
    _run._active.set(None)  # a run a test left open must not be the next test's active run


@pytest.fixture
def idle_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real `modeldb serve` on the embedded stack, its port chosen but not started yet,
    so a test can log while it is down and start it later."""
    server = ServerProcess(tmp_path / "server-home", free_port(), server_env())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(idle_server: ServerProcess) -> ServerProcess:
    """A running `modeldb serve` whose log is a SQLite file the test can read."""
    return idle_server.start()


def read_events(events_db: Path) -> list[dict[str, Any]]:
    """Every event of a SQLite log, in log order, as stored."""
    log = SQLiteEventLog(events_db)
    events: list[dict[str, Any]] = []
    while batch := log.read_sync(events[-1]["_position"] if events else 0):
        events.extend({**e.raw, "_position": e.position} for e in batch)
    return events


def of_type(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == type_]


def metric_points(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for e in of_type(events, "MetricsLogged") for p in e["payload"]["points"]]
