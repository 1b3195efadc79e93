"""When the server is away: spool, resend oldest first, exactly once; bounded memory;
bounded exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import orjson

import modeldb
from modeldb import _client
from tests.client.conftest import metric_points, read_events
from tests.helpers import ServerProcess

FAST = {"retry_seconds": 0.2, "exit_timeout": 2.0}


def spooled_ids(spool_dir: Path) -> list[str]:
    return [orjson.loads(line)["event_id"] for path in sorted(spool_dir.glob("batch-*.ndjson"))
            for line in path.read_bytes().splitlines()]


def wait_flushed(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if modeldb.flush(2):
            return True
    return False


def test_server_down_for_the_whole_job_then_everything_arrives_once(
    idle_server: ServerProcess,
) -> None:
    modeldb.init(idle_server.url, **FAST)
    with modeldb.start_run(params={"lr": 0.1}) as run:
        for step in range(3000):
            run.log_metric("loss", float(step), step=step)
    assert not modeldb.flush(5)  # unreachable: kept on disk instead
    spool_dir = _client.current().spool.dir
    assert not _client.shutdown(timeout=2)  # what interpreter exit does
    before = spooled_ids(spool_dir)
    assert len(before) == len(set(before)) > 5

    idle_server.start()
    modeldb.init(idle_server.url, **FAST)  # a new client for the URL sends the spool first
    assert modeldb.flush(20)
    events = read_events(idle_server.home / "events.db")
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    assert set(before) <= set(ids)
    assert ids[: len(before)] == before  # oldest first, in the order they were made
    assert [p["step"] for p in metric_points(events)] == list(range(3000))
    assert not list(spool_dir.glob("batch-*.ndjson"))


def test_the_same_client_resends_when_the_server_comes_back(idle_server: ServerProcess) -> None:
    modeldb.init(idle_server.url, **FAST)
    run = modeldb.start_run()
    for step in range(500):
        run.log_metric("early", float(step), step=step)
    assert not modeldb.flush(3)
    idle_server.start()
    for step in range(500):
        run.log_metric("late", float(step), step=step)
    run.end()
    assert wait_flushed(30)
    events = read_events(idle_server.home / "events.db")
    assert len({e["event_id"] for e in events}) == len(events)
    points = metric_points(events)
    assert sorted(p["step"] for p in points if p["key"] == "early") == list(range(500))
    assert sorted(p["step"] for p in points if p["key"] == "late") == list(range(500))


def test_a_batch_resent_after_a_crash_is_stored_once(server: ServerProcess) -> None:
    modeldb.init(server.url, **FAST)
    with modeldb.start_run() as run:
        run.log_metric("x", 1.0)
    assert modeldb.flush(10)
    spool = _client.current().spool
    count = len(read_events(server.home / "events.db"))
    # As if the client had sent a batch and crashed before deleting its spool file.
    spool.write([{k: v for k, v in e.items() if k != "_position"}
                 for e in read_events(server.home / "events.db")])
    _client.shutdown()
    modeldb.init(server.url, **FAST)
    assert modeldb.flush(10)
    events = read_events(server.home / "events.db")
    assert len(events) == count + 2  # only the second init's ProjectCreated/ExperimentCreated
    assert not spool.pending()


def test_a_full_queue_spills_to_the_spool_and_loses_nothing(idle_server: ServerProcess) -> None:
    modeldb.init(idle_server.url, max_queue=1000, **FAST)
    run = modeldb.start_run()
    for step in range(20_000):
        run.log_metric("loss", float(step), step=step)
    client = _client.current()
    assert len(client.queue) <= 2 * client.max_slots + 6  # bounded: the rest went to disk
    run.end()
    assert not modeldb.flush(3)
    idle_server.start()
    assert wait_flushed(30)
    events = read_events(idle_server.home / "events.db")
    assert len({e["event_id"] for e in events}) == len(events)
    assert sorted(p["step"] for p in metric_points(events)) == list(range(20_000))


def test_a_full_queue_spills_while_online_too(tmp_path: Path) -> None:
    home = tmp_path / "home"
    modeldb.init(home, max_queue=100)
    with modeldb.start_run() as run:
        for step in range(10_000):
            run.log_metric("loss", float(step), step=step)
    assert modeldb.flush(30)
    assert sorted(p["step"] for p in metric_points(read_events(home / "events.db"))) == list(
        range(10_000))


def test_exit_with_the_server_down_is_bounded_and_spools(idle_server: ServerProcess,
                                                          tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import modeldb
        modeldb.init({idle_server.url!r}, exit_timeout=1.0, retry_seconds=5.0)
        run = modeldb.start_run()
        for i in range(1000):
            run.log_metric("loss", float(i), step=i)
        run.end()
    """)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, cwd=tmp_path)
    assert time.monotonic() - started < 8  # interpreter start + 1 s exit bound + margin
    idle_server.start()
    modeldb.init(idle_server.url, **FAST)  # the same spool folder (same URL, same env)
    assert modeldb.flush(20)
    events = read_events(idle_server.home / "events.db")
    assert sorted(p["step"] for p in metric_points(events)) == list(range(1000))


def test_an_artifact_logged_while_the_server_is_down_is_uploaded_before_its_event(
    idle_server: ServerProcess, tmp_path: Path
) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights" * 1000)
    modeldb.init(idle_server.url, **FAST)
    with modeldb.start_run() as run:
        artifact = run.log_artifact(model, kind="model")
    model.write_bytes(b"overwritten")  # the stashed copy is what was logged
    assert not modeldb.flush(3)
    assert _client.current().spool.pending_blobs()
    _client.shutdown(timeout=1)

    idle_server.start()
    modeldb.init(idle_server.url, **FAST)
    assert modeldb.flush(20)
    stored = httpx.get(f"{idle_server.url}/api/v1/artifacts/{artifact.digest}")
    assert stored.status_code == 200 and stored.content == b"weights" * 1000
    (logged,) = [e for e in read_events(idle_server.home / "events.db")
                 if e["type"] == "ArtifactLogged"]
    assert logged["payload"]["uri"] == artifact.uri
    assert not _client.current().spool.pending_blobs()


def test_threads_spilling_while_the_worker_drains_keep_every_record_whole(tmp_path: Path) -> None:
    home = tmp_path / "home"
    modeldb.init(home, max_queue=50)
    run = modeldb.start_run()

    def work(n: int) -> None:
        for step in range(3000):
            run.log_metric(f"t{n}", float(step), step=step)
            if step % 500 == 0:
                run.log_params({f"p{n}.{step}": step})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.end()
    assert modeldb.flush(60)
    events = read_events(home / "events.db")
    points = metric_points(events)
    for n in range(6):
        assert sorted(p["step"] for p in points if p["key"] == f"t{n}") == list(range(3000))
        assert all(p["value"] == float(p["step"]) for p in points if p["key"] == f"t{n}")
    params = {k for e in events if e["type"] == "ParamsLogged" for k in e["payload"]["params"]}
    assert len(params) == 6 * 6
