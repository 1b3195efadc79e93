"""Opening the read database (SQLite via aiosqlite, PostgreSQL via asyncpg) and the one
dialect difference the projections need: INSERT … ON CONFLICT."""

from __future__ import annotations

from collections import defaultdict, namedtuple
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, event, or_, text
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
            # Reads through a memory map skip a copy per page: lineage walks that touch
            # thousands of scattered rows spent a quarter less CPU (bench/lineage_neo4j.py).
            cursor.execute("PRAGMA mmap_size=268435456")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


async def refresh_statistics(conn: AsyncConnection, tables: Sequence[Table]) -> None:
    """Give SQLite's query planner statistics of these tables as they are now (ANALYZE,
    sampling at most 400 rows per index: ~10 ms at 100,000 runs). Without any, it guesses,
    and e.g. scans every run of an experiment to test a filter that 2% of them pass, where
    looking those 2% up by id costs half as much. Only the named tables: statistics taken
    of another projection's tables while they were empty (FTS5's shadow tables) slowed its
    inserts 50-fold. PostgreSQL's autovacuum does this itself."""
    if is_postgres(conn):
        return
    await conn.exec_driver_sql("PRAGMA analysis_limit=400")
    for table in tables:
        await conn.exec_driver_sql(f'ANALYZE "{table.name}"')


async def secondary_indexes(conn: AsyncConnection, tables: Sequence[Table]) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the non-unique indexes on these tables, as the database's
    catalog has them: those a migration made in raw SQL are not in any MetaData. Indexes
    behind primary keys and unique constraints are unique, so never among them."""
    names = [table.name for table in tables]
    if is_postgres(conn):
        rows = await conn.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = ANY(:names) AND indexdef NOT LIKE 'CREATE UNIQUE %' "
            "ORDER BY indexname"), {"names": names})
    else:
        marks = ", ".join("?" * len(names))
        rows = await conn.exec_driver_sql(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ({marks}) "
            "AND sql IS NOT NULL AND sql NOT LIKE 'CREATE UNIQUE %' ORDER BY name", tuple(names))
    return [(row[0], row[1]) for row in rows]


def in_keys(columns: Sequence[Any], keys: Sequence[Sequence[Any]]) -> ColumnElement[bool]:
    """`(c1, …, cn) IN keys`, in a form both databases find through an index on those
    columns: SQLite scans the whole table for a row-value IN list (search documents,
    metric points: quadratic as they grow). Keys are grouped by all but their last value,
    each group `c1 = … AND cn IN (…)`, the groups OR-ed (SQLite's multi-index OR)."""
    if len(columns) == 1:
        return columns[0].in_([key[0] for key in keys])
    groups: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for key in keys:
        groups[tuple(key[:-1])].append(key[-1])
    return or_(*(and_(*(c == v for c, v in zip(columns[:-1], head, strict=True)), columns[-1].in_(tails))
                 for head, tails in groups.items()))


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
    await conn.execute(upsert_statement(conn, table, keys, update), list(rows))


def per_dialect(build: Callable[[AsyncConnection], Any]) -> Callable[[AsyncConnection], Any]:
    """`build(conn)` made once per SQL dialect and then reused: `execute_rows` caches its
    compiled form by the statement's identity, so the statement must live on."""
    built: dict[str, Any] = {}

    def statement(conn: AsyncConnection) -> Any:
        stmt = built.get(conn.dialect.name)
        if stmt is None:
            stmt = built[conn.dialect.name] = build(conn)
        return stmt

    return statement


# (dialect, statement identity, columns) → (driver SQL, how to build its parameters from a
# row: None when the row already is them, else per parameter a column index or a constant)
_Shape = tuple[str, tuple[tuple[int, Any], ...] | None]
_COMPILED: dict[tuple[str, int, tuple[str, ...]], _Shape] = {}


def _driver_sql(conn: AsyncConnection, stmt: Any, columns: Sequence[str]) -> _Shape:
    key = (conn.dialect.name, id(stmt), tuple(columns))
    found = _COMPILED.get(key)
    if found is None:
        compiled = stmt.compile(dialect=conn.dialect, column_keys=list(columns))
        order = tuple(compiled.positiontup or ())
        missing = set(columns) - set(order)
        if missing:
            raise ValueError(f"statement does not bind {sorted(missing)}")
        # Parameters beyond the given columns are the other columns' Python-side defaults.
        params = tuple((list(columns).index(n), None) if n in columns else (-1, _default(stmt, n))
                       for n in order)
        found = _COMPILED[key] = (compiled.string, None if order == tuple(columns) else params)
    return found


def _default(stmt: Any, column: str) -> Any:
    default = stmt.table.c[column].default
    if default is None or not default.is_scalar:
        raise ValueError(f"no value for {column!r}, and it has no constant default")
    return default.arg


async def execute_rows(conn: AsyncConnection, stmt: Any, columns: Sequence[str],
                       rows: Sequence[tuple[Any, ...]]) -> None:
    """Execute an INSERT-like statement for many rows given as plain tuples (in `columns`
    order) through the driver's executemany: SQLAlchemy compiles it once per shape, and no
    per-row parameter dicts are built or processed (the hot path of a replay). Only for
    values the driver takes as they are (str, int, float, bool, None).

    `stmt` must be a long-lived object (a module constant or cached), as it is cached by
    identity."""
    if not rows:
        return
    sql, params = _driver_sql(conn, stmt, columns)
    if params is not None:
        rows = [tuple(row[i] if i >= 0 else const for i, const in params) for row in rows]
    await conn.exec_driver_sql(sql, rows)  # type: ignore[arg-type]


_UPSERTS: dict[tuple[str, str, tuple[str, ...], tuple[str, ...] | None], Any] = {}


def upsert_statement(conn: AsyncConnection, table: Table, keys: Sequence[str],
                     update: Sequence[str] | None) -> Any:
    """The (cached) INSERT … ON CONFLICT of `upsert`, for `execute_rows`."""
    cache_key = (conn.dialect.name, table.name, tuple(keys), tuple(update) if update else None)
    stmt = _UPSERTS.get(cache_key)
    if stmt is None:
        stmt = insert_for(conn, table)
        if update:
            stmt = stmt.on_conflict_do_update(
                index_elements=list(keys), set_={c: stmt.excluded[c] for c in update})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
        _UPSERTS[cache_key] = stmt
    return stmt


async def upsert_rows(conn: AsyncConnection, table: Table, columns: Sequence[str],
                      rows: Sequence[tuple[Any, ...]], keys: Sequence[str],
                      update: Sequence[str] | None = None) -> None:
    """`upsert` for rows given as tuples in `columns` order, through `execute_rows`."""
    await execute_rows(conn, upsert_statement(conn, table, keys, update), columns, rows)


_ROW_TYPES: dict[tuple[str, ...], type] = {}


def _row_type(names: tuple[str, ...]) -> type:
    found = _ROW_TYPES.get(names)
    if found is None:
        found = _ROW_TYPES[names] = namedtuple("Row", names, rename=True)  # type: ignore[misc]
    return found


async def fetch_rows(conn: AsyncConnection, stmt: Any) -> list[Any]:
    """The rows of a SELECT, read straight from the driver into named tuples (attribute
    access like SQLAlchemy's rows). The read-side twin of `execute_rows`: a page's child rows
    (thousands per query) skip the per-row result machinery, a third of the query's time.
    asyncpg returns Python values already; on SQLite, column types with a result processor
    (booleans) are still converted."""
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    values = compiled.construct_params()
    params = [values[name] for name in compiled.positiontup or ()]
    driver = (await conn.get_raw_connection()).driver_connection
    if is_postgres(conn):
        records: Sequence[Sequence[Any]] = await driver.fetch(compiled.string, *params)  # type: ignore[union-attr]
    else:
        cursor = await driver.execute(compiled.string, params)  # type: ignore[union-attr]
        records = await cursor.fetchall()
    columns = list(stmt.selected_columns)
    make = _row_type(tuple(c.key for c in columns))._make
    processors = [] if is_postgres(conn) else [c.type._cached_result_processor(conn.dialect, None)
                                                for c in columns]
    if not any(processors):
        return [make(r) for r in records]
    return [make([v if p is None else p(v) for p, v in zip(processors, r, strict=True)])
            for r in records]
