"""Whole metric series as columns: `{key, count, sampled, steps, timestamps, values}`.

The fast way to read a long history (GraphQL `run { metricSeries(key) }`, the SDK's
`get_metric_history`): graphql-core completes every leaf of `metricHistory { step value
timestamp }` one by one (3 million for a million-point series), while a series answered as
one JSON value is serialized once.

Memory is the other half (a server must not grow by a gigabyte per reader). The points
are read with the database driver itself, in chunks, into typed arrays (8 bytes a number):
no SQLAlchemy Row per point, and never a million tuples alive at once. Over HTTP the
answer is then written to JSON chunk by chunk and handed to the orjson encoder as a
ready-made fragment (query_api/encoding.py), so the server never holds the series as
Python objects; in-process callers (the embedded SDK, tests) get plain lists.

Values that are not finite (NaN, ±inf) read as null, as in `metricHistory` — in SQL, the
same on SQLite (which stores NaN as NULL) and PostgreSQL (which keeps it, and sorts it
above every number).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from modeldb.projectors.metric_rollups import FLOAT_MAX
from modeldb.query_api.downsample import downsample

CHUNK = 50_000  # rows per driver fetch and per serialized piece: bounded memory, few thread hops

_FINITE = f"CASE WHEN value BETWEEN {-FLOAT_MAX!r} AND {FLOAT_MAX!r} THEN value END"
_SQLITE = (f"SELECT step, timestamp, {_FINITE} FROM metric_points "
           "WHERE run_id = ? AND key = ? ORDER BY step, timestamp")
_POSTGRES = (f"SELECT step, timestamp, {_FINITE} FROM metric_points "
             "WHERE run_id = $1 AND key = $2 ORDER BY step, timestamp")
_STEP, _TIMESTAMP, _VALUE = itemgetter(0), itemgetter(1), itemgetter(2)


@dataclass
class Series:
    """One metric series, column by column; NaN in `values` stands for "not finite"."""

    steps: array[int] = field(default_factory=lambda: array("q"))
    timestamps: array[int] = field(default_factory=lambda: array("q"))
    values: array[float] = field(default_factory=lambda: array("d"))
    sampled: bool = False  # True when downsampled (fewer points than the series has)
    gaps: bool = False  # some value is not finite

    def __len__(self) -> int:
        return len(self.steps)

    def extend(self, rows: Sequence[Any]) -> None:
        """Append (step, timestamp, value or None) rows, column by column through C
        iterators (zip(*rows) is ten times slower)."""
        self.steps.extend(map(_STEP, rows))
        self.timestamps.extend(map(_TIMESTAMP, rows))
        values = list(map(_VALUE, rows))
        if None in values:  # a C scan; the comprehension only for series with gaps
            self.gaps = True
            values = [math.nan if v is None else v for v in values]
        self.values.extend(values)

    def as_json(self, key: str) -> dict[str, Any]:
        """The answer as plain Python values (null for values that are not finite)."""
        values: list[float | None] = self.values.tolist()  # type: ignore[assignment]
        if self.gaps:
            values = [None if v != v else v for v in values]  # NaN is unequal to itself
        return {"key": key, "count": len(self), "sampled": self.sampled, "steps": self.steps.tolist(),
                "timestamps": self.timestamps.tolist(), "values": values}

    def as_fragment(self, key: str) -> orjson.Fragment:
        """The same answer as JSON text, written a chunk at a time (orjson writes NaN as null)."""
        head = orjson.dumps({"key": key, "count": len(self), "sampled": self.sampled})[:-1]
        parts: list[bytes | memoryview] = [head]
        for name, column in (("steps", self.steps), ("timestamps", self.timestamps),
                             ("values", self.values)):
            parts.append(b',"%s":[' % name.encode())
            for start in range(0, len(column), CHUNK):
                if start:
                    parts.append(b",")
                # Each piece without its brackets, uncopied until the one join.
                parts.append(memoryview(orjson.dumps(column[start : start + CHUNK].tolist()))[1:-1])
            parts.append(b"]")
        parts.append(b"}")
        return orjson.Fragment(b"".join(parts))


async def read_series(engine: AsyncEngine, run_id: str, key: str) -> Series:
    """Every point of the series in (step, timestamp) order; empty when there is none."""
    series = Series()
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        if engine.dialect.name == "sqlite":  # aiosqlite
            cursor = await driver.execute(_SQLITE, (run_id, key))
            try:
                while rows := await cursor.fetchmany(CHUNK):
                    series.extend(rows)
            finally:
                await cursor.close()
        else:
            # asyncpg: a server-side cursor lives in a transaction; read-only, never written.
            async with driver.transaction(readonly=True):
                cursor = await driver.cursor(_POSTGRES, run_id, key)
                while rows := await cursor.fetch(CHUNK):
                    series.extend(rows)
    return series


async def series_of(engine: AsyncEngine, run_id: str, key: str, max_points: int | None = None) -> Series:
    """The series, downsampled to at most `max_points` points (min/max buckets, see
    query_api/downsample.py) when it is longer than that."""
    if max_points is not None:
        sampled = await downsample(engine, run_id, key, max_points)
        if sampled is not None:
            series = Series(sampled=True)
            series.extend([(p.step, p.timestamp, _finite(p.value)) for p in sampled])
            return series
    return await read_series(engine, run_id, key)


def _finite(value: float | None) -> float | None:
    return value if value is not None and -FLOAT_MAX <= value <= FLOAT_MAX else None


async def series_answer(engine: AsyncEngine, run_id: str, key: str, max_points: int | None,
                        over_http: bool) -> Any:
    """metricSeries' value: a JSON fragment when the answer goes out over HTTP (encoded by
    query_api/encoding.py), plain lists for in-process callers."""
    series = await series_of(engine, run_id, key, max_points)
    return series.as_fragment(key) if over_http else series.as_json(key)
