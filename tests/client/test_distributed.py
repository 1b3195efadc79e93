"""Distributed training: ranks recorded as attributes; ranks sharing one run, or each with
a child run, from real spawned processes into one embedded home."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

import modeldb
from modeldb._run import distributed_attributes
from tests.client.conftest import metric_points, of_type, read_events


def test_rank_comes_from_torchrun_env_or_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(env, raising=False)
    assert distributed_attributes() == {}
    assert distributed_attributes(3) == {"rank": 3}
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed_attributes() == {"rank": 5, "world_size": 8, "local_rank": 1}
    assert distributed_attributes(2)["rank"] == 2  # the call wins
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(modeldb.InvalidArgument, match="RANK"):
        distributed_attributes()
    with pytest.raises(modeldb.InvalidArgument):
        distributed_attributes(-1)


def _rank(home: str, rank: int, ids: Any, barrier: Any, parent_id: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"})
    modeldb.init(home, project="p", experiment="ddp")
    # Shared run: rank 0 starts it and tells the others its id; it ends after they are done.
    if rank == 0:
        shared = modeldb.start_run(name="shared")
        ids.put(shared.id)
        ids.put(shared.id)
    else:
        shared = modeldb.attach_run(ids.get(timeout=30))
    shared.log_metric(f"loss/rank{rank}", 0.5, step=rank)
    assert modeldb.flush(10)
    barrier.wait(30)
    shared.end()
    # Per-rank child runs of one parent.
    with modeldb.start_run(name=f"rank{rank}", parent=parent_id) as child:
        child.log_metric("loss", 1.0 + rank)
    assert modeldb.flush(10)


def test_two_spawned_ranks_share_a_run_and_have_child_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    modeldb.init(home, project="p", experiment="ddp")
    parent = modeldb.start_run(name="job")
    assert modeldb.flush(10)
    context = multiprocessing.get_context("spawn")
    ids, barrier = context.Queue(), context.Barrier(2)
    procs = [context.Process(target=_rank, args=(str(home), r, ids, barrier, parent.id))
             for r in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    parent.end()
    assert modeldb.flush(10)

    events = read_events(home / "events.db")
    started = {e["payload"]["name"]: e for e in of_type(events, "RunStarted")}
    shared = started["shared"]["aggregate"]["id"]
    # The shared run: started and finished once (by rank 0), metrics from both ranks.
    assert [e["aggregate"]["id"] for e in of_type(events, "RunFinished")].count(shared) == 1
    keys = {p["key"] for e in of_type(events, "MetricsLogged")
            if e["aggregate"]["id"] == shared for p in e["payload"]["points"]}
    assert keys == {"loss/rank0", "loss/rank1"}
    # Each child run knows its parent and its rank.
    attributes = {e["aggregate"]["id"]: e["payload"]["attributes"]
                  for e in of_type(events, "AttributesSet")}
    for rank in range(2):
        child = started[f"rank{rank}"]
        assert child["payload"]["parent_run_id"] == parent.id
        assert attributes[child["aggregate"]["id"]] == {
            "rank": rank, "world_size": 2, "local_rank": rank}
    assert attributes[shared] == {"rank": 0, "world_size": 2, "local_rank": 0}
    assert len(metric_points(events)) == 4


def test_attach_run_neither_starts_nor_finishes(tmp_path: Path) -> None:
    modeldb.init(tmp_path / "home")
    owner = modeldb.start_run()
    with modeldb.attach_run(owner.id) as attached:
        assert modeldb.active_run() is attached
        attached.log_metric("x", 1.0)
    assert modeldb.active_run() is owner
    owner.end()
    assert modeldb.flush(10)
    events = read_events(tmp_path / "home" / "events.db")
    assert len(of_type(events, "RunStarted")) == len(of_type(events, "RunFinished")) == 1
    with pytest.raises(modeldb.InvalidArgument):
        modeldb.attach_run("")
