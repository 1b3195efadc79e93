"""Metric rollups: per (run, key), the extremes of every aligned block of steps at a few
widths, kept by the sql projection as points arrive, so that a downsampled history of a
million-point series reads a few thousand rollup rows instead of every point
(`modeldb.query_api.downsample`).

A rollup row covers steps [bucket * width, (bucket + 1) * width) and holds the number of
points, and the smallest and the largest finite value with the step and timestamp where
each occurred. Ties go to the earlier (step, timestamp), so the stored extremes are the same
however the points were split into batches (a rebuilt projection equals the incremental one).
Non-finite values (NaN, ±inf) are counted but are never an extreme.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, or_
from sqlalchemy.ext.asyncio import AsyncConnection

from modeldb.projectors import read_model as rm
from modeldb.projectors.db import execute_rows, insert_for, per_dialect

# Each width is 8 times the one before, so a query picks a width at which it reads at most
# 8 rollup rows per output bucket (and at most 64 points per bucket below the finest width).
# The finest width bounds the write cost: about one rollup row per 56 points.
WIDTHS = (64, 512, 4096, 32768, 262144, 2097152)
FLOAT_MAX = 1.7976931348623157e308

# [count, min_value, min_step, min_ts, max_value, max_step, max_ts]
_Acc = list[Any]


def _fold(acc: _Acc, count: int, lo: tuple[Any, ...] | None, hi: tuple[Any, ...] | None) -> None:
    acc[0] += count
    if lo is not None and (acc[1] is None or lo < (acc[1], acc[2], acc[3])):
        acc[1], acc[2], acc[3] = lo
    if hi is not None and (acc[4] is None or (-hi[0], hi[1], hi[2]) < (-acc[4], acc[5], acc[6])):
        acc[4], acc[5], acc[6] = hi


def rollup_rows(points: list[tuple[str, str, int, int, float]]) -> list[tuple[Any, ...]]:
    """The rollup rows (in COLUMNS order) a batch of points (run_id, key, step, timestamp,
    value) implies."""
    finest = WIDTHS[0]
    level: dict[tuple[str, str, int], _Acc] = {}
    for run_id, key, step, ts, value in points:  # hot loop: plain comparisons only
        slot = (run_id, key, step // finest)
        acc = level.get(slot)
        if acc is None:
            acc = level[slot] = [0, None, None, None, None, None, None]
        acc[0] += 1
        if -FLOAT_MAX <= value <= FLOAT_MAX:  # false for NaN and ±inf
            # Most points are no new extreme: one comparison each decides it.
            low = acc[1]
            if low is None or value < low or (value == low and (step, ts) < (acc[2], acc[3])):
                acc[1], acc[2], acc[3] = value, step, ts
            high = acc[4]
            if high is None or value > high or (value == high and (step, ts) < (acc[5], acc[6])):
                acc[4], acc[5], acc[6] = value, step, ts
    rows = _rows(finest, level)
    for width in WIDTHS[1:]:
        # Each coarser level folds the one below it (32 times fewer rows), not the points.
        coarser: dict[tuple[str, str, int], _Acc] = {}
        factor = width // finest
        for (run_id, key, bucket), a in level.items():
            slot = (run_id, key, bucket // factor)
            acc = coarser.get(slot)
            if acc is None:
                acc = coarser[slot] = [0, None, None, None, None, None, None]
            _fold(acc, a[0], (a[1], a[2], a[3]) if a[1] is not None else None,
                  (a[4], a[5], a[6]) if a[4] is not None else None)
        rows += _rows(width, coarser)
        level, finest = coarser, width
    return rows


COLUMNS = ("run_id", "key", "width", "bucket", "count", "min_value", "min_step", "min_timestamp",
           "max_value", "max_step", "max_timestamp")


def _rows(width: int, level: dict[tuple[str, str, int], _Acc]) -> list[tuple[Any, ...]]:
    """Rows in COLUMNS order (in the order the points came: grouped by series already)."""
    return [(run_id, key, width, bucket, *a) for (run_id, key, bucket), a in level.items()]


@per_dialect
def _merge(conn: AsyncConnection) -> Any:
    """Upsert folding a batch's rollup rows into the stored ones, with the same tie rule."""
    table = rm.metric_rollups
    stmt = insert_for(conn, table)
    new, old = stmt.excluded, table.c
    lower = or_(old.min_value.is_(None), and_(new.min_value.is_not(None), or_(
        new.min_value < old.min_value,
        and_(new.min_value == old.min_value, or_(
            new.min_step < old.min_step,
            and_(new.min_step == old.min_step, new.min_timestamp < old.min_timestamp))))))
    higher = or_(old.max_value.is_(None), and_(new.max_value.is_not(None), or_(
        new.max_value > old.max_value,
        and_(new.max_value == old.max_value, or_(
            new.max_step < old.max_step,
            and_(new.max_step == old.max_step, new.max_timestamp < old.max_timestamp))))))
    set_: dict[str, Any] = {"count": old.count + new.count}
    for column in ("min_value", "min_step", "min_timestamp"):
        set_[column] = case((lower, new[column]), else_=old[column])
    for column in ("max_value", "max_step", "max_timestamp"):
        set_[column] = case((higher, new[column]), else_=old[column])
    return stmt.on_conflict_do_update(index_elements=["run_id", "key", "width", "bucket"], set_=set_)


async def write_rollups(conn: AsyncConnection, points: list[tuple[str, str, int, int, float]]) -> None:
    await execute_rows(conn, _merge(conn), COLUMNS, rollup_rows(points))
