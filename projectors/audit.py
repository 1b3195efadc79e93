"""The audit projection: every log record verbatim, indexed by aggregate, time and actor,
each carrying a sha256 chained to the record before it in the same partition, so any
edit, gap or reordering is detectable by `verify`."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from modeldb.event_schema import RecordedEvent, canonical_bytes
from modeldb.projectors.base import SqlProjection
from modeldb.projectors.db import execute_rows

if TYPE_CHECKING:
    from modeldb.writer.vault import Vault

GENESIS = "0" * 64

metadata = MetaData()
audit_events = Table(
    "audit_events",
    metadata,
    Column("partition", Integer, primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("type", String(60), nullable=False),
    Column("aggregate_kind", String(20), nullable=False),
    Column("aggregate_id", String(700), nullable=False),
    Column("occurred_at", String(40), nullable=False),
    Column("recorded_at", String(40), nullable=False),
    Column("actor", String(250)),
    Column("source", String(100), nullable=False),
    Column("duplicate", Boolean, nullable=False),  # same event_id seen at an earlier position
    Column("body", Text, nullable=False),  # canonical JSON of the stored event
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("audit_by_aggregate", "aggregate_id", "recorded_at"),
    Index("audit_by_event_id", "event_id"),
    Index("audit_by_recorded_at", "recorded_at"),
    Index("audit_by_actor", "actor", "recorded_at"),
)


def chain_hash(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + body).hexdigest()


_COLUMNS = ("partition", "position", "event_id", "type", "aggregate_kind", "aggregate_id",
            "occurred_at", "recorded_at", "actor", "source", "duplicate", "body", "prev_hash",
            "hash")
_INSERT = audit_events.insert()


class AuditStore(SqlProjection):
    name = "audit"
    metadata = metadata
    dedupe = False  # the audit trail mirrors the log record for record, duplicates included
    reads_sealed = True
    vault: Vault | None = None

    async def apply_events(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        heads: dict[int, tuple[str, int]] = {}  # partition → (last hash, last position)
        ids = list({e.raw["event_id"] for e in events})
        seen = {row[0] for row in await conn.execute(
            select(audit_events.c.event_id).where(audit_events.c.event_id.in_(ids)))}
        rows = []
        for recorded in events:
            raw, part = recorded.raw, recorded.partition
            if part not in heads:
                heads[part] = await _head(conn, part)
            prev_hash, last_position = heads[part]
            if recorded.position <= last_position:
                continue  # redelivered after a consumer rebalance: already in the chain
            body = canonical_bytes(raw)
            digest = chain_hash(prev_hash, body)
            rows.append((
                part, recorded.position, raw["event_id"], raw["type"], raw["aggregate"]["kind"],
                raw["aggregate"]["id"], raw["occurred_at"], raw["recorded_at"], raw.get("actor"),
                raw.get("source", "sdk"), raw["event_id"] in seen, body.decode(), prev_hash,
                digest,
            ))
            seen.add(raw["event_id"])
            heads[part] = (digest, recorded.position)
        await execute_rows(conn, _INSERT, _COLUMNS, rows)

    async def history(
        self,
        aggregate_id: str,
        *,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        kind: str | None = None,
    ) -> list[dict]:
        """Every event of one entity, in log order, as stored (duplicates left out); `kind`
        narrows it to one aggregate kind (a model and a project may share a name)."""
        query = (
            select(audit_events.c.body)
            .where(audit_events.c.aggregate_id == aggregate_id, audit_events.c.duplicate.is_(False))
            .order_by(audit_events.c.recorded_at, audit_events.c.partition, audit_events.c.position)
        )
        if kind:
            query = query.where(audit_events.c.aggregate_kind == kind)
        if actor:
            query = query.where(audit_events.c.actor == actor)
        if since:
            query = query.where(audit_events.c.recorded_at >= since.isoformat())
        if until:
            query = query.where(audit_events.c.recorded_at <= until.isoformat())
        async with self.engine.connect() as conn:
            return [orjson.loads(body) for (body,) in await conn.execute(query)]

    async def readable_history(self, aggregate_id: str, **narrow: Any) -> list[dict]:
        """`history` as readers get it: sensitive values decrypted, or redaction markers
        where their keys are destroyed (`vault`, set by whoever assembles the system)."""
        events = await self.history(aggregate_id, **narrow)
        return [dict(e) for e in await self.vault.reveal(events)] if self.vault else events

    async def verify(
        self, log_records: AsyncIterator[RecordedEvent] | None = None, *, dense: bool = True
    ) -> Verdict:
        """Recompute the chain; with the log's records, also check none is missing or edited.

        `dense`: the log numbers its records 1, 2, 3 … without holes (SQLite). Kafka offsets
        skip transaction markers, so there only the log itself says what is missing."""
        expected = _LogCursor(log_records) if log_records is not None else None
        heads: dict[int, str] = {}
        last_pos: dict[int, int] = {}
        checked = 0
        async with self.engine.connect() as conn:
            result = await conn.stream(
                select(audit_events.c.partition, audit_events.c.position, audit_events.c.body,
                       audit_events.c.prev_hash, audit_events.c.hash)
                .order_by(audit_events.c.partition, audit_events.c.position)
            )
            async for part, position, body, prev_hash, stored_hash in result:
                log_record = await expected.next() if expected is not None else None
                if expected is not None and log_record is None:
                    return Verdict(False, checked, part, position, "record not in the log")
                gap = _gap(part, position, last_pos, log_record, dense=dense)
                if gap is not None:
                    return Verdict(False, checked, part, gap[0], gap[1])
                if prev_hash != heads.get(part, GENESIS):
                    return Verdict(False, checked, part, position, "chain broken: a record before "
                                   "this one was removed, reordered or altered")
                if chain_hash(prev_hash, body.encode()) != stored_hash:
                    return Verdict(False, checked, part, position, "hash mismatch: record altered")
                if log_record is not None and canonical_bytes(log_record.raw).decode() != body:
                    return Verdict(False, checked, part, position, "record differs from the log")
                heads[part], last_pos[part] = stored_hash, position
                checked += 1
        if expected is not None:
            missing = await expected.remaining()
            if missing is not None:
                return Verdict(False, checked, missing.partition, missing.position,
                               "log record not in the audit store (not yet projected or removed)")
        return Verdict(True, checked)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    partition: int | None = None
    position: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.checked} records, hash chain intact"
        if self.position is None:
            return f"FAILED: {self.reason}"
        return (f"FAILED at partition {self.partition} position {self.position}: {self.reason} "
                f"({self.checked} records verified before it)")


class _LogCursor:
    """Walks the log beside the audit store (single-partition logs; SQLite)."""

    def __init__(self, records: AsyncIterator[RecordedEvent]):
        self._records = records

    async def next(self) -> RecordedEvent | None:
        try:
            return await anext(self._records)
        except StopAsyncIteration:
            return None

    async def remaining(self) -> RecordedEvent | None:
        return await self.next()


def _gap(part: int, position: int, last: dict[int, int], log_record: RecordedEvent | None,
         *, dense: bool) -> tuple[int, str] | None:
    """The first missing position at or before this audit record, and what is missing.

    `dense`: positions run 1, 2, 3 … with no hole (the SQLite log), so a hole in both the
    log and the audit store is a removed record too. Kafka offsets skip a transaction's
    commit marker: there a hole is normal, and only the log's own records say what is missing.
    """
    if log_record is not None and log_record.position != position:
        if log_record.position > position:
            return position, "record not in the log (removed from the log?)"
        return log_record.position, "record missing from the audit store"
    if dense and part in last and position != last[part] + 1:
        return last[part] + 1, "record missing"
    if dense and log_record is not None and part not in last and position != 1:
        return 1, "record missing"
    return None


async def heads(store: AuditStore) -> dict[int, tuple[int, str]]:
    """Per partition, the last audit record's position and chained hash."""
    found: dict[int, tuple[int, str]] = {}
    async with store.engine.connect() as conn:
        parts = [row[0] for row in await conn.execute(select(audit_events.c.partition).distinct())]
        for part in parts:
            row = (await conn.execute(
                select(audit_events.c.position, audit_events.c.hash)
                .where(audit_events.c.partition == part)
                .order_by(audit_events.c.position.desc()).limit(1))).first()
            if row is not None:
                found[part] = (row[0], row[1])
    return found


async def hash_at(store: AuditStore, partition: int, position: int) -> str | None:
    async with store.engine.connect() as conn:
        return await conn.scalar(select(audit_events.c.hash).where(
            audit_events.c.partition == partition, audit_events.c.position == position))


async def _head(conn: AsyncConnection, partition: int) -> tuple[str, int]:
    row = (await conn.execute(
        select(audit_events.c.hash, audit_events.c.position)
        .where(audit_events.c.partition == partition)
        .order_by(audit_events.c.position.desc())
        .limit(1)
    )).first()
    return (row[0], row[1]) if row else (GENESIS, -1)
