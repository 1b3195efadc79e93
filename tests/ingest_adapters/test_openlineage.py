"""OpenLineage RunEvents from the real openlineage-python client into a real `modeldb serve`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from modeldb.event_schema.nodes import node_id
from modeldb.ingest_adapters.openlineage import MalformedLineage, map_body
from tests.helpers import ServerProcess

ol = pytest.importorskip("openlineage.client")
from openlineage.client import OpenLineageClient  # noqa: E402
from openlineage.client.event_v2 import (  # noqa: E402
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
)
from openlineage.client.facet_v2 import schema_dataset  # noqa: E402

PRODUCER = "https://github.com/modeldb/tests"
NAMESPACE = "tests"
JOB = "train_job"

RUN_QUERY = """query($id: ID!) { run(id: $id) { id status name project { name }
  experiment { name } inputs { id kind name } outputs { id kind name } } }"""
LINEAGE_QUERY = """query($id: ID!) { lineage(id: $id, direction: UPSTREAM, depth: 5) {
  nodes { id kind name } edges { source target kind } } }"""


def _schema(*names: str) -> schema_dataset.SchemaDatasetFacet:
    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type="DOUBLE") for n in names])


def _events(run_id: str) -> list[RunEvent]:
    inputs = [InputDataset(namespace="s3://bucket", name="raw/train.csv",
                           facets={"schema": _schema("x", "y")})]
    outputs = [OutputDataset(namespace="s3://bucket", name="features/train.parquet",
                             facets={"schema": _schema("x2", "y")})]
    job, run = Job(namespace=NAMESPACE, name=JOB), Run(runId=run_id)
    return [
        RunEvent(eventType=RunState.START, eventTime=datetime(2026, 1, 1, 12, tzinfo=UTC).isoformat(),
                 run=run, job=job, producer=PRODUCER, inputs=inputs, outputs=outputs),
        RunEvent(eventType=RunState.COMPLETE,
                 eventTime=datetime(2026, 1, 1, 12, 5, tzinfo=UTC).isoformat(),
                 run=run, job=job, producer=PRODUCER, inputs=inputs, outputs=outputs),
    ]


def _state(server: ServerProcess, run_id: str, output_version: str) -> dict[str, Any]:
    server.wait_projected()
    return {"run": server.graphql(RUN_QUERY, id=run_id)["run"],
            "lineage": server.graphql(LINEAGE_QUERY, id=output_version)["lineage"],
            "history": server.graphql("query($id: ID!) { history(id: $id) { eventId } }",
                                      id=run_id)["history"]}


def test_openlineage_client_start_complete_gives_a_finished_run_with_lineage(
    modeldb_server: ServerProcess,
) -> None:
    client = OpenLineageClient(url=modeldb_server.url)  # posts to <url>/api/v1/lineage
    run_id = str(uuid.uuid4())
    for event in _events(run_id):
        client.emit(event)

    run = _state(modeldb_server, run_id, "x")["run"]
    assert run["status"] == "FINISHED"
    assert run["project"]["name"] == NAMESPACE and run["experiment"]["name"] == JOB
    (inp,), (out,) = run["inputs"], run["outputs"]
    assert inp["kind"] == out["kind"] == "DatasetVersion"
    assert inp["id"].startswith("s3://bucket/raw/train.csv@sha256:")
    assert out["id"].startswith("s3://bucket/features/train.parquet@sha256:")

    out_node, in_node = node_id("DatasetVersion", out["id"]), node_id("DatasetVersion", inp["id"])
    run_node = node_id("Run", run_id)
    before = _state(modeldb_server, run_id, out_node)
    graph = before["lineage"]
    edges = {(e["source"], e["target"], e["kind"]) for e in graph["edges"]}
    assert (out_node, run_node, "GENERATED_BY") in edges
    assert (run_node, in_node, "USED") in edges
    assert {in_node, run_node, out_node} <= {n["id"] for n in graph["nodes"]}

    # The same OpenLineage events again (through the client, and as one JSON array): the
    # event ids are deterministic, so the projected state does not move.
    for event in _events(run_id):
        client.emit(event)
    from openlineage.client.serde import Serde

    body = "[" + ",".join(Serde.to_json(e) for e in _events(run_id)) + "]"
    r = httpx.post(f"{modeldb_server.url}/api/v1/lineage", content=body,
                   headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text
    assert len(r.json()["event_ids"]) == len(set(r.json()["event_ids"])) > 0
    assert _state(modeldb_server, run_id, out_node) == before


@pytest.mark.parametrize("body", [
    b"{not json", b"[]", b"42", b'{"eventType": "START"}',
    b'{"eventType": "DONE", "eventTime": "2026-01-01T00:00:00Z", "run": {"runId": "r"},'
    b' "job": {"namespace": "n", "name": "j"}}',
    b'{"eventType": "START", "eventTime": "yesterday", "run": {"runId": "r"},'
    b' "job": {"namespace": "n", "name": "j"}}',
])
def test_malformed_bodies_are_refused_with_a_reason(modeldb_server: ServerProcess,
                                                    body: bytes) -> None:
    r = httpx.post(f"{modeldb_server.url}/api/v1/lineage", content=body,
                   headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500
    assert r.json()["error"]


def test_mapping_is_deterministic_and_keeps_unknown_facets() -> None:
    body = (b'{"eventType": "RUNNING", "eventTime": "2026-01-01T00:00:00Z",'
            b' "producer": "p", "run": {"runId": "not-a-uuid", "facets": {"custom": {"a": [1, 2]}}},'
            b' "job": {"namespace": "n", "name": "j"}}')
    first, second = map_body(body), map_body(body)
    assert [e["event_id"] for e in first] == [e["event_id"] for e in second]
    (attrs,) = [e for e in first if e["type"] == "AttributesSet"]
    assert attrs["payload"]["attributes"]["openlineage.facets.custom"] == '{"a":[1,2]}'
    assert attrs["payload"]["attributes"]["openlineage.eventType"] == "RUNNING"
    assert attrs["source"] == "openlineage"
    assert not any(e["type"] == "RunFinished" for e in first)
    with pytest.raises(MalformedLineage):
        map_body(b'{"run": {}, "job": {}}')


def test_gzip_bodies_map_like_plain_ones_and_cannot_inflate_without_bound() -> None:
    import gzip

    body = (b'{"eventType": "START", "eventTime": "2026-01-01T00:00:00Z",'
            b' "run": {"runId": "r"}, "job": {"namespace": "n", "name": "j"},'
            b' "inputs": [{"namespace": "postgres://u@h:5432", "name": "db.t"}]}')
    plain = map_body(body)
    assert map_body(gzip.compress(body), "gzip") == plain
    (link,) = [e for e in plain if e["type"] == "RunInputLogged"]
    assert link["payload"]["id"].count("@") == 1  # "@" in the namespace is escaped
    with pytest.raises(MalformedLineage, match="exceeds"):
        map_body(gzip.compress(b" " * (40 * 1024 * 1024)), "gzip")
