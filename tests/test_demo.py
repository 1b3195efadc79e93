"""`modeldb demo` trains real scikit-learn models into a running server; the runs are then
queryable through GraphQL, with autolog's params and the lineage to their data."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ServerProcess, server_env


def test_demo_runs_are_queryable(modeldb_server: ServerProcess) -> None:
    done = subprocess.run([sys.executable, "-m", "modeldb.infra.cli", "demo", "--url",
                           modeldb_server.url], capture_output=True, text=True,
                          env=server_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    modeldb_server.wait_projected()
    data = modeldb_server.graphql("""{
      all: runs(project: "demo", first: 100) { totalCount }
      best: runs(filter: "metrics.accuracy > 0.8 and tags.family = 'trees'",
                 orderBy: ["metrics.accuracy DESC"], first: 3) {
        edges { node { id name status params { key value } inputs { id kind }
                       artifacts { name kind } parent { name } } } }
      sgd: runs(filter: "params.model = 'SGDClassifier' and tags.dataset = 'iris'", first: 5) {
        edges { node { id metrics { key step } } } }
    }""")
    assert data["all"]["totalCount"] == 15  # 3 datasets, each a sweep with 4 model runs
    best = data["best"]["edges"][0]["node"]
    assert best["status"] == "FINISHED" and best["parent"]["name"].endswith("-sweep")
    params = {p["key"]: p["value"] for p in best["params"]}
    assert params["n_estimators"] in ("10", "50")  # logged by autolog, not by the demo
    assert any(i["kind"] == "DatasetVersion" for i in best["inputs"])
    assert any(a["kind"] == "model" for a in best["artifacts"])
    sgd = data["sgd"]["edges"][0]["node"]
    history = modeldb_server.graphql(
        'query($id: ID!) { run(id: $id) { metricHistory(key: "accuracy") { step } } }',
        id=sgd["id"])["run"]["metricHistory"]
    assert [p["step"] for p in history] == list(range(30))
    lineage = modeldb_server.graphql(
        'query($id: ID!) { lineage(id: $id, depth: 3) { nodes { kind } } }', id=best["id"])
    assert {"DatasetVersion", "Experiment", "Run"} <= {n["kind"] for n in lineage["lineage"]["nodes"]}
