"""The SDK on the engines: logging straight to Kafka (kafka://), answered by projections in
PostgreSQL and Neo4j; and nothing lost while the broker is away."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

import modeldb
from modeldb.infra import launcher
from modeldb.infra.engines import fresh_topic_name
from modeldb.infra.settings import Settings
from modeldb.infra.system import System
from modeldb.query_api.app import build_schema, graphql_context
from modeldb.query_api.runs import RunQueries
from tests.engines.test_kafka_log import read_topic
from tests.helpers import ServerProcess, free_port, server_env

pytestmark = pytest.mark.engines


@pytest.mark.parametrize("stack", ["engines"], indirect=True)
async def test_the_sdk_logs_straight_to_kafka_and_the_projections_answer(
    settings: Settings, tmp_path: Path
) -> None:
    modeldb.init(settings.event_log, project="k", experiment="direct")
    with modeldb.start_run(name="over-kafka", params={"lr": 0.1}) as run:
        for step in range(50):
            run.log_metric("loss", 1 / (step + 1), step=step)
        model = tmp_path / "model.bin"
        model.write_bytes(b"weights")
        run.log_artifact(model, kind="model")
    assert modeldb.flush(timeout=30)
    system = await System.open(settings)
    try:
        await system.catch_up()
        result = await build_schema().execute(
            """query($id: ID!) { run(id: $id) { name status params { key value }
                 metricHistory(key: "loss") { step } artifacts { kind } }
               lineage(id: $id, depth: 2) { nodes { kind } } }""",
            variable_values={"id": run.id},
            context_value=graphql_context(RunQueries(system.engine), system.graph, system.audit))
    finally:
        await system.close()
    assert not result.errors, result.errors
    found = result.data["run"]
    assert (found["name"], found["status"]) == ("over-kafka", "FINISHED")
    assert found["params"] == [{"key": "lr", "value": "0.1"}]
    assert [p["step"] for p in found["metricHistory"]] == list(range(50))
    assert found["artifacts"] == [{"kind": "model"}]
    assert {"Run", "Experiment", "Project"} <= {n["kind"] for n in result.data["lineage"]["nodes"]}


@pytest.mark.slow
def test_broker_away_writer_refuses_and_the_sdk_spools_then_delivers_everything(
    own_broker: tuple[str, Path], tmp_path: Path
) -> None:
    base, home = own_broker
    url = f"{base}?topic={fresh_topic_name('modeldb.test.away')}"
    server = ServerProcess(tmp_path / "server", free_port(),
                           server_env({"MODELDB_EVENT_LOG": url})).start()
    try:
        launcher.down(home)
        # The writer acknowledges nothing the broker did not take: 503, not 202.
        event = {"event_id": "0190a0a0-0000-7000-8000-000000000001", "type": "ProjectCreated",
                 "aggregate": {"kind": "project", "id": "p"},
                 "occurred_at": "2026-01-01T00:00:00+00:00", "payload": {"name": "p"}}
        refused = httpx.post(f"{server.url}/api/v1/events", json=[event], timeout=60)
        assert refused.status_code == 503, refused.text
    finally:
        server.stop()

    # The SDK, straight to the broker that is away: logging never blocks, batches spool.
    modeldb.init(url, project="p", experiment="e", retry_seconds=1)
    with modeldb.start_run(name="offline") as run:
        for step in range(200):
            run.log_metric("m", step, step=step)
    assert not modeldb.flush(timeout=5)  # not delivered, but safe in the spool
    from modeldb import _client

    assert any(_client.current().spool.pending())

    launcher.up(("kafka",), home=home)
    modeldb.init(url, project="p", experiment="e")  # a new client sends the spool first
    assert modeldb.flush(timeout=60)
    records = asyncio.run(read_topic(base.removeprefix("kafka://"), url.split("topic=")[1], 1))
    ids = [orjson.loads(r.value)["event_id"] for r in records]
    assert len(ids) == len(set(ids))  # exactly once
    points = sum(len(orjson.loads(r.value)["payload"].get("points", [])) for r in records)
    assert points == 200
    types = {orjson.loads(r.value)["type"] for r in records}
    assert {"ProjectCreated", "RunStarted", "MetricsLogged", "RunFinished"} <= types


@pytest.mark.parametrize("stack", ["engines"], indirect=True)
async def test_sensitive_values_are_sealed_before_they_reach_kafka(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A job logging straight to Kafka seals with the server's key store and key...
    monkeypatch.setenv("MODELDB_KEY_STORE", settings.read_db)
    monkeypatch.setenv("MODELDB_SERVER_KEY", "the-installation-key")
    modeldb.init(settings.event_log, project="k", experiment="sealed")
    with modeldb.start_run(name="personal") as run:
        run.log_param("email", "carol@example.com", sensitive=True)
    assert modeldb.flush(timeout=30)
    topic = settings.event_log.split("topic=")[1]
    bootstrap = settings.event_log.split("//")[1].split("?")[0]
    records = await read_topic(bootstrap, topic, 3)
    assert b"carol@example.com" not in b"".join(r.value for r in records)
    system = await System.open(Settings(**{**settings.__dict__, "server_key": "the-installation-key"}))
    try:
        await system.catch_up()
        result = await build_schema().execute(
            'query($id: ID!) { run(id: $id) { params { key value } } }', variable_values={"id": run.id},
            context_value=graphql_context(RunQueries(system.engine), system.graph, system.audit))
    finally:
        await system.close()
    assert result.data["run"]["params"] == [{"key": "email", "value": "carol@example.com"}]


@pytest.mark.parametrize("stack", ["engines"], indirect=True)
async def test_without_a_key_store_kafka_jobs_refuse_sensitive_values(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # ...and without them a job refuses the value rather than send it in clear.
    topic = settings.event_log.split("topic=")[1]
    bootstrap = settings.event_log.split("//")[1].split("?")[0]
    modeldb.init(settings.event_log, project="k", experiment="sealed")
    with modeldb.start_run(name="refused") as run:
        run.log_param("email", "dave@example.com", sensitive=True)
    assert modeldb.flush(timeout=30)
    assert "no key store" in caplog.text
    assert b"dave@example.com" not in b"".join(r.value for r in await read_topic(bootstrap, topic, 2))
