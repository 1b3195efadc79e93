"""The HTTP transport against a real `modeldb serve`: delivery, artifacts, refusals,
threads and forks."""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import threading
from pathlib import Path

import httpx
import orjson
import pytest

import modeldb
from modeldb import _client
from modeldb._transports import local_user
from tests.client.conftest import metric_points, of_type, read_events
from tests.helpers import ServerProcess


def log_of(server: ServerProcess) -> list[dict]:
    return read_events(server.home / "events.db")


def test_events_arrive_once_with_the_servers_actor(server: ServerProcess,
                                                  tmp_path: Path) -> None:
    modeldb.init(server.url, project="p", experiment="e")
    model = tmp_path / "model.bin"
    model.write_bytes(os.urandom(3000))
    with modeldb.start_run(name="over-http", params={"lr": 0.1}) as run:
        for step in range(2500):
            run.log_metric("loss", 1 / (step + 1), step=step)
        artifact = run.log_artifact(model)
    assert modeldb.flush(20)
    assert modeldb.flush(1)  # nothing new: still True, nothing resent

    events = log_of(server)
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    assert {e["actor"] for e in events} == {local_user()}  # stamped by the server
    assert [p["step"] for p in metric_points(events)] == list(range(2500))
    assert all(len(e["payload"]["points"]) <= 1000 for e in of_type(events, "MetricsLogged"))
    assert of_type(events, "RunFinished")[0]["aggregate"]["id"] == run.id
    (logged,) = of_type(events, "ArtifactLogged")
    assert logged["payload"]["digest"] == artifact.digest
    downloaded = httpx.get(f"{server.url}/api/v1/artifacts/{artifact.digest}")
    assert downloaded.content == model.read_bytes()
    assert not list(_client.current().spool.dir.glob("*.ndjson"))


def test_a_refused_event_is_set_aside_and_the_rest_delivered(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    # Each name is valid, but the experiment's id "<project>/<experiment>" is longer than
    # the server accepts for an aggregate id: only the server can refuse it.
    project, experiment = "p" * 400, "e" * 400
    caplog.set_level(logging.INFO, "modeldb")
    modeldb.init(server.url, project=project, experiment=experiment)
    with modeldb.start_run() as run:
        run.log_metric("loss", 0.5)
        run.log_metric("", 1.0)  # an empty key: refused by the client's own validation
        run.set_tag("k" * 300, "v")  # a key longer than the schema allows
    assert modeldb.flush(20)

    types = [e["type"] for e in log_of(server)]
    assert "ExperimentCreated" not in types
    assert {"ProjectCreated", "RunStarted", "MetricsLogged", "RunFinished"} <= set(types)
    assert [p["key"] for p in metric_points(log_of(server))] == ["loss"]

    spool = _client.current().spool
    rejected = [orjson.loads(line) for path in spool.rejected()
                for line in path.read_bytes().splitlines()]
    assert any(r.get("type") == "ExperimentCreated"
               and r["aggregate"]["id"] == f"{project}/{experiment}" for r in rejected)
    assert any(r.get("type") == "MetricsLogged" and r["payload"]["points"][0]["key"] == ""
               for r in rejected)
    assert any(r.get("type") == "TagsSet" for r in rejected)
    reasons = [orjson.loads(p.read_bytes()) for p in spool.dir.glob("rejected-*.error.json")]
    assert any("aggregate.id" in r["error"] for r in reasons)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # warned once; the later refusals are at INFO
    assert "refused" in warnings[0].getMessage() or "cannot record" in warnings[0].getMessage()
    assert not spool.pending()


def test_many_threads_logging_at_once_lose_nothing(server: ServerProcess) -> None:
    modeldb.init(server.url, batch_size=200)
    run = modeldb.start_run()
    threads, per_thread = 8, 5000

    def work(n: int) -> None:
        for step in range(per_thread):
            run.log_metric(f"t{n}", float(step), step=step)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    run.end()
    assert modeldb.flush(60)
    points = metric_points(log_of(server))
    counts = collections.Counter(p["key"] for p in points)
    assert counts == {f"t{n}": per_thread for n in range(threads)}
    for n in range(threads):  # and each thread's points in the order it logged them
        assert [p["step"] for p in points if p["key"] == f"t{n}"] == list(range(per_thread))


def test_a_forked_child_gets_its_own_queue_and_worker(server: ServerProcess) -> None:
    modeldb.init(server.url)
    run = modeldb.start_run(name="parent")
    for step in range(100):
        run.log_metric("parent", float(step), step=step)
    # Items still queued in the parent at fork time belong to the parent alone.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child process
        code = 1
        try:
            child = modeldb.start_run(name="child", parent=run)
            for step in range(300):
                child.log_metric("child", float(step), step=step)
            child.end()
            code = 0 if modeldb.flush(30) else 2
        finally:
            os._exit(code)
    for step in range(100, 200):
        run.log_metric("parent", float(step), step=step)
    run.end()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert modeldb.flush(30)

    events = log_of(server)
    points = metric_points(events)
    assert sorted(p["step"] for p in points if p["key"] == "parent") == list(range(200))
    assert sorted(p["step"] for p in points if p["key"] == "child") == list(range(300))
    assert len({e["event_id"] for e in events}) == len(events)
    names = {e["payload"]["name"] for e in of_type(events, "RunStarted")}
    assert names == {"parent", "child"}


def _mp_child(url: str, parent_id: str) -> None:
    child = modeldb.start_run(name="mp-child", parent=parent_id)
    for step in range(50):
        child.log_metric("mp", float(step), step=step)
    child.end()  # no flush: multiprocessing's exit hook drains the queue


def test_multiprocessing_fork_children_drain_at_exit(server: ServerProcess) -> None:
    modeldb.init(server.url)
    run = modeldb.start_run()
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_mp_child, args=(server.url, run.id))
                for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    run.end()
    assert modeldb.flush(20)
    points = [p for p in metric_points(log_of(server)) if p["key"] == "mp"]
    assert len(points) == 100
