"""What a projection is, and the SQL-backed base that gives each batch one transaction
holding its changes, its dedupe marks and its checkpoint."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modeldb.event_schema import RecordedEvent
from modeldb.event_schema.types import event_type
from modeldb.projectors.db import insert_for, secondary_indexes, upsert, upsert_rows
from modeldb.writer.log import Batch, Checkpoint

state_metadata = MetaData()
# One row per (projection, partition): consumers of different partitions of one projection
# (scaled-out projector processes) each advance only their own rows.
projection_state = Table(
    "projection_state",
    state_metadata,
    Column("name", String(50), primary_key=True),
    Column("part", String(20), primary_key=True),  # "position" on SQLite, the partition on Kafka
    Column("position", BigInteger, nullable=False),
)
applied_events = Table(
    "applied_events",
    state_metadata,
    Column("projection", String(50), primary_key=True),
    Column("event_id", String(36), primary_key=True),
)

# The secondary indexes a rebuild in progress has dropped, to build again once it has caught
# up (or at the next setup, if it stopped before that).
deferred_indexes = Table(
    "deferred_indexes",
    state_metadata,
    Column("projection", String(50), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("ddl", Text, nullable=False),
)

_APPLIED_COLUMNS = ("projection", "event_id")


class CheckpointMoved(Exception):
    """A batch's transaction found the projection's stored checkpoint elsewhere than where
    the batch starts (another process applied that part of the log); nothing was applied.
    The runtime reloads the checkpoint and reads on from there."""


class Projection(ABC):
    """A consumer of the log that maintains one read model."""

    name: str
    # False: sensitive values arrive decrypted, or as redaction markers (writer/vault.py).
    # True: exactly as the log holds them (the audit store hashes that form).
    reads_sealed: bool = False

    @abstractmethod
    async def setup(self) -> None:
        """Create what the projection needs (idempotent)."""

    @abstractmethod
    async def load_checkpoint(self) -> Checkpoint | None: ...

    @abstractmethod
    async def apply(self, batch: Batch) -> None:
        """Apply a batch and store its checkpoint atomically; skip already-applied events."""

    @abstractmethod
    async def reset(self) -> None:
        """Empty the projection and forget its checkpoint, ready to rebuild from zero."""

    @abstractmethod
    async def digest(self) -> str:
        """A hash of the projection's content, equal for equal content however it was built."""

    async def prepare_rebuild(self) -> None:
        """Called after `reset`, before a rebuild from zero reads the log."""
        return None

    async def finish_rebuild(self) -> None:
        """Called once a rebuild has read the log to its end (or stopped early)."""
        return None

    async def close(self) -> None:
        return None


class SqlProjection(Projection):
    """Base for projections stored in the read database through SQLAlchemy."""

    metadata: MetaData
    # Skip events whose event_id this projection has applied before, in batches without
    # `after` (Kafka's: a retried append may store an event twice).
    dedupe = True
    # True for a projection whose batches read its tables by primary key only: a rebuild
    # then fills them without their secondary indexes and builds each index once at the
    # end, as bulk loads do. Row by row, a batch's inserts land on pages all over each
    # random-keyed index, so every batch rewrote (and synced) most of every index.
    rebuilds_without_indexes = False

    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def setup(self) -> None:
        from modeldb.projectors.migrations import ensure_schema

        await ensure_schema(self.engine)
        await self._restore_indexes()  # a rebuild that stopped early left them dropped

    async def prepare_rebuild(self) -> None:
        if not self.rebuilds_without_indexes:
            return
        async with self.engine.begin() as conn:
            for name, drop, restore in await self.deferred_in_rebuild(conn):
                await conn.execute(insert(deferred_indexes).values(
                    projection=self.name, name=name, ddl=restore))
                await conn.exec_driver_sql(drop)

    async def deferred_in_rebuild(self, conn: AsyncConnection) -> list[tuple[str, str, str]]:
        """(name, drop statement, restore statement) of each structure a rebuild goes without
        and builds once at its end: the secondary indexes of the projection's tables, read
        from the database's catalog (those a migration made in raw SQL are in no MetaData)."""
        return [(name, f'DROP INDEX "{name}"', ddl)
                for name, ddl in await secondary_indexes(conn, self.metadata.sorted_tables)]

    async def finish_rebuild(self) -> None:
        await self._restore_indexes()

    async def _restore_indexes(self) -> None:
        # setup() runs before every catch-up (an embedded client's settle after each
        # command): a read decides, and only a stopped rebuild's leftovers cost a write.
        if not self.rebuilds_without_indexes:
            return
        mine = deferred_indexes.c.projection == self.name
        async with self.engine.connect() as conn:
            ddls = (await conn.execute(select(deferred_indexes.c.ddl).where(mine))).scalars().all()
        if not ddls:
            return
        async with self.engine.begin() as conn:
            for ddl in ddls:
                await conn.exec_driver_sql(ddl)
            await conn.execute(delete(deferred_indexes).where(mine))

    async def load_checkpoint(self) -> Checkpoint | None:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(projection_state.c.part, projection_state.c.position)
                .where(projection_state.c.name == self.name)
            )
            checkpoint = {part: position for part, position in rows}
        return checkpoint or None

    async def apply(self, batch: Batch) -> None:
        async with self.engine.begin() as conn:
            if batch.after is not None:  # each event once in the log: a batch applies once
                await self._move_checkpoint(conn, batch.after, batch.checkpoint)
                events = batch.events
            else:
                events = await self._unseen(conn, batch.events) if self.dedupe else batch.events
                await upsert(
                    conn,
                    projection_state,
                    [{"name": self.name, "part": part, "position": position}
                     for part, position in batch.checkpoint.items()],
                    ["name", "part"],
                    ["position"],
                )
            if events:
                await self.apply_events(conn, events)

    async def _move_checkpoint(self, conn: AsyncConnection, after: Checkpoint,
                               checkpoint: Checkpoint) -> None:
        """Move the stored checkpoint from `after` to `checkpoint`, first thing in the batch's
        transaction (so it takes the write lock, and sees every commit before it), or raise
        CheckpointMoved if another process applied part of the log meanwhile: two catch-ups
        of one embedded home must not both apply a batch."""
        state = projection_state.c
        for part, position in checkpoint.items():
            expected = after.get(part, 0)
            moved = await conn.execute(
                update(projection_state)
                .where(state.name == self.name, state.part == part, state.position == expected)
                .values(position=position))
            if moved.rowcount == 1:
                continue
            if expected == 0:  # a first batch: no row yet, unless someone else stored one
                added = await conn.execute(
                    insert_for(conn, projection_state)
                    .values(name=self.name, part=part, position=position)
                    .on_conflict_do_nothing(index_elements=["name", "part"]))
                if added.rowcount == 1:
                    continue
            raise CheckpointMoved(f"projection {self.name} is no longer at {after}: "
                                  "another process applied the log meanwhile")

    async def _unseen(self, conn: AsyncConnection, events: list[RecordedEvent]) -> list[RecordedEvent]:
        ids = [e.raw["event_id"] for e in events]
        seen: set[str] = set()
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            rows = await conn.execute(
                select(applied_events.c.event_id).where(
                    applied_events.c.projection == self.name, applied_events.c.event_id.in_(chunk)
                )
            )
            seen.update(r[0] for r in rows)
        fresh: list[RecordedEvent] = []
        for event in events:
            event_id = event.raw["event_id"]
            if event_id not in seen:
                seen.add(event_id)  # a duplicate inside one batch counts too
                fresh.append(event)
        name = self.name
        await upsert_rows(conn, applied_events, _APPLIED_COLUMNS,
                          [(name, e.raw["event_id"]) for e in fresh], _APPLIED_COLUMNS)
        return fresh

    @abstractmethod
    async def apply_events(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None: ...

    async def reset(self) -> None:
        async with self.engine.begin() as conn:
            for table in reversed(self.metadata.sorted_tables):
                await conn.execute(delete(table))
            await conn.execute(delete(applied_events).where(applied_events.c.projection == self.name))
            await conn.execute(delete(projection_state).where(projection_state.c.name == self.name))

    async def digest(self) -> str:
        """Hash every row of every table, in primary-key order (ignoring surrogate keys)."""
        hasher = hashlib.sha256()
        async with self.engine.connect() as conn:
            for table in self.metadata.sorted_tables:
                columns = [c for c in table.columns if c.name not in self.digest_ignores]
                order = [c for c in columns if c.primary_key] or columns
                rows = await conn.execute(select(*columns).order_by(*order))
                hasher.update(table.name.encode())
                for row in rows:
                    hasher.update(orjson.dumps([_plain(v) for v in row]))
        return hasher.hexdigest()

    digest_ignores: frozenset[str] = frozenset()


_METRICS_VERSION = event_type("MetricsLogged").version


def metric_points(recorded: RecordedEvent) -> Iterator[tuple[str, float, int, int]]:
    """A MetricsLogged event's points as (key, value, step, timestamp). Today's version is
    read from its stored form: the log holds what the writer validated and dumped, so decoding
    it again (a pydantic object per point, most of a replay's time) would rebuild the same
    values. Non-finite values are stored by name ("NaN", "Infinity"), which float() reads."""
    raw = recorded.raw
    if raw.get("schema_version") != _METRICS_VERSION or recorded._event:
        for p in recorded.event.payload.points:  # type: ignore[attr-defined]
            yield p.key, p.value, p.step, p.timestamp
        return
    for point in raw["payload"]["points"]:
        value = point["value"]
        yield (point["key"], value if type(value) is float else float(value), point.get("step", 0),
               point["timestamp"])


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | None) else str(value)
