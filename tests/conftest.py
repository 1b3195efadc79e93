"""Fixtures: the two stacks every end-to-end test runs on, a System on a stack, and a real
`modeldb serve` process.

- embedded: SQLite log + SQLite read model + SQL-tables graph, in a temporary folder;
- engines: Kafka + PostgreSQL + Neo4j — real servers, from the environment, testcontainers
  or the local launcher (`modeldb.infra.engines.resolve_engines`), each test on a fresh
  topic and a fresh database (Neo4j Community has one database: its graph is wiped).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from modeldb.infra.settings import Settings
from modeldb.infra.system import System
from tests.helpers import ServerProcess, free_port, server_env

ENGINE_PARTS = ("kafka", "postgres", "neo4j")
STACKS = ["embedded", pytest.param("engines", marks=pytest.mark.engines)]


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never touch the developer's ~/.modeldb or inherit their MODELDB_* settings."""
    for key in list(os.environ):
        if key.startswith("MODELDB_") and not key.startswith(("MODELDB_TEST_", "MODELDB_INFRA_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MODELDB_HOME", str(tmp_path / "default-home"))
    monkeypatch.setenv("MODELDB_SPOOL_DIR", str(tmp_path / "spool"))


def engine_env(name: str) -> dict[str, str]:
    """MODELDB_* settings pointing at the real engines, on a fresh topic and database."""
    from modeldb.infra.engines import fresh_postgres_database, fresh_topic_name, resolve_engines

    engines = resolve_engines()
    env: dict[str, str] = {}
    if "kafka" in ENGINE_PARTS:
        topic = fresh_topic_name(f"modeldb-test-{name}")
        env["MODELDB_EVENT_LOG"] = f"kafka://{engines.kafka_bootstrap}?topic={topic}"
    if "postgres" in ENGINE_PARTS:
        env["MODELDB_READ_DB"] = fresh_postgres_database(engines, "modeldb_test")
    if "neo4j" in ENGINE_PARTS:
        env["MODELDB_GRAPH"] = engines.neo4j_uri
    return env


async def prepare_engines(settings: Settings) -> None:
    """What an operator does before first start: migrate the database, clear the graph."""
    from modeldb.projectors.db import create_engine
    from modeldb.projectors.migrations import migrate

    engine = create_engine(settings.read_db)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    if settings.graph != "sql":
        from modeldb.projectors.graph_neo4j import Neo4jGraph

        graph = Neo4jGraph(settings.graph)
        try:
            await graph.setup()
            await graph.reset()
        finally:
            await graph.close()


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def stack_env(stack: str, request: pytest.FixtureRequest) -> dict[str, str]:
    return {} if stack == "embedded" else engine_env(request.node.name[:40])


@pytest.fixture
def settings(tmp_path: Path, stack_env: dict[str, str]) -> Settings:
    base = Settings.load(tmp_path / "home")
    if not stack_env:
        return base
    chosen = replace(
        base,
        event_log=stack_env.get("MODELDB_EVENT_LOG", base.event_log),
        read_db=stack_env.get("MODELDB_READ_DB", base.read_db),
        graph=stack_env.get("MODELDB_GRAPH", base.graph),
    )
    asyncio.run(prepare_engines(chosen))
    return chosen


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    opened = await System.open(settings)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def modeldb_server(tmp_path: Path, settings: Settings, stack_env: dict[str, str]) -> Iterator[ServerProcess]:
    """`modeldb serve` on the stack of the test (embedded unless the test asks otherwise)."""
    server = ServerProcess(settings.home, free_port(), server_env(stack_env))
    server.start()
    try:
        yield server
    finally:
        server.stop()
