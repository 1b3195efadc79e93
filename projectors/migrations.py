"""Versioned schema migrations for the read database.

Each migration is a numbered, described step; `schema_migrations` records which ran. The
embedded SQLite database belongs to one ModelDB and is migrated on open. A shared
PostgreSQL database is never changed silently: until `modeldb migrate` has brought it to
the version this code needs, opening it fails with a message saying so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_meta = MetaData()
schema_migrations = Table(
    "schema_migrations",
    _meta,
    Column("version", Integer, primary_key=True),
    Column("description", String(200), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


class SchemaOutdated(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[AsyncConnection], Awaitable[None]]


async def _initial(conn: AsyncConnection) -> None:
    from modeldb.projectors import audit, base, graph_sql, read_model

    for metadata in (base.state_metadata, read_model.metadata, graph_sql.metadata,
                     audit.metadata):
        await conn.run_sync(metadata.create_all)


async def _registry(conn: AsyncConnection) -> None:
    from modeldb.projectors import read_model, webhooks

    # checkfirst: on a new database, migration 1 (today's metadata) has made them already.
    await conn.run_sync(lambda sync: read_model.metadata.create_all(
        sync, tables=list(read_model.REGISTRY_TABLES), checkfirst=True))
    await conn.run_sync(lambda sync: webhooks.metadata.create_all(sync, checkfirst=True))


async def _metric_rollups(conn: AsyncConnection) -> None:
    from modeldb.projectors import read_model

    # Series logged before this migration have no rollups until `modeldb replay --projection
    # sql`; until then their downsampled histories are computed from the points (slower).
    await conn.run_sync(lambda sync: read_model.metric_rollups.create(sync, checkfirst=True))


async def _search_enrichment(conn: AsyncConnection) -> None:
    from modeldb.projectors import enrichment, search

    # Both projections start empty and catch up from position zero on their first run.
    await search.create_index(conn)
    await enrichment.create_tables(conn)


async def _security(conn: AsyncConnection) -> None:
    from modeldb.infra import security

    await conn.run_sync(lambda sync: security.metadata.create_all(sync, checkfirst=True))


async def _search_indexes(conn: AsyncConnection) -> None:
    from sqlalchemy import text

    # Run search at 100k+ runs (query_api/run_search.py): counts read the scope of an
    # experiment from one covering index, and key-value filters and sorts read run ids
    # from the key's index alone. The two dropped indexes are prefixes of the new ones.
    # PostgreSQL sorts nulls after values, so only an index whose nulls come first, read
    # backwards, serves the default order `start_time DESC NULLS LAST, id DESC NULLS LAST`;
    # SQLite sorts nulls first already (and has no NULLS FIRST in an index).
    nulls_first = " NULLS FIRST" if conn.dialect.name == "postgresql" else ""
    for statement in (
        f"CREATE INDEX IF NOT EXISTS runs_in_scope ON runs (project, experiment, deleted, "
        f"start_time{nulls_first}, id{nulls_first})",
        'CREATE INDEX IF NOT EXISTS latest_metrics_by_key_value_run ON latest_metrics ("key", value, run_id)',
        'CREATE INDEX IF NOT EXISTS params_by_key_num_run ON params ("key", value_num, run_id)',
        "DROP INDEX IF EXISTS latest_metrics_by_key_value",
        "DROP INDEX IF EXISTS params_by_key_num",
    ):
        await conn.execute(text(statement))


async def _sparse_rollups(conn: AsyncConnection) -> None:
    from sqlalchemy import text

    # A series now has rollups from its second point on (projectors/sql_projection.py), and
    # when it grows past one point its stored point is rolled up then: a one-point series
    # that kept its old rollup rows would have that point counted twice.
    await conn.execute(text(
        "DELETE FROM metric_rollups WHERE EXISTS (SELECT 1 FROM latest_metrics l "
        "WHERE l.run_id = metric_rollups.run_id AND l.key = metric_rollups.key AND l.count = 1)"))


async def _covering_lookups(conn: AsyncConnection) -> None:
    from sqlalchemy import text

    from modeldb.projectors.read_model import PREFIX

    # Run search counts (query_api/run_search.py) from indexes alone: a text filter's
    # matches read as run ids from the key's prefix index (the table row was read for each
    # match only to get its run id), each checked against the scope in one lookup of the
    # run's id with its scope columns (two before: the id's index, then the row). The two
    # dropped indexes are prefixes of the new ones.
    prefix = f"substr(value, 1, {PREFIX})"  # as the filters spell it (sql_filters.indexed_prefix)
    for statement in (
        f'CREATE INDEX IF NOT EXISTS params_by_key_text_run ON params ("key", {prefix}, run_id)',
        f'CREATE INDEX IF NOT EXISTS tags_by_key_value_run ON tags ("key", {prefix}, run_id)',
        "CREATE INDEX IF NOT EXISTS runs_by_id_in_scope ON runs (id, project, experiment, deleted)",
        "DROP INDEX IF EXISTS params_by_key_text",
        "DROP INDEX IF EXISTS tags_by_key_value",
    ):
        await conn.execute(text(statement))


async def _deferred_indexes(conn: AsyncConnection) -> None:
    from modeldb.projectors import base

    await conn.run_sync(lambda sync: base.deferred_indexes.create(sync, checkfirst=True))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema: read model, lineage graph, audit store", _initial),
    Migration(2, "registry governance, deployments, webhook outbox", _registry),
    Migration(3, "metric rollups for downsampled histories", _metric_rollups),
    Migration(4, "full-text search index, enrichment (derived run attributes)", _search_enrichment),
    Migration(5, "security: API tokens and grants (no projection: replays keep them)", _security),
    Migration(6, "run search indexes: covering scope, key-value indexes holding run ids", _search_indexes),
    Migration(7, "metric rollups only for series of two or more points", _sparse_rollups),
    Migration(8, "covering lookups: text indexes holding run ids, runs' scope by id", _covering_lookups),
    Migration(9, "secondary indexes a rebuild builds once at its end", _deferred_indexes),
)
HEAD = max(m.version for m in MIGRATIONS)


async def current_version(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        await conn.run_sync(_meta.create_all)
        versions = [row[0] for row in await conn.execute(select(schema_migrations.c.version))]
    return max(versions, default=0)


async def migrate(engine: AsyncEngine) -> list[int]:
    """Apply every pending migration, each in its own transaction; the versions applied."""
    applied = []
    for migration in MIGRATIONS:
        async with engine.begin() as conn:
            await conn.run_sync(_meta.create_all)
            done = await conn.scalar(select(schema_migrations.c.version)
                                     .where(schema_migrations.c.version == migration.version))
            if done is not None:
                continue
            await migration.apply(conn)
            await conn.execute(schema_migrations.insert().values(
                version=migration.version, description=migration.description,
                applied_at=datetime.now(UTC)))
            applied.append(migration.version)
    return applied


async def ensure_schema(engine: AsyncEngine) -> None:
    """Migrate an embedded database; require a shared one to have been migrated."""
    if engine.dialect.name == "sqlite":
        await migrate(engine)
        return
    version = await current_version(engine)
    if version < HEAD:
        raise SchemaOutdated(
            f"the read database is at schema version {version}, this ModelDB needs {HEAD}: "
            "run `modeldb migrate` (with the same MODELDB_READ_DB) first")
    if version > HEAD:
        raise SchemaOutdated(
            f"the read database is at schema version {version}, newer than this ModelDB "
            f"({HEAD}): upgrade ModelDB")
