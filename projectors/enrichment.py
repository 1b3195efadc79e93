"""Enrichment: pluggable projections that derive run attributes from events.

An `Enricher` reads the event types it `handles` and sets attributes on runs through an
`EnrichmentSession` (`anomaly = 'diverged'`, `framework = 'sklearn'` …), keeping whatever
it must remember between batches as a small JSON state per run. Each enricher runs as its
own projection (`enrich-<name>`) with its own checkpoint, so adding one replays the log
for it alone, and a failing one holds up nobody else.

Derived attributes live in `derived_attributes`, apart from the attributes training code
sets (`AttributesSet`, in the sql projection's `attributes`); queries see both:
`runs(filter: "attributes.anomaly = 'diverged'")`, `ExperimentRun.attributes`.

Enrichers are found through the entry-point group `modeldb.enrichers`; a package adds one
with, in its pyproject.toml,

    [project.entry-points."modeldb.enrichers"]
    my_enricher = "my_package.module:MyEnricher"   # a class (or factory) taking no arguments
"""

from __future__ import annotations

import hashlib
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any, ClassVar

import orjson
from sqlalchemy import Column, Float, Index, MetaData, String, Table, Text, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from modeldb.event_schema import Event, RecordedEvent
from modeldb.projectors.base import SqlProjection, applied_events, projection_state
from modeldb.projectors.db import in_keys, upsert_rows
from modeldb.projectors.read_model import ID, KEY, PREFIX

log = logging.getLogger("modeldb.projectors.enrichment")

ENTRY_POINT_GROUP = "modeldb.enrichers"
PROJECTION_PREFIX = "enrich-"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")

metadata = MetaData()
derived_attributes = Table(
    "derived_attributes",
    metadata,
    Column("enricher", String(40), primary_key=True),
    Column("run_id", ID, primary_key=True),
    Column("key", KEY, primary_key=True),
    Column("value", Text, nullable=False),
    Column("value_num", Float),
    Index("derived_attributes_by_run", "run_id"),
)
Index("derived_attributes_by_key_value", derived_attributes.c.key,
      func.substr(derived_attributes.c.value, 1, PREFIX))
enrichment_state = Table(
    "enrichment_state",
    metadata,
    Column("enricher", String(40), primary_key=True),
    Column("run_id", ID, primary_key=True),
    Column("state", Text, nullable=False),  # JSON
)


async def create_tables(conn: AsyncConnection) -> None:
    """Migration 3's half for enrichment."""
    await conn.run_sync(lambda sync: metadata.create_all(sync, checkfirst=True))


class EnrichmentSession:
    """What an enricher may do within one batch (one transaction): read and keep its own
    per-run state, set and delete derived attributes of runs."""

    def __init__(self, conn: AsyncConnection, enricher: str):
        self.conn = conn
        self.enricher = enricher
        self._attributes: dict[tuple[str, str], str | None] = {}  # None: delete
        self._states: dict[str, dict[str, Any]] = {}

    def set_attribute(self, run_id: str, key: str, value: str | float | int) -> None:
        self._attributes[(run_id, key)] = str(value)

    def delete_attribute(self, run_id: str, key: str) -> None:
        self._attributes[(run_id, key)] = None

    async def states(self, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored state of each run (an empty dict for a run not seen before); the dicts
        are this batch's working copies, saved with `put_state`."""
        runs = list(dict.fromkeys(run_ids))
        wanted = [r for r in runs if r not in self._states]
        t = enrichment_state
        for start in range(0, len(wanted), 500):
            rows = await self.conn.execute(select(t.c.run_id, t.c.state).where(
                t.c.enricher == self.enricher, t.c.run_id.in_(wanted[start : start + 500])))
            self._states.update({r.run_id: orjson.loads(r.state) for r in rows})
        return {r: self._states.setdefault(r, {}) for r in runs}

    def put_state(self, run_id: str, state: dict[str, Any]) -> None:
        self._states[run_id] = state

    async def flush(self) -> None:
        from modeldb.projectors.sql_projection import as_number

        gone = [k for k, v in self._attributes.items() if v is None]
        t = derived_attributes
        for start in range(0, len(gone), 500):
            await self.conn.execute(delete(t).where(
                t.c.enricher == self.enricher,
                in_keys((t.c.run_id, t.c.key), gone[start : start + 500])))
        name = self.enricher
        await upsert_rows(self.conn, t, ("enricher", "run_id", "key", "value", "value_num"), [
            (name, run, key, value, as_number(value))
            for (run, key), value in self._attributes.items() if value is not None],
            ("enricher", "run_id", "key"), ("value", "value_num"))
        await upsert_rows(self.conn, enrichment_state, ("enricher", "run_id", "state"), [
            (name, run, orjson.dumps(state, option=orjson.OPT_SORT_KEYS).decode())
            for run, state in self._states.items() if state],
            ("enricher", "run_id"), ("state",))


class Enricher(ABC):
    """Derives run attributes from events. Subclasses set `name` (lowercase, a-z0-9_, at
    most 40 characters: the projection is `enrich-<name>`) and `event_types`.

    `apply` must be deterministic given the events and the stored state, so that rebuilding
    from the log gives the same attributes as building incrementally."""

    name: ClassVar[str]
    event_types: ClassVar[frozenset[str]]

    def handles(self, event_type: str) -> bool:
        return event_type in self.event_types

    @abstractmethod
    async def apply(self, events: list[Event], session: EnrichmentSession) -> None:
        """Apply the handled events of one batch, in log order."""

    async def apply_recorded(self, events: list[RecordedEvent], session: EnrichmentSession) -> None:
        """What the projection calls: `apply` on the decoded events. An enricher may read
        the stored form instead, where decoding would be most of its cost."""
        await self.apply([r.event for r in events], session)


class EnrichmentProjection(SqlProjection):
    """Runs one enricher as a projection with its own checkpoint."""

    metadata = metadata

    def __init__(self, engine: Any, enricher: Enricher):
        super().__init__(engine)
        self.enricher = enricher
        self.name = PROJECTION_PREFIX + enricher.name

    async def _unseen(self, conn: AsyncConnection, events: list[RecordedEvent]) -> list[RecordedEvent]:
        # Dedupe marks only for the events this enricher reads.
        return await super()._unseen(conn, [e for e in events
                                            if self.enricher.handles(e.raw["type"])])

    async def apply_events(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        handled = [r for r in events if self.enricher.handles(r.raw["type"])]
        if not handled:
            return
        session = EnrichmentSession(conn, self.enricher.name)
        await self.enricher.apply_recorded(handled, session)
        await session.flush()

    async def reset(self) -> None:
        # The tables are shared by every enricher: empty only this one's rows.
        async with self.engine.begin() as conn:
            for table in (derived_attributes, enrichment_state):
                await conn.execute(delete(table).where(table.c.enricher == self.enricher.name))
            await conn.execute(delete(applied_events).where(applied_events.c.projection == self.name))
            await conn.execute(delete(projection_state).where(projection_state.c.name == self.name))

    async def digest(self) -> str:
        hasher = hashlib.sha256()
        async with self.engine.connect() as conn:
            for table in (derived_attributes, enrichment_state):
                keys = [c for c in table.columns if c.primary_key]
                rows = await conn.execute(select(table).where(
                    table.c.enricher == self.enricher.name).order_by(*keys))
                hasher.update(table.name.encode())
                for row in rows:
                    hasher.update(orjson.dumps([v if isinstance(v, str | int | float | None)
                                                else str(v) for v in row]))
        return hasher.hexdigest()


def _builtin() -> list[Enricher]:
    from modeldb.projectors.enrichers import MetricAnomalies, ModelFramework

    return [MetricAnomalies(), ModelFramework()]


def discover_enrichers() -> list[Enricher]:
    """The enrichers registered under the `modeldb.enrichers` entry points, plus the built-in
    ones when the installed metadata predates them (an editable install not re-run). One
    that fails to load is logged and left out: a broken plug-in must not stop the server."""
    found: dict[str, Enricher] = {}
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        try:
            enricher = point.load()()
            _check(enricher, point.value, found)
        except Exception:
            log.exception("enricher entry point %r failed to load; skipped", point.value)
            continue
        found[enricher.name] = enricher
    for enricher in _builtin():
        found.setdefault(enricher.name, enricher)
    return list(found.values())


def _check(enricher: Any, origin: str, found: dict[str, Enricher]) -> None:
    if not isinstance(enricher, Enricher):
        raise TypeError(f"{origin} is not a modeldb.projectors.enrichment.Enricher")
    if not _NAME.fullmatch(getattr(enricher, "name", "")):
        raise ValueError(f"{origin}: enricher name {enricher.name!r} must match {_NAME.pattern}")
    if enricher.name in found:
        raise ValueError(f"two enrichers are named {enricher.name!r} ({origin})")
