"""Opening the read database (SQLite via aiosqlite, PostgreSQL via asyncpg) and the one
dialect difference the projections need: INSERT … ON CONFLICT."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def read_db_url(value: str) -> str:
    """Accept a plain file path as shorthand for an embedded SQLite read model."""
    if "://" in value:
        return value
    Path(value).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{value}"


def create_engine(url: str) -> AsyncEngine:
    url = read_db_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # The read model can always be rebuilt from the log, so NORMAL is durable enough.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def is_postgres(conn: AsyncConnection | AsyncEngine) -> bool:
    return conn.dialect.name == "postgresql"


def insert_for(conn: AsyncConnection, table: Table) -> Any:
    module = postgresql if is_postgres(conn) else sqlite
    return module.insert(table)


async def upsert(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    update: Sequence[str] | None = None,
) -> None:
    """Insert rows; on a key conflict overwrite `update` columns (None: do nothing)."""
    if not rows:
        return
    stmt = insert_for(conn, table)
    if update:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    await conn.execute(stmt, list(rows))
