"""The modeldb command line: replay, verify, audit — as a user runs them."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from modeldb.event_schema import uuid7
from modeldb.infra.system import PROJECTIONS
from tests.helpers import ServerProcess, every_event_type, run_events, server_env, ungoverned, wire


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modeldb.infra.cli", *args, "--data-dir",
                           str(home)], capture_output=True, text=True, env=server_env(), timeout=120)


# These exercise the embedded files directly (the SQLite log and read model).
pytestmark = pytest.mark.parametrize("stack", ["embedded"], indirect=True)


def _populate(server: ServerProcess) -> int:
    events = every_event_type()
    run = events[4].aggregate.id
    for _ in range(5):
        events += run_events(uuid7(), params={"a": 1}, metrics={"m": [1, 2, 3]})
    r = httpx.post(f"{server.url}/api/v1/events", json=wire(ungoverned(events)))
    positions = r.json()["positions"]
    for command, args in [  # the registry part enters as commands
        ("create_version", {"name": "clf", "run_id": run, "artifact": "model.pkl",
                            "create_model": True}),
        ("set_stage", {"name": "clf", "version": 1, "stage": "Production"}),
    ]:
        r = httpx.post(f"{server.url}/api/v1/registry/commands",
                       json={"command": command, "args": args})
        assert r.status_code == 200, r.text
        positions = r.json()["positions"]
    server.wait_projected()
    return positions[-1]


def test_replay_rebuilds_every_projection_to_the_same_digest(modeldb_server: ServerProcess) -> None:
    _populate(modeldb_server)
    modeldb_server.stop()
    first = cli("replay", home=modeldb_server.home)
    assert first.returncode == 0, first.stderr
    second = cli("replay", "--projection", "all", home=modeldb_server.home)
    digests = [line for line in first.stdout.splitlines() if "digest" in line]
    assert len(digests) == len(PROJECTIONS)  # sql, graph, audit, search, the enrichers
    assert digests == [line for line in second.stdout.splitlines() if "digest" in line]
    assert "replay sql" in first.stderr  # the progress bar


def test_verify_passes_then_fails_after_an_audit_row_is_altered(modeldb_server: ServerProcess) -> None:
    head = _populate(modeldb_server)
    modeldb_server.stop()
    ok = cli("verify", home=modeldb_server.home)
    assert ok.returncode == 0 and f"OK: {head} records" in ok.stdout
    db = sqlite3.connect(modeldb_server.home / "read.db")
    db.execute("UPDATE audit_events SET body = replace(body, 'adam', 'sgd') WHERE position = 6")
    db.commit()
    bad = cli("verify", home=modeldb_server.home)
    assert bad.returncode == 1
    assert "FAILED at partition 0 position 6" in bad.stdout


def test_verify_detects_a_deleted_audit_record(modeldb_server: ServerProcess) -> None:
    _populate(modeldb_server)
    modeldb_server.stop()
    db = sqlite3.connect(modeldb_server.home / "read.db")
    db.execute("DELETE FROM audit_events WHERE position = 3")
    db.commit()
    bad = cli("verify", home=modeldb_server.home)
    assert bad.returncode == 1 and "position 3" in bad.stdout


def test_the_event_log_refuses_updates_and_deletes(modeldb_server: ServerProcess) -> None:
    _populate(modeldb_server)
    db = sqlite3.connect(modeldb_server.home / "events.db")
    for statement in ("UPDATE events SET type = 'X' WHERE position = 1",
                      "DELETE FROM events WHERE position = 1"):
        try:
            db.execute(statement)
        except sqlite3.DatabaseError as exc:
            assert "append-only" in str(exc)
        else:
            raise AssertionError(f"{statement} was allowed")


def test_audit_report_in_markdown_and_json(modeldb_server: ServerProcess) -> None:
    _populate(modeldb_server)
    modeldb_server.stop()
    md = cli("audit", "modelversion:clf/1", home=modeldb_server.home)
    assert md.returncode == 0, md.stderr
    assert "# Audit report: modelversion:clf/1" in md.stdout
    assert "ModelVersionStageChanged" in md.stdout and "GENERATED_BY" in md.stdout
    js = cli("audit", "modelversion:clf/1", "--format", "json", home=modeldb_server.home)
    assert '"events"' in js.stdout and '"upstream"' in js.stdout
