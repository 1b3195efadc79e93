"""The embedded event log: one SQLite file in WAL mode.

`events.position` is the global order; `event_id` is unique, so a retried batch is stored
once; triggers refuse UPDATE and DELETE, so the log only grows. Calls run in a worker
thread (sqlite3 releases the GIL while it does I/O); several processes may share the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from modeldb.event_schema import Aggregate, RecordedEvent
from modeldb.writer.log import (
    AggregateLog,
    Batch,
    Checkpoint,
    ConcurrencyConflict,
    EventLogUnavailable,
    Subscription,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT NOT NULL UNIQUE,
    type           TEXT NOT NULL,
    aggregate_kind TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    recorded_at    TEXT NOT NULL,
    body           BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_aggregate ON events (aggregate_id, position);
CREATE TRIGGER IF NOT EXISTS events_refuse_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS events_refuse_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only: DELETE refused'); END;
"""
_POLL_SECONDS = 0.05  # how often a subscriber looks for events written by other processes
# At most this many body bytes of the newest events are kept for the next reader (see
# _Recent): ~110,000 metric points, one full SDK batch (their decoded form takes ~10x the
# bytes). Usually far fewer are: an event goes once every subscriber here has read it.
RECENT_BYTES = 8 * 1024 * 1024
# One read decodes at most this many body bytes (a batch of 5,000 events of 1,000 points each
# decoded at once held ~1.4 GB of the server's memory).
MAX_READ_BYTES = 4 * 1024 * 1024  # ~55,000 metric points; six projections may each hold one


class SQLiteEventLog(AggregateLog):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{self.path}"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged batch survives power loss, not just a process crash.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(SCHEMA)
        self._appended: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._recent = _Recent(RECENT_BYTES)
        self._subscriptions: weakref.WeakSet[_SQLiteSubscription] = weakref.WeakSet()

    # -- appending --------------------------------------------------------------------------

    def append_sync(self, events: Sequence[Mapping[str, Any]]) -> list[int]:
        return self._append(events, None, 0)

    def append_if_sync(
        self, aggregate: Aggregate, expected_version: int, events: Sequence[Mapping[str, Any]]
    ) -> list[int]:
        """Append if the aggregate still has `expected_version` events: the count and the
        insert share one BEGIN IMMEDIATE transaction, so no other writer (thread or
        process) can slip an event in between."""
        for event in events:
            if (event["aggregate"]["kind"], event["aggregate"]["id"]) != aggregate:
                raise ValueError(f"append_if for {aggregate} got an event of {event['aggregate']}")
        return self._append(events, aggregate, expected_version)

    def _append(self, events: Sequence[Mapping[str, Any]], aggregate: Aggregate | None,
                expected_version: int) -> list[int]:
        try:
            return self._append_locked(events, aggregate, expected_version)
        except sqlite3.OperationalError as exc:  # locked past busy_timeout, disk full, …
            raise EventLogUnavailable(f"cannot append to {self.path}: {exc}") from exc

    def _append_locked(self, events: Sequence[Mapping[str, Any]], aggregate: Aggregate | None,
                       expected_version: int) -> list[int]:
        ids = [e["event_id"] for e in events]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if aggregate is not None:
                    actual = self._count(aggregate)
                    if actual != expected_version:
                        raise ConcurrencyConflict(aggregate, expected_version, actual)
                known = self._positions_of(ids)
                fresh: dict[str, Mapping[str, Any]] = {}
                for event in events:
                    if event["event_id"] not in known:
                        fresh.setdefault(event["event_id"], event)
                first = self._next_position()
                self._db.executemany(
                    "INSERT INTO events (event_id, type, aggregate_kind, aggregate_id,"
                    " recorded_at, body) VALUES (?, ?, ?, ?, ?, ?)",
                    [_row(e) for e in fresh.values()],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        # Under BEGIN IMMEDIATE nobody else writes, so the new rows took consecutive positions.
        known.update({eid: first + i for i, eid in enumerate(fresh)})
        self._notify()
        return [known[eid] for eid in ids]

    def _count(self, aggregate: Aggregate) -> int:
        return self._db.execute(
            "SELECT count(*) FROM events WHERE aggregate_id = ? AND aggregate_kind = ?",
            (aggregate.id, aggregate.kind),
        ).fetchone()[0]

    async def append_if(
        self, aggregate: Aggregate, expected_version: int, events: Sequence[Mapping[str, Any]]
    ) -> list[int]:
        return await asyncio.to_thread(self.append_if_sync, aggregate, expected_version, events)

    def _positions_of(self, ids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                self._db.execute(
                    f"SELECT event_id, position FROM events WHERE event_id IN ({marks})", chunk
                ).fetchall()
            )
        return found

    def _next_position(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return (row[0] if row else 0) + 1

    async def append(self, events: Sequence[Mapping[str, Any]]) -> list[int]:
        return await asyncio.to_thread(self.append_sync, events)

    def _notify(self) -> None:
        for loop, event in list(self._appended):
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    # -- reading ----------------------------------------------------------------------------

    def read_sync(self, after: int = 0, limit: int = 10_000) -> list[RecordedEvent]:
        """Events after `after`, in order: at most `limit`, and at most MAX_READ_BYTES of bodies
        (at least one event), so read until empty for everything. Every projection of this
        process reads the same new events soon after one another: the newest are kept (with
        their decoded form, once someone decoded them), so each is parsed and validated once,
        not once per projection."""
        with self._lock:
            events, size = self._recent.run(after, limit, MAX_READ_BYTES)
            if len(events) < limit and size < MAX_READ_BYTES:
                last = events[-1].position if events else after
                rows = _within(self._db.execute(
                    "SELECT position, body FROM events WHERE position > ? ORDER BY position LIMIT ?",
                    (last, limit - len(events)),
                ).fetchall(), MAX_READ_BYTES - size)
                if rows:
                    kept = self._recent.events
                    fresh = [kept[p][0] if p in kept else RecordedEvent(position=p, raw=orjson.loads(b))
                             for p, b in rows]
                    self._recent.add(fresh, [len(b) for _, b in rows])
                    events += fresh
            if events:
                self._recent.drop_read(self._read_by_all(events[-1].position))
        return events

    def _read_by_all(self, reader_at: int) -> int:
        """The position every subscriber of this process has read up to (the caller of a
        read, or a reader without subscription, counts as at `reader_at`)."""
        return min([s._position for s in list(self._subscriptions)] + [reader_at])

    def read_aggregate_sync(self, aggregate: Aggregate) -> list[RecordedEvent]:
        with self._lock:
            rows = self._db.execute(
                "SELECT position, body FROM events WHERE aggregate_id = ? AND aggregate_kind = ?"
                " ORDER BY position",
                (aggregate.id, aggregate.kind),
            ).fetchall()
        return [RecordedEvent(position=p, raw=orjson.loads(b)) for p, b in rows]

    async def read_aggregate(self, aggregate: Aggregate) -> list[RecordedEvent]:
        return await asyncio.to_thread(self.read_aggregate_sync, aggregate)

    def head_sync(self) -> int:
        with self._lock:
            return self._db.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]

    async def read(self, after: int = 0, limit: int = 10_000) -> list[RecordedEvent]:
        return await asyncio.to_thread(self.read_sync, after, limit)

    async def head(self) -> Checkpoint:
        return {"position": await asyncio.to_thread(self.head_sync)}

    def subscribe(self, group: str, checkpoint: Checkpoint | None) -> Subscription:
        subscription = _SQLiteSubscription(self, (checkpoint or {}).get("position", 0))
        self._subscriptions.add(subscription)
        return subscription

    def _waiter(self) -> asyncio.Event:
        event = asyncio.Event()
        self._appended.append((asyncio.get_running_loop(), event))
        return event

    async def close(self) -> None:
        with self._lock:
            self._db.close()


class _SQLiteSubscription(Subscription):
    """The consumer keeps its position in its own store; the log needs no group state."""

    def __init__(self, log: SQLiteEventLog, position: int):
        self._log = log
        self._position = position
        self._wake: asyncio.Event | None = None

    async def next_batch(self, max_events: int, max_wait: float) -> Batch:
        if self._wake is None:
            self._wake = self._log._waiter()
        deadline = asyncio.get_running_loop().time() + max_wait
        while True:
            self._wake.clear()
            events = await self._log.read(self._position, max_events)
            remaining = deadline - asyncio.get_running_loop().time()
            if events or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(_POLL_SECONDS, remaining))
        after = self._position
        if events:
            self._position = events[-1].position
        return Batch(events, {"position": self._position}, after={"position": after})

    async def commit(self, batch: Batch) -> None:
        return None  # the checkpoint lives in the consumer's transaction

    async def caught_up(self) -> bool:
        return self._position >= await asyncio.to_thread(self._log.head_sync)

    async def close(self) -> None:
        self._log._subscriptions.discard(self)
        if self._wake is not None:
            self._log._appended = [w for w in self._log._appended if w[1] is not self._wake]


class _Recent:
    """The newest events read, by position, up to `budget` body bytes; the oldest go first.

    Shared RecordedEvents are safe: they, their raw form and their decoded Event are never
    changed after creation (a projection that reveals sealed values builds new ones).
    Only events past the newest kept are added, so the dict stays in position order."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        # Ordered: the oldest is taken from the front in O(1) (a plain dict's first key, after
        # many deletions from its front, is found by scanning past their empty slots).
        self.events: OrderedDict[int, tuple[RecordedEvent, int]] = OrderedDict()
        self.size = 0
        self.newest = 0

    def run(self, after: int, limit: int, max_bytes: int) -> tuple[list[RecordedEvent], int]:
        """The kept events at after+1, after+2, … up to the first position not kept (or the
        limits), and their body bytes."""
        found: list[RecordedEvent] = []
        get, position, size = self.events.get, after + 1, 0
        while len(found) < limit and size < max_bytes:
            kept = get(position)
            if kept is None:
                break
            found.append(kept[0])
            size += kept[1]
            position += 1
        return found, size

    def add(self, events: list[RecordedEvent], sizes: list[int]) -> None:
        for event, size in zip(events, sizes, strict=True):
            if event.position <= self.newest or size > self.budget:
                continue
            self.events[event.position] = (event, size)
            self.newest = event.position
            self.size += size
        while self.size > self.budget:
            self.size -= self.events.popitem(last=False)[1][1]

    def drop_read(self, floor: int) -> None:
        """Forget the events at or before `floor`: every reader is past them."""
        events = self.events
        while events:
            oldest = next(iter(events))
            if oldest > floor:
                break
            self.size -= events.popitem(last=False)[1][1]


def _within(rows: list[tuple[int, bytes]], budget: int) -> list[tuple[int, bytes]]:
    """The leading rows whose bodies fit `budget` bytes (at least one, so a reader always
    moves): a batch of large events is decoded in parts, not all at once."""
    for i, (_, body) in enumerate(rows):
        budget -= len(body)
        if budget < 0:
            return rows[: max(i, 1)]
    return rows


def _row(event: Mapping[str, Any]) -> tuple[Any, ...]:
    aggregate = event["aggregate"]
    return (
        event["event_id"],
        event["type"],
        aggregate["kind"],
        aggregate["id"],
        event["recorded_at"],
        orjson.dumps(event),
    )
