"""`modeldb import mlflow`: runs logged with the real mlflow package, imported, compared."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from modeldb.infra.cli import main as cli_main
from modeldb.ingest_adapters.mlflow_import import run_id_of
from modeldb.writer.sqlite_log import SQLiteEventLog
from tests.helpers import ServerProcess

mlflow = pytest.importorskip("mlflow")

RUN_QUERY = """query($id: ID!) { run(id: $id) { id name status startTime endTime
  project { name } experiment { name } params { key value } tags { key value }
  metrics { key value step } parent { id } inputs { id kind name }
  loss: metricHistory(key: "loss") { step timestamp value }
  acc: metricHistory(key: "acc") { step timestamp value } } }"""


def _log_runs(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """Three runs in a sqlite tracking store: a parent with a nested child, and a failed one."""
    import pandas as pd

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("mnist")
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_params({"lr": "0.01", "layers": "3"})
        mlflow.set_tags({"team": "vision", "stage": "dev"})
        for step in range(20):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            mlflow.log_metric("acc", 0.5 + step * 0.02, step=step)
        mlflow.log_input(mlflow.data.from_pandas(pd.DataFrame({"x": [1, 2, 3]}), name="train"),
                         context="training")
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_param("fold", "1")
            mlflow.log_metric("loss", 0.25, step=0)
    with pytest.raises(RuntimeError), mlflow.start_run(run_name="broken") as failed:
        mlflow.log_param("lr", "10")
        raise RuntimeError("diverged")
    mlflow.set_tracking_uri(None)
    return uri, {"parent": parent.info.run_id, "child": child.info.run_id,
                 "failed": failed.info.run_id}


def _expected(uri: str, mlflow_run_id: str) -> dict[str, Any]:
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    run = client.get_run(mlflow_run_id)
    history = {key: sorted((m.step, m.timestamp, m.value)
                            for m in client.get_metric_history(mlflow_run_id, key))
               for key in ("loss", "acc")}
    return {"run": run, "history": history}


def _snapshot(server: ServerProcess, ids: dict[str, str]) -> dict[str, Any]:
    server.wait_projected()
    runs = server.graphql('{ runs(project: "mlflow", first: 100) { totalCount '
                          "edges { node { id status } } } }")["runs"]
    return {"runs": runs, **{name: server.graphql(RUN_QUERY, id=run_id_of(mid))["run"]
                             for name, mid in ids.items()}}


def _check(snapshot: dict[str, Any], uri: str, ids: dict[str, str]) -> None:
    assert snapshot["runs"]["totalCount"] == 3
    for name, mid in ids.items():
        got, want = snapshot[name], _expected(uri, mid)
        run = want["run"]
        assert got["id"] == run_id_of(mid)
        assert got["name"] == run.info.run_name
        assert got["status"] == run.info.status
        assert got["project"]["name"] == "mlflow" and got["experiment"]["name"] == "mnist"
        assert {p["key"]: p["value"] for p in got["params"]} == run.data.params
        # Every tag, MLflow's own (mlflow.user, mlflow.parentRunId, ...) included.
        assert {t["key"]: t["value"] for t in got["tags"]} == run.data.tags
        for key in ("loss", "acc"):
            points = sorted((p["step"], int(p["timestamp"]), p["value"]) for p in got[key])
            assert points == want["history"][key]  # exact values, steps and timestamps
    assert len(snapshot["parent"]["loss"]) == 20
    assert snapshot["child"]["parent"]["id"] == run_id_of(ids["parent"])
    assert snapshot["failed"]["status"] == "FAILED"
    assert snapshot["parent"]["endTime"] and snapshot["parent"]["startTime"]
    (used,) = snapshot["parent"]["inputs"]
    assert used["kind"] == "DatasetVersion" and used["name"] == "train"
    assert not math.isnan(snapshot["parent"]["loss"][0]["value"])


def test_import_into_a_server_is_exact_and_idempotent(
    tmp_path: Path, modeldb_server: ServerProcess, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns: not the repo
    uri, ids = _log_runs(tmp_path)
    argv = ["import", "mlflow", "--tracking-uri", uri, "--url", modeldb_server.url,
            "--no-progress"]
    assert cli_main(argv) == 0
    first = _snapshot(modeldb_server, ids)
    _check(first, uri, ids)
    history = modeldb_server.graphql("query($id: ID!) { history(id: $id) { eventId source } }",
                                     id=run_id_of(ids["parent"]))["history"]
    assert {h["source"] for h in history} == {"import:mlflow"}

    assert cli_main(argv) == 0  # again: deterministic ids, so nothing changes
    assert _snapshot(modeldb_server, ids) == first
    again = modeldb_server.graphql("query($id: ID!) { history(id: $id) { eventId source } }",
                                   id=run_id_of(ids["parent"]))["history"]
    assert again == history


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_import_into_the_embedded_folder_does_not_grow_the_log(
    tmp_path: Path, modeldb_server: ServerProcess, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    uri, ids = _log_runs(tmp_path)
    home = tmp_path / "offline"
    argv = ["import", "mlflow", "--tracking-uri", uri, "--experiment", "mnist",
            "--data-dir", str(home), "--no-progress"]
    assert cli_main(argv) == 0
    size = len(SQLiteEventLog(home / "events.db").read_sync())
    assert size > 0
    assert cli_main(argv) == 0
    assert len(SQLiteEventLog(home / "events.db").read_sync()) == size
    # The server's log too: importing twice over HTTP posts only known ids.
    http = ["import", "mlflow", "--tracking-uri", uri, "--url", modeldb_server.url, "--no-progress"]
    assert cli_main(http) == 0
    head = httpx.get(f"{modeldb_server.url}/api/v1/projections").json()["log_head"]
    assert cli_main(http) == 0
    assert httpx.get(f"{modeldb_server.url}/api/v1/projections").json()["log_head"] == head
    _check(_snapshot(modeldb_server, ids), uri, ids)
