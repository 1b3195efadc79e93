"""The engines the other integration tests run on really work: PostgreSQL, Kafka and Neo4j
each take a write and give it back, and the local launcher describes what it started."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from modeldb.infra import launcher
from modeldb.infra.engines import Engines, fresh_postgres_database, fresh_topic_name, resolve_engines

pytestmark = pytest.mark.engines


@pytest.fixture(scope="module")
def engines() -> Engines:
    # Module scope: resolved before the function-scoped fixtures that clear MODELDB_* variables.
    return resolve_engines()


@pytest.fixture(scope="module")
def infra_home(engines: Engines) -> Path:
    # Captured now, for the same reason: MODELDB_INFRA_HOME is cleared inside each test.
    return launcher.infra_home()


def test_postgres_round_trip(engines: Engines) -> None:
    import asyncpg

    url = fresh_postgres_database(engines, "test_launcher")
    assert url.startswith("postgresql+asyncpg://")

    async def scenario() -> list[tuple[int, str]]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
            await conn.execute("CREATE TABLE runs (id int PRIMARY KEY, name text NOT NULL)")
            await conn.executemany("INSERT INTO runs VALUES ($1, $2)", [(1, "a"), (2, "b")])
            rows = await conn.fetch("SELECT id, name FROM runs ORDER BY id")
            return [(row["id"], row["name"]) for row in rows]
        finally:
            await conn.close()

    assert asyncio.run(scenario()) == [(1, "a"), (2, "b")]


def test_fresh_databases_are_distinct(engines: Engines) -> None:
    first = fresh_postgres_database(engines, "Same Name!")
    second = fresh_postgres_database(engines, "Same Name!")
    assert first != second
    assert first.rsplit("/", 1)[1].startswith("same_name_")


def test_kafka_round_trip(engines: Engines) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = fresh_topic_name("test-launcher")
    sent = [(f"run-{i}".encode(), f"event-{i}".encode()) for i in range(10)]

    async def scenario() -> list[tuple[bytes, bytes]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=engines.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
            assert topic in await admin.list_topics()
        finally:
            await admin.close()

        producer = AIOKafkaProducer(bootstrap_servers=engines.kafka_bootstrap, acks="all",
                                    enable_idempotence=True)
        await producer.start()
        try:
            for key, value in sent:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=engines.kafka_bootstrap,
                                    group_id=f"{topic}.group", auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        await consumer.start()
        received: list[tuple[bytes, bytes]] = []
        try:
            async with asyncio.timeout(60):
                while len(received) < len(sent):
                    batch = await consumer.getmany(timeout_ms=1000)
                    received += [(m.key, m.value) for ms in batch.values() for m in ms
                                 if m.key is not None and m.value is not None]
        finally:
            await consumer.stop()
        return received

    # Partitions order only within a key, so compare as sets; each key was sent once.
    assert sorted(asyncio.run(scenario())) == sorted(sent)


def test_neo4j_round_trip(engines: Engines) -> None:
    from neo4j import AsyncGraphDatabase

    marker = fresh_topic_name("node")

    async def scenario() -> list[str]:
        async with AsyncGraphDatabase.driver(engines.neo4j_uri, auth=None) as driver:
            await driver.execute_query(
                "CREATE (:LauncherTest {id: $id})-[:USED]->(:LauncherTest {id: $id + '.input'})",
                id=marker)
            records, _, _ = await driver.execute_query(
                "MATCH (a:LauncherTest {id: $id})-[:USED]->(b) RETURN b.id AS id", id=marker)
            await driver.execute_query("MATCH (n:LauncherTest) WHERE n.id STARTS WITH $id DETACH DELETE n",
                                       id=marker)
            return [record["id"] for record in records]

    assert asyncio.run(scenario()) == [f"{marker}.input"]


def test_launcher_status_and_env(engines: Engines, infra_home: Path) -> None:
    if engines.source != "launcher":
        pytest.skip(f"engines came from {engines.source}, not the local launcher")
    report = launcher.status(infra_home)
    for name in launcher.SERVICES:
        assert report[name]["running"], report
        assert report[name]["listening"], report
        assert isinstance(report[name]["pid"], int)
        assert Path(report[name]["log"]).is_file()

    settings = launcher.env(infra_home)
    assert settings == {
        "MODELDB_EVENT_LOG": f"kafka://{engines.kafka_bootstrap}",
        "MODELDB_READ_DB": engines.postgres_url,
        "MODELDB_GRAPH": engines.neo4j_uri,
    }
    assert settings["MODELDB_READ_DB"].startswith("postgresql+asyncpg://")
    assert settings["MODELDB_READ_DB"].endswith(f":{report['postgres']['port']}/modeldb")


def test_launcher_up_is_idempotent(engines: Engines, infra_home: Path) -> None:
    if engines.source != "launcher":
        pytest.skip(f"engines came from {engines.source}, not the local launcher")
    pids = {name: info["pid"] for name, info in launcher.status(infra_home).items()}
    assert launcher.up(home=infra_home) == launcher.env(infra_home)
    assert {name: info["pid"] for name, info in launcher.status(infra_home).items()} == pids


def test_cli_env_prints_exports(infra_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert launcher.main(["--home", str(infra_home), "env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split("=", 1)[0] for line in lines) == [
        "export MODELDB_EVENT_LOG", "export MODELDB_GRAPH", "export MODELDB_READ_DB"]


def test_kafka_storage_formats_a_cluster_id_that_starts_with_a_dash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cluster ids are URL-safe base64, so 1 in 64 starts with "-", which the storage tool
    once took for an option and refused to start Kafka."""
    import uuid

    monkeypatch.setattr(launcher.uuid, "uuid4", lambda: uuid.UUID(bytes=bytes([0xF8]) + bytes(15)))
    kafka = launcher.Kafka(tmp_path, {"kafka": 1, "kafka_controller": 2})  # formatted, not started
    kafka.prepare()
    meta = (kafka.data / "data" / "meta.properties").read_text()
    assert "cluster.id=-AAAAAAAAAAAAAAAAAAAAA" in meta.splitlines()
