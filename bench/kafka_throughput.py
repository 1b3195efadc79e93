"""Events per second through the Kafka event log: appending (per compression codec, and with
many small concurrent batches merged by group commit) and consuming into the sql read model.

    python -m bench.kafka_throughput [--events 50000] [--bootstrap host:port]

Without --bootstrap, Kafka comes from `modeldb.infra.engines.resolve_engines()` (which honours
MODELDB_TEST_KAFKA). Every measurement writes to a topic of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import codec as kafka_codec
from aiokafka.codec import has_lz4, has_snappy, has_zstd

from bench.pipeline import workload
from modeldb.event_schema.codec import stored_form
from modeldb.infra.engines import fresh_topic_name
from modeldb.projectors.db import create_engine
from modeldb.projectors.runtime import ProjectorRuntime
from modeldb.projectors.sql_projection import SqlReadModel
from modeldb.writer.kafka_log import KafkaConfig, KafkaEventLog
from modeldb.writer.sqlite_log import SQLiteEventLog

BATCH = 1000


def codecs() -> list[str]:
    available = {"lz4": has_lz4(), "zstd": has_zstd(), "snappy": has_snappy()}
    return ["none", "gzip", *[name for name, ok in available.items() if ok]]


def bytes_per_event(events: list[dict[str, Any]], compression: str) -> float:
    """About what one event costs on the broker's disk, kept forever: the values compressed
    in chunks the size of the producer's record batches."""
    encode = getattr(kafka_codec, f"{compression}_encode", lambda data: data)
    total, chunk = 0, bytearray()
    for event in events:
        chunk += orjson.dumps(event)
        if len(chunk) >= 960 * 1024:
            total, chunk = total + len(encode(bytes(chunk))), bytearray()
    return (total + len(encode(bytes(chunk)))) / len(events)


async def append_rate(bootstrap: str, events: list[dict[str, Any]], compression: str,
                      concurrency: int = 1, batch: int = BATCH) -> tuple[float, str]:
    """Events/s appended in batches of `batch` by `concurrency` concurrent callers; the topic."""
    topic = fresh_topic_name("modeldb.bench")
    log = KafkaEventLog(f"kafka://{bootstrap}?topic={topic}&compression={compression}")
    try:
        await log.append(events[:10])  # topic creation and producer start are not throughput
        chunks = [events[i : i + batch] for i in range(10, len(events), batch)]

        async def caller(mine: list[list[dict[str, Any]]]) -> None:
            for chunk in mine:
                await log.append(chunk)

        start = time.perf_counter()
        await asyncio.gather(*(caller(chunks[k::concurrency]) for k in range(concurrency)))
        return (len(events) - 10) / (time.perf_counter() - start), topic
    finally:
        await log.close()


async def consume_rate(bootstrap: str, topic: str, tmp: Path) -> tuple[float, int]:
    """Events/s the sql projection applies from the topic into a fresh SQLite read model."""
    log = KafkaEventLog(f"kafka://{bootstrap}?topic={topic}")
    model = SqlReadModel(create_engine(f"sqlite+aiosqlite:///{tmp / f'{topic}.db'}"))
    try:
        await model.setup()
        start = time.perf_counter()
        count = await ProjectorRuntime(log, model).catch_up()
        return count / (time.perf_counter() - start), count
    finally:
        await model.engine.dispose()
        await log.close()


async def decode_rate(bootstrap: str, topic: str, total: int) -> float:
    """Events/s through the subscription alone (fetch, JSON, validation), no read model."""
    log = KafkaEventLog(f"kafka://{bootstrap}?topic={topic}")
    subscription = log.subscribe(f"bench-{topic}", {})
    try:
        start, seen = time.perf_counter(), 0
        while seen < total:
            seen += len((await subscription.next_batch(5000, 1.0)).events)
        return seen / (time.perf_counter() - start)
    finally:
        await subscription.close()
        await log.close()


async def sqlite_rates(events: list[dict[str, Any]], tmp: Path) -> tuple[float, float]:
    """The same events through the embedded log, for comparison."""
    log = SQLiteEventLog(tmp / "events.db")
    start = time.perf_counter()
    for i in range(0, len(events), BATCH):
        await log.append(events[i : i + BATCH])
    append = len(events) / (time.perf_counter() - start)
    model = SqlReadModel(create_engine(f"sqlite+aiosqlite:///{tmp / 'embedded-read.db'}"))
    try:
        await model.setup()
        start = time.perf_counter()
        count = await ProjectorRuntime(log, model).catch_up()
        return append, count / (time.perf_counter() - start)
    finally:
        await model.engine.dispose()
        await log.close()


async def run(bootstrap: str, n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    events = [stored_form(e, actor="bench", recorded_at=now) for e in workload(n)]
    rows: list[dict[str, Any]] = []

    def add(stage: str, rate: float, note: str = "") -> None:
        rows.append({"stage": stage, "events": n, "events_per_s": round(rate), "note": note})

    topics = {}
    for codec in codecs():
        rate, topics[codec] = await append_rate(bootstrap, events, codec)
        add(f"append, batches of {BATCH}, compression={codec}", rate,
            f"one transaction per batch; ≈{bytes_per_event(events, codec):,.0f} bytes/event stored")
    best = KafkaConfig.parse(f"kafka://{bootstrap}").compression or "none"  # the adapter's default
    rate, _ = await append_rate(bootstrap, events[: n // 5], best, batch=50)
    add(f"append, batches of 50 from 1 caller, compression={best}", rate,
        f"{n // 5:,} events; one transaction per batch")
    rate, _ = await append_rate(bootstrap, events, best, concurrency=16, batch=50)
    add(f"append, batches of 50 from 16 callers, compression={best}", rate,
        "concurrent batches merged into one transaction")
    with tempfile.TemporaryDirectory() as tmp:
        add("subscription: fetch + decode + validate", await decode_rate(bootstrap, topics[best], n))
        rate, count = await consume_rate(bootstrap, topics[best], Path(tmp))
        add("sql projection from Kafka (catch_up)", rate, f"{count} events applied")
        append, project = await sqlite_rates(events, Path(tmp))
        add(f"append to SQLite log, batches of {BATCH} (reference)", append, "synchronous=FULL")
        add("sql projection from SQLite log (reference)", project)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v)
                                       for v in row.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.kafka_throughput")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--bootstrap", default=None, help="host:port (default: resolve_engines())")
    args = parser.parse_args()
    if args.bootstrap is None:
        from modeldb.infra.engines import resolve_engines

        args.bootstrap = resolve_engines().kafka_bootstrap
    print(table(asyncio.run(run(args.bootstrap, args.events))))


if __name__ == "__main__":
    main()
