"""log_metric writes points into preallocated chunks (modeldb._batch.PointBuffer): whatever
the mix of calls, threads and step types, every point arrives once, in its run's order, and
before the run's later events."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

import modeldb
from modeldb import _client
from tests.client.conftest import metric_points, read_events


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "store"
    modeldb.init(home, project="p", experiment="e", max_queue=50_000)
    return home


def test_points_keep_their_order_around_other_events(tmp_path: Path) -> None:
    home = _home(tmp_path)
    run = modeldb.start_run(name="order")
    for step in range(10_000):  # more than two chunks, with tags in between
        run.log_metric("loss", step / 2, step)
        if step % 3_000 == 0:
            run.set_tag("at", str(step))
    run.log_metrics({"a": 1.0, "b": 2}, step=7)
    run.end()
    assert modeldb.flush(30)
    events = [e for e in read_events(home / "events.db") if e["aggregate"]["id"] == run.id]
    points = [p for p in metric_points(events) if p["key"] == "loss"]
    assert [p["step"] for p in points] == list(range(10_000))
    assert [p["value"] for p in points[:3]] == [0.0, 0.5, 1.0]
    assert events[-1]["type"] == "RunFinished"  # after every point
    kinds = [e["type"] for e in events]
    first_tag = kinds.index("TagsSet")
    tagged = sum(len(e["payload"]["points"]) for e in events[:first_tag] if e["type"] == "MetricsLogged")
    assert tagged == 1  # the tag at step 0 came after exactly one point
    assert {(p["key"], p["value"]) for p in metric_points(events) if p["step"] == 7 and
            p["key"] in "ab"} == {("a", 1.0), ("b", 2.0)}


def test_unusual_steps_and_values_take_the_record_path_in_order(tmp_path: Path) -> None:
    home = _home(tmp_path)
    run = modeldb.start_run()
    run.log_metric("m", 1.0, 1)
    run.log_metric("m", np.float32(2.0), np.int64(2))  # numpy step: converted by the worker
    run.log_metric("m", 3.0, None)  # no step: 0
    run.log_metric("m", 4.0, "four")  # not a step: refused by validation, set aside
    run.log_metric("m", 5.0, 5, timestamp=1_700_000_000_123)
    run.end()
    assert modeldb.flush(30)
    points = metric_points(read_events(home / "events.db"))
    assert [(p["value"], p["step"]) for p in points] == [(1.0, 1), (2.0, 2), (3.0, 0), (5.0, 5)]
    assert points[-1]["timestamp"] == 1_700_000_000_123
    assert _client.current().worker.rejected == 1


def test_threads_logging_at_once_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    home = _home(tmp_path)
    run = modeldb.start_run()

    def log(thread: int) -> None:
        for step in range(5_000):
            run.log_metric(f"t{thread}", float(step), step)

    threads = [threading.Thread(target=log, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.end()
    assert modeldb.flush(30)
    points = metric_points(read_events(home / "events.db"))
    for t in range(4):
        assert [p["step"] for p in points if p["key"] == f"t{t}"] == list(range(5_000))
    buffer = _client.current().points
    assert buffer.queued == 0 and buffer.chunk.n == 0


def test_a_point_and_a_tag_per_step_reuse_one_chunk(tmp_path: Path) -> None:
    _home(tmp_path)
    run = modeldb.start_run()
    buffer = _client.current().points
    chunk = buffer.chunk
    for step in range(200):
        run.log_metric("loss", 1.0, step)
        run.set_tag("step", str(step))  # seals: a right-sized copy goes, the chunk stays
    assert buffer.chunk is chunk
    run.end()
    assert modeldb.flush(30)
    assert buffer.queued == 0
