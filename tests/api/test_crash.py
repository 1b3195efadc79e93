"""A server killed with SIGKILL mid-ingest loses no acknowledged event and, once restarted,
applies none twice."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx

from modeldb.event_schema import new_event, uuid7
from modeldb.writer.sqlite_log import SQLiteEventLog
from tests.helpers import ServerProcess, free_port, read_all, run_events, server_env, wire


def _batches(run_id: str):
    """Endless batches of 50 MetricsLogged events with 5 points each."""
    step = 0
    while True:
        events = []
        for _ in range(50):
            step += 1
            events.append(new_event("MetricsLogged", run_id, {"points": [
                {"key": f"m{k}", "value": step + k, "step": step, "timestamp": step}
                for k in range(5)]}))
        yield wire(events)


def test_sigkill_mid_ingest_loses_nothing_acknowledged(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home", free_port(), server_env()).start()
    run = uuid7()
    acked: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=5) as http:
            http.post(f"{server.url}/api/v1/events", json=wire(run_events(run, status=None)))
            for batch in _batches(run):
                if stop.is_set():
                    return
                try:
                    r = http.post(f"{server.url}/api/v1/events", json=batch)
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 202:
                    acked.extend(e["event_id"] for e in batch)

    sender = threading.Thread(target=client)
    sender.start()
    time.sleep(2.0)
    server.kill()
    stop.set()
    sender.join(10)
    assert len(acked) > 500, "the client should have been acknowledged a good number of events"

    log = SQLiteEventLog(server.home / "events.db")
    stored = {r.raw["event_id"]: r.raw for r in read_all(log)}
    assert set(acked) <= set(stored)

    server.start()  # restart on the same data: projections resume from their checkpoints
    server.wait_projected()
    server.stop()
    points_in_log = sum(len(e["payload"]["points"]) for e in stored.values()
                        if e["type"] == "MetricsLogged")
    db = sqlite3.connect(server.home / "read.db")
    assert db.execute("SELECT count(*) FROM metric_points").fetchone()[0] == points_in_log
    assert db.execute("SELECT sum(count) FROM latest_metrics").fetchone()[0] == points_in_log
    audit_rows = db.execute("SELECT count(*), count(DISTINCT position) FROM audit_events").fetchone()
    assert audit_rows == (len(stored), len(stored))
