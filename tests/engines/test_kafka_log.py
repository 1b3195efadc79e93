"""The Kafka event log against a real broker: ordering, atomic durable appends, dead letters,
checkpoints that survive a killed projector, and consumer groups that share the work.

Each test writes to a topic of its own, so runs against one broker never see each other.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy import func, select

from bench.pipeline import workload
from modeldb.event_schema import new_event, to_wire, uuid7
from modeldb.event_schema.codec import stored_form
from modeldb.infra import launcher
from modeldb.infra.engines import fresh_topic_name, resolve_engines
from modeldb.projectors import read_model as rm
from modeldb.projectors.base import applied_events
from modeldb.projectors.db import create_engine
from modeldb.projectors.runtime import ProjectorRuntime
from modeldb.projectors.sql_projection import SqlReadModel
from modeldb.writer.kafka_log import KafkaEventLog, KafkaSubscription
from modeldb.writer.log import Batch, EventLogUnavailable
from modeldb.writer.sqlite_log import SQLiteEventLog
from tests.helpers import run_events, server_env, wire

pytestmark = pytest.mark.engines


@pytest.fixture(scope="session")
def bootstrap() -> str:
    # Session scope: resolved before the function-scoped fixture that clears MODELDB_* variables.
    return resolve_engines().kafka_bootstrap


@pytest.fixture
def topic() -> str:
    return fresh_topic_name("modeldb.test")


@pytest.fixture
def url(bootstrap: str, topic: str) -> str:
    return f"kafka://{bootstrap}?topic={topic}"


@pytest.fixture
async def log(url: str) -> AsyncIterator[KafkaEventLog]:
    opened = KafkaEventLog(url)
    try:
        yield opened
    finally:
        await opened.close()


def stored(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events as the writer appends them: validated and stamped."""
    now = datetime.now(UTC)
    return [stored_form(e, actor="tester", recorded_at=now) for e in events]


def sql_model(path: Path) -> SqlReadModel:
    return SqlReadModel(create_engine(f"sqlite+aiosqlite:///{path}"))


async def count(model: SqlReadModel, table: Any, *where: Any) -> int:
    async with model.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def points_in(events: list[dict[str, Any]]) -> int:
    return sum(len(e["payload"].get("points", [])) for e in events if e["type"] == "MetricsLogged")


async def read_topic(bootstrap: str, topic: str, expected: int, partitions: int = 3) -> list[ConsumerRecord]:
    """The committed records of `topic` (at least `expected`), in (partition, offset) order.

    Waits for them: the coordinator writes commit markers just after a transaction commits,
    so another reader may see the last batch a moment later than its writer.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 20
        while True:
            ends = await consumer.end_offsets(tps)
            if len(records) >= expected and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                return sorted(records, key=lambda r: (r.partition, r.offset))
            assert time.monotonic() < deadline, f"{len(records)} of {expected} records in {topic}"
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    finally:
        await consumer.stop()


async def sqlite_digest(events: list[dict[str, Any]], home: Path) -> str:
    """The sql read model's digest when the same events go through the embedded log."""
    home.mkdir()
    log = SQLiteEventLog(home / "events.db")
    log.append_sync(events)
    model = sql_model(home / "read.db")
    try:
        await ProjectorRuntime(log, model).catch_up()
        return await model.digest()
    finally:
        await model.engine.dispose()
        await log.close()


# ---------------------------------------------------------------- appending


async def test_append_returns_offsets_in_order_and_they_reread(log: KafkaEventLog, bootstrap: str,
                                                             topic: str) -> None:
    events = stored(workload(1500))
    positions = [p for start in range(0, 1500, 500) for p in await log.append(events[start:start + 500])]
    assert len(positions) == 1500

    records = await read_topic(bootstrap, topic, 1500)
    assert len(records) == 1500
    found = {orjson.loads(r.value)["event_id"]: r for r in records}
    for event, position in zip(events, positions, strict=True):
        record = found[event["event_id"]]
        assert record.offset == position
        assert orjson.loads(record.value) == event
        assert record.key == event["aggregate"]["id"].encode()
    for part in {r.partition for r in records}:
        mine = [e["event_id"] for e in events if found[e["event_id"]].partition == part]
        assert mine == [orjson.loads(r.value)["event_id"] for r in records if r.partition == part]

    walked = [(e.partition, e.position, dict(e.raw)) async for e in log.records()]
    assert walked == [(r.partition, r.offset, orjson.loads(r.value)) for r in records]

    head = await log.head()
    assert set(head) == {"0", "1", "2"}
    for part, end in head.items():
        assert end > max((r.offset for r in records if r.partition == int(part)), default=-1)


async def test_one_aggregate_stays_in_one_partition_in_order(log: KafkaEventLog, bootstrap: str,
                                                             topic: str) -> None:
    run = uuid7()
    ours = stored([to_wire(new_event("MetricsLogged", run, {"points": [
        {"key": "loss", "value": 1.0 / (i + 1), "step": i, "timestamp": i}]})) for i in range(300)])
    others = stored(workload(300))
    for i in range(0, 300, 50):  # interleaved with other runs' events, over several appends
        await log.append([*ours[i:i + 25], *others[i:i + 50], *ours[i + 25:i + 50]])

    records = [r for r in await read_topic(bootstrap, topic, 600) if r.key == run.encode()]
    assert len({r.partition for r in records}) == 1
    assert [orjson.loads(r.value)["event_id"] for r in records] == [e["event_id"] for e in ours]


async def test_append_sync_from_a_plain_thread(log: KafkaEventLog, bootstrap: str, topic: str) -> None:
    events = stored(wire(run_events(uuid7(), metrics={"acc": [0.5, 0.7]})))
    positions = await asyncio.to_thread(log.append_sync, events)
    assert len(positions) == len(events)
    assert len(await read_topic(bootstrap, topic, len(events))) == len(events)


def _append_in_child(log: KafkaEventLog, events: list[dict[str, Any]]) -> None:
    try:
        log.append_sync(events)
    finally:
        log.close_sync()


async def test_a_forked_child_appends_under_its_own_transactional_id(log: KafkaEventLog, bootstrap: str,
                                                                     topic: str) -> None:
    events = stored(workload(300))
    await log.append(events[:100])  # the parent's producer is up before the fork
    child = multiprocessing.get_context("fork").Process(target=_append_in_child,
                                                        args=(log, events[100:200]))
    child.start()
    await asyncio.to_thread(child.join, 60)
    assert child.exitcode == 0
    await log.append(events[200:])  # not fenced by the child
    records = await read_topic(bootstrap, topic, 300)
    assert sorted(orjson.loads(r.value)["event_id"] for r in records) == sorted(
        e["event_id"] for e in events)


async def test_duplicate_appends_are_stored_but_applied_once(log: KafkaEventLog, bootstrap: str,
                                                            topic: str, tmp_path: Path) -> None:
    events = stored(workload(600))
    first = await log.append(events)
    again = await log.append(events)  # a client retrying a batch it got no answer for
    assert len(await read_topic(bootstrap, topic, 1200)) == 1200
    assert all(b > a for a, b in zip(first, again, strict=True))  # same partition, later

    model = sql_model(tmp_path / "read.db")
    try:
        handed = await ProjectorRuntime(log, model).catch_up()
        assert handed == 1200
        assert await count(model, applied_events) == 600
        assert await count(model, rm.metric_points) == points_in(events)
        assert await model.digest() == await sqlite_digest(events, tmp_path / "embedded")
    finally:
        await model.engine.dispose()


# ---------------------------------------------------------------- reading


async def test_poison_records_go_to_the_dead_letter_topic(log: KafkaEventLog, bootstrap: str,
                                                          topic: str, tmp_path: Path) -> None:
    run = uuid7()
    before = stored(wire(run_events(run, metrics={"acc": [0.1, 0.2]}, status=None)))
    after = stored(wire([new_event("RunFinished", run, {"status": "FINISHED",
                                                        "end_time": "2026-01-01T00:00:00+00:00"})]))
    await log.append(before)
    unknown = {**before[0], "event_id": uuid7(), "type": "RunTeleported"}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        bad = [await producer.send_and_wait(topic, value, key=run.encode())
               for value in (b"not json", orjson.dumps(unknown))]
    finally:
        await producer.stop()
    await log.append(after)

    model = sql_model(tmp_path / "read.db")
    try:
        assert await ProjectorRuntime(log, model).catch_up() == len(before) + len(after)
        assert await count(model, applied_events) == len(before) + len(after)
        assert await count(model, rm.runs, rm.runs.c.status == "FINISHED") == 1
        assert await count(model, rm.metric_points) == 2

        letters = await read_topic(bootstrap, f"{topic}.dlq", 2)
        assert [r.value for r in letters] == [b"not json", orjson.dumps(unknown)]
        for letter, source in zip(letters, bad, strict=True):
            headers = {k: v.decode() for k, v in letter.headers}
            assert headers["source_partition"] == str(source.partition)
            assert headers["source_offset"] == str(source.offset)
            assert headers["group"] == "sql"
            assert letter.key == run.encode()
        reasons = [dict(r.headers)["reason"].decode() for r in letters]
        assert "unknown event type 'RunTeleported'" in reasons[1]
        assert reasons[0]  # orjson's parse error

        # The stored checkpoint is past the poison: a restarted projector does not meet it again.
        assert await ProjectorRuntime(log, model).catch_up() == 0
        assert len(await read_topic(bootstrap, f"{topic}.dlq", 2)) == 2
    finally:
        await model.engine.dispose()


async def drain(subscription: KafkaSubscription, batch_size: int = 1000,
                model: SqlReadModel | None = None) -> list[Batch]:
    """Every batch up to the end of the log, each applied to `model` (if any), then committed."""
    batches = []
    while True:
        batch = await subscription.next_batch(batch_size, 0.2)
        if batch.events:
            if model is not None:
                await model.apply(batch)
            await subscription.commit(batch)
            batches.append(batch)
        elif await subscription.caught_up():
            return batches


async def test_the_stored_checkpoint_decides_where_a_group_resumes(log: KafkaEventLog, topic: str) -> None:
    group = f"resume-{topic}"
    events = stored(workload(900))
    await log.append(events)
    first = log.subscribe(group, None)
    try:
        everything = await drain(first, batch_size=200)
    finally:
        await first.close()
    seen = [e for b in everything for e in b.events]
    assert len(seen) == 900
    by_part = {p: [e.position for e in seen if e.partition == p] for p in range(3)}
    assert all(by_part.values())
    # The group committed the end; the store says the middle of each partition.
    middle = {str(p): positions[len(positions) // 2] for p, positions in by_part.items()}

    async def after(checkpoint: dict[str, int]) -> list[tuple[int, int]]:
        resumed = log.subscribe(group, checkpoint)
        try:
            return sorted((e.partition, e.position) for b in await drain(resumed) for e in b.events)
        finally:
            await resumed.close()

    assert await after(middle) == sorted((p, pos) for p, positions in by_part.items()
                                         for pos in positions if pos >= middle[str(p)])
    # A partition the store does not know resumes from the group's committed offset.
    assert await after({"0": middle["0"]}) == [(0, pos) for pos in by_part[0] if pos >= middle["0"]]

    # An empty store is a new or rebuilt read model: the whole log, whatever the group committed.
    rebuilt = log.subscribe(group, {})
    try:
        assert sum(len(b.events) for b in await drain(rebuilt)) == 900
    finally:
        await rebuilt.close()


async def test_two_consumers_in_one_group_split_the_partitions(log: KafkaEventLog,
                                                               tmp_path: Path) -> None:
    models = [sql_model(tmp_path / "read.db"), sql_model(tmp_path / "read.db")]
    await models[0].setup()
    subs = [log.subscribe("sql", None), log.subscribe("sql", None)]
    try:
        deadline = time.monotonic() + 60
        while True:  # until the group settled: both members hold partitions, all of them
            await asyncio.gather(*(s.next_batch(100, 0.2) for s in subs))
            held = [set(s.partitions()) for s in subs]
            if all(held) and not held[0] & held[1] and held[0] | held[1] == {0, 1, 2}:
                break
            assert time.monotonic() < deadline, held

        events = stored(workload(3000))
        await log.append(events)

        results = await asyncio.gather(*(drain(s, 500, m) for s, m in zip(subs, models, strict=True)))
        for batches, part in zip(results, held, strict=True):
            assert batches and {e.partition for b in batches for e in b.events} <= part
        assert sum(len(b.events) for batches in results for b in batches) == 3000
        assert await count(models[0], applied_events) == 3000
        assert await count(models[0], rm.metric_points) == points_in(events)
    finally:
        for sub in subs:
            await sub.close()
        for model in models:
            await model.engine.dispose()


# ---------------------------------------------------------------- failures


def _applied(read_db: Path) -> int:
    try:
        with sqlite3.connect(read_db, timeout=30) as conn:
            return int(conn.execute("SELECT count(*) FROM applied_events WHERE projection = 'sql'")
                       .fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def _projector(url: str, home: Path, read_db: Path) -> subprocess.Popen[bytes]:
    env = server_env({"MODELDB_EVENT_LOG": url, "MODELDB_READ_DB": f"sqlite+aiosqlite:///{read_db}",
                      "MODELDB_HOME": str(home)})
    with (home.parent / "projector.log").open("ab") as out:  # the child keeps its own copy
        return subprocess.Popen([sys.executable, "-m", "modeldb.infra.cli", "project",
                                 "--projection", "sql"], env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.slow
async def test_a_killed_projector_resumes_and_applies_everything_once(
    log: KafkaEventLog, url: str, bootstrap: str, topic: str, tmp_path: Path
) -> None:
    events = stored(workload(15_000))
    for start in range(0, len(events), 2000):
        await log.append(events[start:start + 2000])
    read_db, home = tmp_path / "read.db", tmp_path / "home"

    for pause in (0.3, 0.6):  # twice: at different points of the batch after a committed one
        start = _applied(read_db)
        proc = _projector(url, home, read_db)
        try:
            deadline = time.monotonic() + 90
            while _applied(read_db) == start:  # this process committed a batch of its own
                assert proc.poll() is None, (tmp_path / "projector.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the projector made no progress"
                await asyncio.sleep(0.02)
            await asyncio.sleep(pause)  # now fetching, decoding or applying the next one
            proc.send_signal(signal.SIGKILL)  # no shutdown code runs
        finally:
            proc.wait()
        assert start < _applied(read_db) < len(events)

    proc = _projector(url, home, read_db)
    try:
        deadline = time.monotonic() + 120
        while _applied(read_db) < len(events):
            assert proc.poll() is None, (tmp_path / "projector.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"{_applied(read_db)} of {len(events)} applied"
            await asyncio.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    killed = sql_model(read_db)
    try:
        assert await count(killed, applied_events) == len(events)
        assert await count(killed, rm.metric_points) == points_in(events)
        # The stored checkpoint is past the last record of every partition. (It may stop short
        # of the log's head by the final commit marker: the runtime stores no empty batch.)
        records = await read_topic(bootstrap, topic, len(events))
        checkpoint = await killed.load_checkpoint() or {}
        for part in range(3):
            last = max(r.offset for r in records if r.partition == part)
            assert checkpoint[str(part)] > last
        assert await killed.digest() == await sqlite_digest(events, tmp_path / "embedded")
    finally:
        await killed.engine.dispose()


@pytest.mark.slow
async def test_nothing_is_acknowledged_when_the_broker_is_away(own_broker: tuple[str, Path]) -> None:
    base, home = own_broker
    url = f"{base}?topic={fresh_topic_name('modeldb.test.down')}"
    log = KafkaEventLog(url, timeout=5.0)
    try:
        events = stored(workload(200))
        assert len(await log.append(events[:100])) == 100
        await asyncio.to_thread(launcher.down, home)

        started = time.monotonic()
        with pytest.raises(EventLogUnavailable):
            await log.append(events[100:])
        assert time.monotonic() - started < 5.0 + 3.0
        started = time.monotonic()
        with pytest.raises(EventLogUnavailable):
            await asyncio.to_thread(log.append_sync, events[100:])
        assert time.monotonic() - started < 5.0 + 3.0

        fresh = KafkaEventLog(url, timeout=3.0)  # one that never reached the broker fails alike
        try:
            with pytest.raises(EventLogUnavailable):
                await fresh.append(events[100:])
            with pytest.raises(EventLogUnavailable):
                await fresh.head()
        finally:
            await fresh.close()

        # Back up: the same log recovers, and the refused batches left nothing committed.
        await asyncio.to_thread(launcher.up, ("kafka",), home)
        assert len(await log.append(events[100:])) == 100
        records = await read_topic(base.removeprefix("kafka://"), log.config.topic, 200)
        assert sorted(orjson.loads(r.value)["event_id"] for r in records) == sorted(
            e["event_id"] for e in events)
    finally:
        await log.close()


def test_url_options() -> None:
    log = KafkaEventLog("kafka://a:1,b:2?topic=t&partitions=6&replication=3&compression=gzip")
    assert (log.config.bootstrap, log.config.topic, log.config.dead_letter_topic) == ("a:1,b:2", "t", "t.dlq")
    assert (log.config.partitions, log.config.replication, log.config.compression) == (6, 3, "gzip")
    assert KafkaEventLog("kafka://a:1").config.topic == "modeldb.events"
    with pytest.raises(ValueError, match="unknown option"):
        KafkaEventLog("kafka://a:1?topics=x")
