"""The fast write path of the projections: rebuilding them all in one pass over the log,
rollups only for series of two or more points, metric points read from their stored form."""

from __future__ import annotations

import math

from sqlalchemy import func, select

from modeldb.event_schema import RecordedEvent, new_event, to_wire, uuid7
from modeldb.infra.system import PROJECTIONS, System
from modeldb.projectors import read_model as rm
from modeldb.projectors.base import applied_events, metric_points
from modeldb.query_api import downsample as ds
from modeldb.writer.log import reached
from tests.helpers import every_event_type, run_events, wire


async def ingest(system: System, events: list) -> None:
    await system.writer.ingest(wire(events), "tester")
    await system.catch_up()


def points(run: str, key: str, steps: range) -> list:
    return [new_event("MetricsLogged", run, {"points": [
        {"key": key, "value": math.cos(s / 7) if s % 50 != 7 else float("nan"), "step": s,
         "timestamp": 1000 + s} for s in steps]})]


async def test_rebuilding_all_together_equals_the_incremental_build(system: System) -> None:
    await ingest(system, every_event_type())
    grown = uuid7()
    for i in range(12):
        await ingest(system, run_events(uuid7(), params={"i": i}, metrics={"m": [i, i + 1]},
                                        tags={"t": str(i)}))
        await ingest(system, points(grown, "loss", range(i * 40, (i + 1) * 40)))
    await ingest(system, every_event_type())  # duplicates on Kafka, a no-op on SQLite
    incremental = {n: await p.digest() for n, p in system.projections.items()}
    async with system.engine.connect() as conn:
        marks = await conn.scalar(select(func.count()).select_from(applied_events))
    count = await system.rebuild(PROJECTIONS)
    assert count >= 12 * 4
    head = await system.log.head()
    for name in PROJECTIONS:
        assert await system.projections[name].digest() == incremental[name], name
        # Each projection keeps its own checkpoint, at the head, as if rebuilt alone.
        assert reached(await system.projections[name].load_checkpoint() or {}, head), name
        assert reached(system.runtimes[name].checkpoint, head), name
    async with system.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(applied_events)) == marks


async def rollup_counts(system: System, run: str, key: str) -> int | None:
    r = rm.metric_rollups
    async with system.engine.connect() as conn:
        return await conn.scalar(select(func.sum(r.c.count)).where(
            r.c.run_id == run, r.c.key == key, r.c.width == ds.WIDTHS[-1]))


async def test_a_series_has_rollups_from_its_second_point(system: System) -> None:
    run = uuid7()
    await ingest(system, run_events(run, metrics={"acc": [0.5]}))
    await ingest(system, points(run, "loss", range(0, 1)))  # its first point alone
    assert await rollup_counts(system, run, "acc") is None
    assert await rollup_counts(system, run, "loss") is None
    await ingest(system, points(run, "loss", range(1, 3000)))  # grows: the first one joins
    assert await rollup_counts(system, run, "loss") == 3000
    # The rollups are complete, so downsampling reads them, and answers what the points do.
    sizes = (40, 10)
    assert all(ds.plan(0, 2999, m)[2] for m in sizes)
    from_rollups = [await ds.downsample(system.engine, run, "loss", m) for m in sizes]
    async with system.engine.connect() as conn:
        assert await ds._rollups_complete(conn, run, "loss", 3000)
    digest = await system.read_model.digest()
    await system.runtimes["sql"].rebuild()  # the whole series in one batch
    assert await system.read_model.digest() == digest
    assert [await ds.downsample(system.engine, run, "loss", m) for m in sizes] == from_rollups
    assert from_rollups[0] is not None and from_rollups[0][0].step == 0


def test_stored_points_read_as_the_decoded_ones() -> None:
    run = uuid7()
    values = [1.5, float("nan"), float("inf"), float("-inf"), -0.0, 3.0]
    event = new_event("MetricsLogged", run, {"points": [
        {"key": "k", "value": v, "step": i, "timestamp": 7 + i} for i, v in enumerate(values)]})
    raw = to_wire(event)
    assert {p["value"] for p in raw["payload"]["points"]} >= {"NaN", "Infinity", "-Infinity"}
    stored = list(metric_points(RecordedEvent(1, raw)))
    decoded = [(p.key, p.value, p.step, p.timestamp) for p in RecordedEvent(1, raw).event.payload.points]

    def same(a: tuple, b: tuple) -> bool:
        return a[0] == b[0] and a[2:] == b[2:] and (a[1] == b[1] or (math.isnan(a[1]) and math.isnan(b[1])))

    assert len(stored) == len(decoded) == len(values)
    assert all(same(a, b) for a, b in zip(stored, decoded, strict=True))
    assert all(type(p[1]) is float for p in stored)


async def test_composite_key_lookups_use_the_index_and_match_a_row_value_in(system: System) -> None:
    """`in_keys` (search documents, compareRuns' short series, deletes of tags): the rows of
    `(a, b) IN keys`, found through the index where a row-value IN list scans the table."""
    from sqlalchemy import tuple_

    from modeldb.projectors.db import in_keys, is_postgres

    runs = [uuid7() for _ in range(4)]
    for run in runs:
        await ingest(system, run_events(run, metrics={"acc": [0.1, 0.2], "loss": [1.0]}))
    t = rm.latest_metrics
    keys = [(runs[0], "acc"), (runs[0], "loss"), (runs[2], "acc"), (runs[3], "nope")]
    wanted = select(t.c.run_id, t.c.key).order_by(t.c.run_id, t.c.key)
    async with system.engine.connect() as conn:
        got = list(await conn.execute(wanted.where(in_keys((t.c.run_id, t.c.key), keys))))
        expected = list(await conn.execute(wanted.where(tuple_(t.c.run_id, t.c.key).in_(keys))))
        assert got == expected and len(got) == 3
        if not is_postgres(conn):
            sql = select(t.c.value).where(in_keys((t.c.run_id, t.c.key), keys)).compile(
                dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            plan = " ".join(str(r[-1]) for r in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "SCAN latest_metrics" not in plan and "USING" in plan, plan
