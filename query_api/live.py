"""Live run updates for dashboards: the GraphQL subscription `runUpdates(id)` (over a
websocket, graphql-transport-ws or graphql-ws).

It polls the read model (every `interval` seconds, 0.5 by default): the run's status, and
per metric key its point count in `latest_metrics`; only keys whose count moved are read,
from the last (step, timestamp) already sent. Plain reads of the projection, so it works
the same on SQLite and PostgreSQL, on any API replica, whichever process projects.

The first update carries the run's status and the points logged so far (at most
`MAX_POINTS` per key and update; the rest follow in the next ones). The stream completes
after the update that shows the run finished (FINISHED, FAILED or KILLED): the sql
projection applies a run's events in order, so by then every point logged before the end is
in it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import strawberry
from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.types import Info

from modeldb.projectors import read_model as rm

MAX_POINTS = 5000  # per key and update
TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED"})
MIN_INTERVAL, MAX_INTERVAL = 0.1, 60.0
WAIT_FOR_RUN = 30.0  # seconds a subscription waits for a run id that is not projected yet


@strawberry.type
class MetricPointUpdate:
    key: str
    step: int
    timestamp: float = strawberry.field(description="epoch milliseconds")
    value: float | None = strawberry.field(description="null for NaN and infinities")


@strawberry.type
class RunUpdate:
    run_id: strawberry.ID
    status: str
    end_time: datetime | None
    metrics: list[MetricPointUpdate] = strawberry.field(
        description="points logged since the previous update, by key, in step order")


@dataclass
class _Watermarks:
    """What a subscription has sent: the status, and per key the point count and the last
    (step, timestamp)."""

    status: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    last: dict[str, tuple[int, int]] = field(default_factory=dict)


async def _poll(engine: AsyncEngine, run_id: str, marks: _Watermarks,
                visible: frozenset[str] | None) -> tuple[Any, list[MetricPointUpdate], bool] | None:
    """The run row, the points new since `marks` (advancing them) and whether more are left
    for the next poll; None: no such run."""
    lm, mp = rm.latest_metrics, rm.metric_points
    async with engine.connect() as conn:
        run = (await conn.execute(select(rm.runs).where(rm.runs.c.id == run_id,
                                                        rm.runs.c.deleted.is_(False)))).first()
        if run is None or (visible is not None and run.project not in visible):
            return None
        counts = {r.key: r.count for r in await conn.execute(
            select(lm.c.key, lm.c.count).where(lm.c.run_id == run_id).order_by(lm.c.key))}
        points: list[MetricPointUpdate] = []
        behind = False
        for key, count in counts.items():
            if marks.counts.get(key) == count:
                continue
            query = select(mp.c.step, mp.c.timestamp, mp.c.value).where(
                mp.c.run_id == run_id, mp.c.key == key)
            if key in marks.last:
                query = query.where(tuple_(mp.c.step, mp.c.timestamp) > tuple_(*marks.last[key]))
            rows = list(await conn.execute(query.order_by(mp.c.step, mp.c.timestamp)
                                           .limit(MAX_POINTS)))
            if rows:
                marks.last[key] = (rows[-1].step, rows[-1].timestamp)
            if len(rows) < MAX_POINTS:
                marks.counts[key] = count
            else:  # the next poll reads on from the watermark
                behind = True
            points.extend(MetricPointUpdate(key=key, step=r.step, timestamp=r.timestamp,
                                            value=_finite(r.value)) for r in rows)
    return run, points, behind


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


async def run_updates(engine: AsyncEngine, run_id: str, interval: float = 0.5,
                      visible: frozenset[str] | None = None) -> AsyncGenerator[RunUpdate, None]:
    interval = min(max(interval, MIN_INTERVAL), MAX_INTERVAL)
    marks = _Watermarks()
    deadline = time.monotonic() + WAIT_FOR_RUN
    while True:
        polled = await _poll(engine, run_id, marks, visible)
        if polled is None:
            if marks.status is None and time.monotonic() < deadline:
                await asyncio.sleep(interval)  # a run just started may not be projected yet
                continue
            raise ValueError(f"no run {run_id!r}")
        run, points, behind = polled
        if points or run.status != marks.status:
            marks.status = run.status
            yield RunUpdate(run_id=strawberry.ID(run_id), status=run.status,
                            end_time=_time(run.end_time), metrics=points)
        if run.status in TERMINAL and not behind:
            return
        await asyncio.sleep(interval)


def _time(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Live updates of one run: new metric points and "
                             "status changes, polled every `interval` seconds; completes once "
                             "the run has finished.")
    async def run_updates(self, info: Info, id: strawberry.ID,
                          interval: float = 0.5) -> AsyncGenerator[RunUpdate, None]:
        queries = info.context["loaders"].queries
        async for update in run_updates(queries.engine, str(id), interval,
                                        getattr(queries, "visible", None)):
            yield update
