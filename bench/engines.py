"""Events per second through the engines: append to Kafka, then each projection consuming
from Kafka into PostgreSQL (sql, audit) and Neo4j (graph) — the at-scale path."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.pipeline import workload
from modeldb.infra.engines import fresh_postgres_database, fresh_topic_name, resolve_engines
from modeldb.infra.settings import Settings
from modeldb.infra.system import PROJECTIONS, System
from modeldb.projectors.db import create_engine
from modeldb.projectors.migrations import migrate
from modeldb.writer.service import Writer


async def _run(events: list[dict[str, Any]], home: Path) -> list[dict[str, Any]]:
    engines = resolve_engines()
    settings = replace(
        Settings.load(home),
        event_log=f"kafka://{engines.kafka_bootstrap}?topic={fresh_topic_name('bench')}",
        read_db=fresh_postgres_database(engines, "bench"),
        graph=engines.neo4j_uri,
    )
    engine = create_engine(settings.read_db)
    await migrate(engine)
    await engine.dispose()
    system = await System.open(settings)
    rows: list[dict[str, Any]] = []
    n = len(events)
    points = sum(len(e["payload"].get("points", [])) for e in events)
    try:
        await system.projections["graph"].reset()  # Neo4j Community has one database
        writer = Writer(system.log)
        batches = [writer.prepare(events[i : i + 1000], "bench") for i in range(0, n, 1000)]
        start = time.perf_counter()
        for batch in batches:
            await system.log.append(batch)
        rate = n / (time.perf_counter() - start)
        rows.append({"stage": "append to Kafka (batches of 1000)", "events": n,
                     "events_per_s": round(rate), "note": "transactional, acks=all, zstd"})
        target = {"graph": "Neo4j"}  # every other projection is in PostgreSQL
        for name in PROJECTIONS:
            start = time.perf_counter()
            count = await system.runtimes[name].catch_up()
            rate = count / (time.perf_counter() - start)
            note = f"{points * rate / n:,.0f} metric points/s" if name == "sql" else ""
            stage = f"projection {name}: Kafka → {target.get(name, 'PostgreSQL')}"
            rows.append({"stage": stage, "events": count, "events_per_s": round(rate), "note": note})
    finally:
        await system.close()
    return rows


def run(quick: bool = False, home: Path | None = None) -> list[dict[str, Any]]:
    import tempfile

    events = workload(10_000 if quick else 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_run(events, home or Path(tmp)))
