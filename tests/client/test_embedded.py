"""The embedded transport: the SDK appends to <home>/events.db itself, as the local user."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest

import modeldb
from modeldb import _capture
from modeldb._transports import local_user
from modeldb.writer.artifacts import LocalArtifactStore
from tests.client.conftest import metric_points, of_type, read_events


def test_a_run_arrives_as_exactly_these_events(tmp_path: Path) -> None:
    home = tmp_path / "home"
    modeldb.init(home, project="vision", experiment="resnet")
    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,2\n")
    model = tmp_path / "model.pkl"
    model.write_bytes(b"\x00weights")

    with modeldb.start_run(name="first", params={"lr": 0.01}, tags={"team": "cv"}) as run:
        assert modeldb.active_run() is run
        run.log_param("layers", 3)
        for step in range(3):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metrics({"acc": 0.5, "f1": 0.25}, step=2)
        run.set_tag("stage", "dev")
        run.delete_tag("team")
        artifact = run.log_artifact(model, kind="model")
        version = run.log_input(data)
    assert modeldb.active_run() is None
    assert modeldb.flush(10)

    events = read_events(home / "events.db")
    assert [e["type"] for e in events] == [
        "ProjectCreated", "ExperimentCreated", "RunStarted", "EnvironmentRecorded",
        "ParamsLogged", "TagsSet", "ParamsLogged", "MetricsLogged", "TagsSet", "TagsDeleted",
        "ArtifactLogged", "DatasetCreated", "DatasetVersionCreated", "RunInputLogged",
        "RunFinished",
    ]
    assert {e["actor"] for e in events} == {local_user()}
    assert {e["source"] for e in events} == {"sdk"}
    assert len({e["event_id"] for e in events}) == len(events)
    by_type = {e["type"]: e for e in events}
    assert by_type["ProjectCreated"]["aggregate"] == {"kind": "project", "id": "vision"}
    assert by_type["ExperimentCreated"]["aggregate"] == {"kind": "experiment",
                                                         "id": "vision/resnet"}
    assert by_type["ExperimentCreated"]["payload"]["project"] == "vision"
    run_events = [e for e in events if e["aggregate"]["kind"] == "run"]
    assert {e["aggregate"]["id"] for e in run_events} == {run.id}
    started = by_type["RunStarted"]["payload"]
    assert (started["project"], started["experiment"], started["name"]) == (
        "vision", "resnet", "first")
    assert started["parent_run_id"] is None
    assert [e["payload"] for e in of_type(events, "ParamsLogged")] == [
        {"params": {"lr": 0.01}}, {"params": {"layers": 3}}]
    assert [e["payload"] for e in of_type(events, "TagsSet")] == [
        {"tags": {"team": "cv"}}, {"tags": {"stage": "dev"}}]
    assert by_type["TagsDeleted"]["payload"] == {"keys": ["team"]}
    points = metric_points(events)
    assert [(p["key"], p["value"], p["step"]) for p in points] == [
        ("loss", 1.0, 0), ("loss", 0.5, 1), ("loss", 1 / 3, 2), ("acc", 0.5, 2), ("f1", 0.25, 2)]
    assert all(isinstance(p["timestamp"], int) and p["timestamp"] > 1.6e12 for p in points)
    env = by_type["EnvironmentRecorded"]["payload"]
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["packages"]["pydantic"]
    assert by_type["RunFinished"]["payload"]["status"] == "FINISHED"

    logged = by_type["ArtifactLogged"]["payload"]
    assert logged == {"name": "model.pkl", "digest": artifact.digest, "size": 8,
                      "uri": artifact.uri, "kind": "model", "media_type": None}
    store = LocalArtifactStore(home / "artifacts")
    assert store.path_of(artifact.digest).read_bytes() == b"\x00weights"

    assert version.dataset == "train.csv"
    assert version.id == f"train.csv@{version.digest}"
    assert by_type["DatasetCreated"]["aggregate"]["id"] == "train.csv"
    assert by_type["DatasetVersionCreated"]["payload"]["digest"] == version.digest
    assert by_type["DatasetVersionCreated"]["payload"]["uri"] == data.absolute().as_uri()
    assert by_type["RunInputLogged"]["payload"] == {
        "kind": "DatasetVersion", "id": version.id, "name": "train.csv"}


def test_failed_and_child_runs_and_outputs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    modeldb.init(f"sqlite:///{home}/events.db")
    parent = modeldb.start_run(name="parent")
    with pytest.raises(ZeroDivisionError), modeldb.start_run(parent=parent) as child:
        assert modeldb.active_run() is child
        1 / 0  # noqa: B018
    assert modeldb.active_run() is parent
    dv = modeldb.log_dataset("features", [{"a": 1}, {"a": 2}])
    assert dv.row_count == 2
    parent.log_output(dv)
    parent.log_output({"b": 1, "a": 2}, name="summary")
    parent.end("KILLED")
    parent.end()  # a second end does nothing
    assert modeldb.flush(10)

    events = read_events(home / "events.db")
    started = {e["aggregate"]["id"]: e["payload"] for e in of_type(events, "RunStarted")}
    assert started[child.id]["parent_run_id"] == parent.id
    assert started[child.id]["name"] is None
    finished = {e["aggregate"]["id"]: e["payload"]["status"] for e in of_type(events, "RunFinished")}
    assert finished == {child.id: "FAILED", parent.id: "KILLED"}
    outputs = [e["payload"] for e in of_type(events, "RunOutputLogged")]
    assert outputs[0] == {"kind": "DatasetVersion", "id": dv.id, "name": "features"}
    assert outputs[1]["id"].startswith("summary@sha256:")
    versions = of_type(events, "DatasetVersionCreated")
    assert versions[0]["payload"]["row_count"] == 2


def test_code_version_is_recorded_in_a_git_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@e", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "remote", "add", "origin", "https://bot:s3cret@example.com/x.git"],
                   cwd=repo, check=True)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "first"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()
    (repo / "train.py").write_text("print(2)\n")  # uncommitted: dirty
    monkeypatch.chdir(repo)

    modeldb.init(tmp_path / "home")
    modeldb.start_run().end()
    assert modeldb.flush(10)
    (code,) = of_type(read_events(tmp_path / "home" / "events.db"), "CodeVersionRecorded")
    payload = code["payload"]
    assert payload["commit"] == head
    assert payload["branch"] == "main"
    assert payload["repository"] == "https://example.com/x.git"  # no credentials
    assert payload["dirty"] is True
    assert payload["diff_digest"].startswith("sha256:")
    assert _capture.code_version(tmp_path / "home") is None  # not a repository


def test_interpreter_exit_delivers_without_flush(tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = textwrap.dedent(f"""
        import modeldb
        modeldb.init({str(home)!r})
        run = modeldb.start_run(name="exit")
        for i in range(5000):
            run.log_metric("loss", i / 5000, step=i)
        run.end()
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, cwd=tmp_path)
    events = read_events(home / "events.db")
    assert len(metric_points(events)) == 5000
    assert events[-1]["type"] == "RunFinished"


def test_start_time_is_the_time_of_the_call(tmp_path: Path) -> None:
    modeldb.init(tmp_path / "home")
    before = datetime.now().astimezone()
    run = modeldb.start_run()
    run.end()
    assert modeldb.flush(10)
    (started,) = of_type(read_events(tmp_path / "home" / "events.db"), "RunStarted")
    start = datetime.fromisoformat(started["payload"]["start_time"].replace("Z", "+00:00"))
    assert abs((start - before).total_seconds()) < 5
    assert started["aggregate"]["id"] == run.id
