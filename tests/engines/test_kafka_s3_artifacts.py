"""A kafka:// SDK client with the server's S3 setting stores its artifacts on S3 (a real
S3-compatible server, moto's server mode), where a server with the same setting serves them."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import boto3
import pytest

import modeldb
from modeldb import _client
from modeldb.infra.settings import Settings
from modeldb.infra.system import System
from modeldb.query_api.app import build_schema, graphql_context
from modeldb.query_api.runs import RunQueries
from tests.s3_server import S3Server, s3_credentials, s3_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.engines


@pytest.mark.parametrize("stack", ["engines"], indirect=True)
async def test_a_kafka_client_puts_artifacts_on_s3(
    settings: Settings, s3_server: S3Server, s3_credentials: None,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    bucket = s3_server.new_bucket()
    for key, value in s3_server.env(bucket, prefix="shared").items():
        monkeypatch.setenv(key, value)
    model = tmp_path / "model.bin"
    model.write_bytes(os.urandom(200_000))
    modeldb.init(settings.event_log, project="k", experiment="s3")
    try:
        with modeldb.start_run(name="to-s3") as run:
            artifact = run.log_artifact(model, kind="model")
        assert modeldb.flush(timeout=30)
    finally:
        _client.shutdown(timeout=10)

    hexdigest = artifact.digest.removeprefix("sha256:")
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
    stored = s3.get_object(Bucket=bucket, Key=f"shared/sha256/{hexdigest[:2]}/{hexdigest}")
    assert stored["Body"].read() == model.read_bytes()

    system = await System.open(replace(settings, artifact_store=f"s3://{bucket}/shared",
                                       s3_endpoint_url=s3_server.endpoint_url))
    try:
        await system.catch_up()
        result = await build_schema().execute(
            "query($id: ID!) { run(id: $id) { artifacts { digest kind } } }",
            variable_values={"id": run.id},
            context_value=graphql_context(RunQueries(system.engine), system.graph, system.audit))
        assert not result.errors, result.errors
        assert result.data["run"]["artifacts"] == [{"digest": artifact.digest, "kind": "model"}]
        assert b"".join(system.artifacts.open_stream(artifact.digest)) == model.read_bytes()
    finally:
        await system.close()
