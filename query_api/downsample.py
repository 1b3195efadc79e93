"""Downsampled metric histories: at most `max_points` points that keep the shape of the
series — its first and last point, and the smallest and largest finite value of each of
up to (max_points - 2) / 2 buckets of equal step ranges (min/max bucketing, as plotting
libraries do for long series); a series logged all at one step is bucketed by timestamp.

The database does the bucketing. A series longer than the answer is read from the metric
rollups (`modeldb.projectors.metric_rollups`) at the widest width that still gives every
bucket whole rollup blocks, so a million-point series costs a few thousand rollup rows;
a short series, or one whose rollups are incomplete (logged before they existed), is
bucketed over its points. Non-finite values (NaN, ±inf) are never a bucket's extreme; the
first and last points are kept whatever their value (null in GraphQL when not finite).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modeldb.projectors import read_model as rm
from modeldb.projectors.metric_rollups import FLOAT_MAX, WIDTHS

MIN_POINTS = 2


class DownsampleError(ValueError):
    pass


@dataclass(frozen=True)
class Point:
    step: int
    timestamp: int
    value: float | None


# The extreme of each bucket, found with ROW_NUMBER() (portable: SQLite ≥ 3.25, PostgreSQL),
# once ascending (minimum) and once descending (maximum); ties go to the earlier point.
_EXTREMES = """
WITH src AS ({source}),
lo AS (SELECT lo_step AS step, lo_ts AS ts, lo_value AS value,
              ROW_NUMBER() OVER (PARTITION BY b ORDER BY lo_value, lo_step, lo_ts) AS n
       FROM src WHERE lo_value IS NOT NULL),
hi AS (SELECT hi_step AS step, hi_ts AS ts, hi_value AS value,
              ROW_NUMBER() OVER (PARTITION BY b ORDER BY hi_value DESC, hi_step, hi_ts) AS n
       FROM src WHERE hi_value IS NOT NULL)
SELECT step, ts, value FROM lo WHERE n = 1
UNION
SELECT step, ts, value FROM hi WHERE n = 1
"""
_FROM_POINTS = """
SELECT ({axis} - :origin) / :bucket_width AS b,
       step AS lo_step, timestamp AS lo_ts, value AS lo_value,
       step AS hi_step, timestamp AS hi_ts, value AS hi_value
FROM metric_points
WHERE run_id = :run_id AND key = :key AND value BETWEEN :fmin AND :fmax
"""
_FROM_ROLLUPS = """
SELECT (bucket * :width - :origin) / :bucket_width AS b,
       min_step AS lo_step, min_timestamp AS lo_ts, min_value AS lo_value,
       max_step AS hi_step, max_timestamp AS hi_ts, max_value AS hi_value
FROM metric_rollups
WHERE run_id = :run_id AND key = :key AND width = :width
"""


def check_max_points(max_points: int) -> None:
    if max_points < MIN_POINTS:
        raise DownsampleError(f"maxPoints must be at least {MIN_POINTS}, not {max_points}")


def plan(first_step: int, last_step: int, max_points: int) -> tuple[int, int, int]:
    """(bucket width in steps, origin step, rollup width or 0 for raw points).

    Buckets are aligned to multiples of their width (itself a multiple of the rollup width
    read), so that rollup blocks nest in them; the width is chosen so that even with that
    alignment there are at most (max_points - 2) // 2 buckets."""
    buckets = max(1, (max_points - 2) // 2)
    span = last_step - first_step + 1
    # ceil(span / (buckets - 1)) leaves one bucket of slack for the alignment.
    width = -(-span // max(1, buckets - 1)) if buckets > 1 else span + 1
    rollup = max((w for w in WIDTHS if w <= width), default=0)
    if rollup:
        width = -(-width // rollup) * rollup
    while (last_step // width) - (first_step // width) + 1 > buckets:
        width *= 2  # only for tiny max_points, where one bucket must hold everything
    return width, (first_step // width) * width, rollup


async def _rollups_complete(conn: AsyncConnection, run_id: str, key: str, count: int) -> bool:
    # The widest level has a handful of rows; their counts add up to the series' length
    # only when every point went through the rollups.
    r = rm.metric_rollups
    total = await conn.scalar(select(func.sum(r.c.count)).where(
        r.c.run_id == run_id, r.c.key == key, r.c.width == WIDTHS[-1]))
    return total == count


async def summary_of(engine: AsyncEngine, run_id: str, key: str) -> Any:
    """The series' latest_metrics row: its length, and its first and last point."""
    lm = rm.latest_metrics
    async with engine.connect() as conn:
        return (await conn.execute(select(lm).where(lm.c.run_id == run_id, lm.c.key == key))).first()


async def downsample(engine: AsyncEngine, run_id: str, key: str, max_points: int,
                     summary: Any = None) -> list[Point] | None:
    """At most `max_points` points of the series keeping its shape; None when the whole
    series already fits (the caller then reads it as it is). `summary`: the series'
    latest_metrics row, when the caller has it already."""
    check_max_points(max_points)
    summary = summary if summary is not None else await summary_of(engine, run_id, key)
    if summary is None or summary.count <= max_points:
        return None
    first = Point(summary.first_step, summary.first_timestamp, summary.first_value)
    last = Point(summary.step, summary.timestamp, summary.value)
    # Every point at one step (the SDK's default step is 0): bucket by time instead, over
    # the points (rollups are by step).
    by_time = first.step == last.step
    if by_time:
        width, origin, _ = plan(first.timestamp, last.timestamp, max_points)
        rollup = 0
    else:
        width, origin, rollup = plan(first.step, last.step, max_points)
    params: dict[str, Any] = {"run_id": run_id, "key": key, "origin": origin,
                              "bucket_width": width, "fmin": -FLOAT_MAX, "fmax": FLOAT_MAX}
    async with engine.connect() as conn:
        if rollup and await _rollups_complete(conn, run_id, key, summary.count):
            source = _FROM_ROLLUPS
            params["width"] = rollup
        else:
            source = _FROM_POINTS.format(axis="timestamp" if by_time else "step")
        rows = await conn.execute(text(_EXTREMES.format(source=source)), params)
        middle = {Point(r.step, r.ts, r.value) for r in rows}
    points = sorted(middle | {first, last}, key=_order)
    return points if len(points) <= max_points else _trim(points, first, last, max_points)


def _order(point: Point) -> tuple[int, int]:
    return point.step, point.timestamp


def _trim(points: list[Point], first: Point, last: Point, max_points: int) -> list[Point]:
    """Only for max_points below 4, where first, last and the extremes cannot all fit."""
    finite = sorted((p for p in points if p.value is not None and -FLOAT_MAX <= p.value <= FLOAT_MAX),
                    key=lambda p: (p.value, p.step, p.timestamp))
    keep = [first, last] + ([finite[0], finite[-1]] if finite else [])
    chosen: list[Point] = []
    for point in keep:
        if point not in chosen and len(chosen) < max_points:
            chosen.append(point)
    return sorted(chosen, key=_order)
