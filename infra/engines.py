"""Where tests and tools find real Kafka, PostgreSQL and Neo4j.

`resolve_engines()` picks, per engine, in this order:
1. an explicit endpoint from the environment: MODELDB_TEST_KAFKA (`host:port` or
   `kafka://host:port`), MODELDB_TEST_POSTGRES (an SQLAlchemy or plain PostgreSQL URL of a
   superuser, so tests can create databases), MODELDB_TEST_NEO4J (`bolt://host:port`, auth off);
2. else containers from testcontainers, when a Docker engine answers `docker info`;
3. else the local launcher (`modeldb.infra.launcher.up()`), which needs no Docker.

The answer is computed once per process: test fixtures may clear MODELDB_* variables later,
and containers must live as long as the process anyway.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import secrets
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from modeldb.infra import launcher
from modeldb.writer.sync import run_sync

ENV_KAFKA = "MODELDB_TEST_KAFKA"
ENV_POSTGRES = "MODELDB_TEST_POSTGRES"
ENV_NEO4J = "MODELDB_TEST_NEO4J"

# Images for the testcontainers branch, kept near the launcher's versions.
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"  # testcontainers' Kafka module drives Confluent's image
POSTGRES_IMAGE = "postgres:16"
NEO4J_IMAGE = "neo4j:5.26-community"


@dataclass(frozen=True)
class Engines:
    kafka_bootstrap: str  # host:port
    postgres_url: str  # postgresql+asyncpg://user[:password]@host:port/db, a superuser
    neo4j_uri: str  # bolt://host:port, auth disabled
    source: str  # "env", "testcontainers" or "launcher": where the non-env engines came from


@functools.cache
def resolve_engines() -> Engines:
    """Endpoints of the three engines, starting servers if the environment names none."""
    given = {
        "kafka": _kafka_bootstrap(os.environ.get(ENV_KAFKA, "")),
        "postgres": _asyncpg_url(os.environ.get(ENV_POSTGRES, "")),
        "neo4j": os.environ.get(ENV_NEO4J, ""),
    }
    missing = [name for name, value in given.items() if not value]
    if not missing:
        return Engines(given["kafka"], given["postgres"], given["neo4j"], source="env")
    if _docker_answers():
        found, source = _testcontainers(missing), "testcontainers"
    else:
        found, source = _launcher(missing), "launcher"
    merged = {**given, **found}
    return Engines(merged["kafka"], merged["postgres"], merged["neo4j"], source=source)


def fresh_postgres_database(engines: Engines, name: str) -> str:
    """Create an empty database named `<name>_<random>` and return its URL (same user/host).

    The random suffix keeps concurrent test runs against one server apart.
    """
    db = f"{_identifier(name)[:50]}_{secrets.token_hex(4)}"
    parts = urlsplit(engines.postgres_url)

    async def create() -> None:
        import asyncpg

        conn = await asyncpg.connect(urlunsplit(parts._replace(scheme="postgresql")), timeout=30)
        try:
            await conn.execute(f'CREATE DATABASE "{db}"')
        finally:
            await conn.close()

    run_sync(create())
    return urlunsplit(parts._replace(path=f"/{db}"))


def fresh_topic_name(prefix: str) -> str:
    """A topic name no earlier run used: `<prefix>.<12 hex>`, in Kafka's legal characters."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "-", prefix)[:200] or "t"
    return f"{clean}.{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------- the three sources


def _kafka_bootstrap(value: str) -> str:
    return value.removeprefix("kafka://").rstrip("/")


def _asyncpg_url(url: str) -> str:
    if not url:
        return ""
    scheme, rest = url.split("://", 1)
    return f"postgresql+asyncpg://{rest}" if scheme in {"postgres", "postgresql"} else url


def _identifier(name: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", name.lower()).strip("_") or "db"


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _launcher(names: list[str]) -> dict[str, str]:
    urls = launcher.up(names)
    return {
        "kafka": _kafka_bootstrap(urls.get("MODELDB_EVENT_LOG", "")),
        "postgres": urls.get("MODELDB_READ_DB", ""),
        "neo4j": urls.get("MODELDB_GRAPH", ""),
    }


def _testcontainers(names: list[str]) -> dict[str, str]:
    # Imported here: testcontainers is a test dependency, and needs Docker to do anything.
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.neo4j import Neo4jContainer
    from testcontainers.community.postgres import PostgresContainer

    class Neo4jNoAuth(Neo4jContainer):
        def _configure(self) -> None:
            # Same as the launcher: auth off. (The module's readiness check still sends its
            # password, which a server without auth accepts.)
            self.with_env("NEO4J_AUTH", "none")

    found: dict[str, str] = {}
    if "kafka" in names:
        kafka = KafkaContainer(KAFKA_IMAGE).with_kraft().with_env("KAFKA_NUM_PARTITIONS", "3")
        found["kafka"] = _started(kafka).get_bootstrap_server()
    if "postgres" in names:
        postgres = PostgresContainer(POSTGRES_IMAGE, username="postgres", password="postgres",
                                     dbname="modeldb", driver="asyncpg")
        found["postgres"] = _started(postgres).get_connection_url()
    if "neo4j" in names:
        found["neo4j"] = _started(Neo4jNoAuth(NEO4J_IMAGE)).get_connection_url()
    return found


def _started(container: Any) -> Any:
    container.start()
    atexit.register(container.stop)
    return container
