"""The Kafka event log: one topic keyed by aggregate id, appended in transactions, read by
consumer groups whose projections keep their own checkpoints.

URL: ``kafka://host:port[,host2:port][?topic=modeldb.events&partitions=3&replication=1]``
(also ``compression=zstd|lz4|snappy|gzip|none``; zstd when cramjam is installed, else none).
The topic and its dead-letter topic ``<topic>.dlq`` are created on first use with unlimited
retention.

Writing: every append is one Kafka transaction, so a batch that spans partitions becomes
visible to ``read_committed`` consumers whole or not at all. Concurrent appends are merged
into one transaction (group commit); an append returns only after the broker acknowledged
the records and the transaction committed, and raises `EventLogUnavailable` when that did
not happen within a bounded time. aiokafka clients are bound to the event loop that made
them, so the producer lives on a private loop in a thread owned by the log: async callers on
any loop and plain threads (`append_sync`) share it.

Reading: a subscription is one consumer of a consumer group. The checkpoint the projection
stores beside its read model is authoritative; Kafka's committed offsets only fill gaps and
show lag. Offsets are not dense: transaction markers and dead-lettered records take offsets
too, which is why checkpoints come from ``consumer.position()`` rather than ``offset + 1``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.codec import has_lz4, has_snappy, has_zstd
from aiokafka.errors import KafkaError, for_code
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord

from modeldb.event_schema import InvalidEvent, RecordedEvent
from modeldb.writer.log import (
    Batch,
    Checkpoint,
    EventLog,
    EventLogUnavailable,
    EventTooLarge,
    Subscription,
)

log = logging.getLogger("modeldb.writer.kafka")

T = TypeVar("T")

DEFAULT_TOPIC = "modeldb.events"
DEFAULT_TIMEOUT = 10.0  # seconds an append may take before the caller is told the log is away
MAX_EVENT_BYTES = 1_000_000  # the broker's default max.message.bytes, less headroom
MAX_TRANSACTION_EVENTS = 20_000  # group commit stops merging batches here
JOIN_WAIT = 30.0  # how long a first next_batch waits for the group to hand out partitions
_TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS
_COMPRESSIONS = {"lz4": has_lz4, "zstd": has_zstd, "snappy": has_snappy, "gzip": lambda: True}



def _unavailable(error: BaseException, what: str) -> EventLogUnavailable:
    if isinstance(error, EventLogUnavailable):
        return error
    return EventLogUnavailable(f"{what}: {error!r}")


def _default_compression() -> str | None:
    # zstd appended fastest in bench/kafka_throughput.py (fewer bytes for the broker to take in
    # than none, cheaper than gzip at aiokafka's level 9); its codec comes from cramjam.
    return "zstd" if has_zstd() else None


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str  # host:port[,host:port]
    topic: str = DEFAULT_TOPIC
    partitions: int = 3
    replication: int = 1
    compression: str | None = None

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}.dlq"

    @classmethod
    def parse(cls, url: str) -> KafkaConfig:
        parts = urlsplit(url)
        if parts.scheme != "kafka" or not parts.netloc:
            raise ValueError(f"a Kafka event log URL is kafka://host:port[?topic=…], not {url!r}")
        options = dict(parse_qsl(parts.query, strict_parsing=bool(parts.query)))
        unknown = options.keys() - {"topic", "partitions", "replication", "compression"}
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))} in {url!r}")
        compression = options.get("compression", _default_compression())
        if compression in ("none", ""):
            compression = None
        if compression is not None and not _COMPRESSIONS.get(compression, lambda: False)():
            raise ValueError(f"compression {compression!r} is unknown or its library (cramjam) "
                             "is not installed")
        return cls(
            bootstrap=parts.netloc,
            topic=options.get("topic", DEFAULT_TOPIC),
            partitions=int(options.get("partitions", 3)),
            replication=int(options.get("replication", 1)),
            compression=compression,
        )


async def ensure_topics(config: KafkaConfig, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Create the event topic and its dead-letter topic if missing; the event topic's
    partition count (an existing topic keeps the count it was created with)."""
    settings = {
        "retention.ms": "-1",  # the log is the system of record: never expire it
        "retention.bytes": "-1",
        # With replicas to spare, an acknowledged batch is on two brokers before acks=all returns.
        "min.insync.replicas": "1" if config.replication == 1 else "2",
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap,
                                request_timeout_ms=int(timeout * 1000))
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            topics = [NewTopic(name, config.partitions, config.replication, topic_configs=settings)
                      for name in (config.topic, config.dead_letter_topic)]
            response = await admin.create_topics(topics)
            codes = {name: code for name, code, _ in response.topic_errors}
            for name, code, message in response.topic_errors:
                if code not in (0, _TOPIC_EXISTS):
                    raise for_code(code)(f"creating topic {name}: {message}")
            if codes[config.topic] == 0:
                return config.partitions
            # Metadata of a topic created moments ago by someone else may not list its
            # partitions yet.
            while not (partitions := (await admin.describe_topics([config.topic]))[0]["partitions"]):
                await asyncio.sleep(0.1)
            return len(partitions)
    except (TimeoutError, KafkaError, OSError) as error:
        raise _unavailable(error, f"Kafka at {config.bootstrap} did not answer") from error
    finally:
        await admin.close()


class _LoopThread:
    """A private event loop in a daemon thread, so the log's producer outlives any one caller's
    loop (asyncio.run in tests and tools, the SDK's worker thread)."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        async def cancel_leftovers() -> None:
            # Tasks of a producer abandoned while the broker was away; cancelled, they end
            # quietly instead of being reported as destroyed while pending.
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=2)

        with contextlib.suppress(Exception):
            self.submit(cancel_leftovers()).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class KafkaEventLog(EventLog):
    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT):
        self.url = url
        self.config = KafkaConfig.parse(url)
        self.timeout = timeout
        self._partition_count: int | None = None
        self._start_afresh()

    def _start_afresh(self) -> None:
        self._pid = os.getpid()
        # Unique per log object and process: a transactional id names one producer, and a
        # second live producer with the same id would fence the first.
        self.transactional_id = f"modeldb-writer-{socket.gethostname()}-{self._pid}-{uuid.uuid4().hex[:8]}"
        self._io: _LoopThread | None = None
        self._io_lock = threading.Lock()
        # Owned by the private loop:
        self._producer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._pending: list[tuple[list[tuple[bytes, bytes]], asyncio.Future[list[int]]]] = []
        self._writer: asyncio.Task[None] | None = None
        # Per partition, one past the last offset this log appended: the coordinator writes
        # commit markers after the commit returns, so the last stable offset can lag behind
        # what this process already acknowledged, and head() must not.
        self._appended: dict[int, int] = {}

    # -- the private loop -------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._pid != os.getpid():
            # A forked child has no copy of the loop thread, and its clients' sockets are the
            # parent's: leave those alone and start over, under a transactional id of its own.
            self._start_afresh()
        with self._io_lock:
            if self._io is None:
                self._io = _LoopThread(f"kafka-log-{self.config.topic}")
            return self._io.submit(coro)

    async def _topics(self) -> int:
        if self._partition_count is None:
            self._partition_count = await ensure_topics(self.config, self.timeout)
        return self._partition_count

    # -- appending --------------------------------------------------------------------------

    async def append(self, events: Sequence[Mapping[str, Any]]) -> list[int]:
        if not events:
            return []
        records = _encode(events)
        return await asyncio.wrap_future(self._run(self._append(records)))

    def append_sync(self, events: Sequence[Mapping[str, Any]]) -> list[int]:
        """`append` for threads without an event loop (the SDK's worker)."""
        if not events:
            return []
        records = _encode(events)
        return self._run(self._append(records)).result()

    async def _append(self, records: list[tuple[bytes, bytes]]) -> list[int]:
        waiter: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.append((records, waiter))
        if self._writer is None or self._writer.done():
            # One writer task, not the caller's: a cancelled caller must not cancel a
            # transaction that also carries other callers' batches.
            self._writer = asyncio.create_task(self._write_pending())
        try:
            # Bounded from the call, queueing behind a stuck transaction included.
            return await asyncio.wait_for(asyncio.shield(waiter), self.timeout)
        except asyncio.CancelledError:
            waiter.cancel()  # the caller gave up; the batch may still land, as after a timeout
            raise
        except TimeoutError:
            waiter.cancel()  # nobody waits for it any more
            # Not sent yet: drop it. One already in flight may still land.
            self._pending = [p for p in self._pending if p[1] is not waiter]
            raise EventLogUnavailable(f"Kafka at {self.config.bootstrap} did not accept the batch "
                                      f"within {self.timeout:g} s") from None

    async def _write_pending(self) -> None:
        while self._pending:
            group: list[tuple[list[tuple[bytes, bytes]], asyncio.Future[list[int]]]] = []
            size = 0
            while self._pending and (not group or size + len(self._pending[0][0]) <= MAX_TRANSACTION_EVENTS):
                item = self._pending.pop(0)
                group.append(item)
                size += len(item[0])
            await self._commit(group)

    async def _commit(self, group: list[tuple[list[tuple[bytes, bytes]], asyncio.Future[list[int]]]]) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                producer = await self._started_producer()
                await producer.begin_transaction()
                offsets = await self._send([r for records, _ in group for r in records], producer)
                await producer.commit_transaction()
        except Exception as error:
            if isinstance(error, TimeoutError | KafkaError | OSError):
                error = _unavailable(error, f"Kafka at {self.config.bootstrap} did not accept the "
                                            f"batch within {self.timeout:g} s")
            for _, waiter in group:
                if not waiter.done():
                    waiter.set_exception(error)
            # After the callers heard: cleaning up must not stretch their bounded wait.
            await self._discard_producer()
            return
        start = 0
        for records, waiter in group:
            if not waiter.done():
                waiter.set_result(offsets[start : start + len(records)])
            start += len(records)

    async def _send(self, records: list[tuple[bytes, bytes]], producer: AIOKafkaProducer) -> list[int]:
        """Send the records in record batches built here; their offsets once all are acked.

        Building the batches directly costs a fraction of one `send()` per record, which was
        most of the client's time per event.
        """
        count = await self._topics()
        offsets = [0] * len(records)
        builders: dict[int, Any] = {}
        members: dict[int, list[tuple[int, int]]] = {}  # per open builder: (record index, offset in batch)
        sent: list[tuple[int, list[tuple[int, int]], asyncio.Future[Any]]] = []

        async def ship(partition: int) -> None:
            future = await producer.send_batch(builders.pop(partition), self.config.topic,
                                               partition=partition)
            sent.append((partition, members.pop(partition), future))

        for index, (key, value) in enumerate(records):
            partition = _partition_of(key, count)
            builder = builders.get(partition)
            meta = builder.append(key=key, value=value, timestamp=None) if builder else None
            if meta is None:
                if builder is not None:
                    await ship(partition)
                builder = builders[partition] = producer.create_batch()
                members[partition] = []
                meta = builder.append(key=key, value=value, timestamp=None)
            members[partition].append((index, meta.offset))
        for partition in list(builders):
            await ship(partition)
        # Every batch acknowledged (acks=all) before the commit makes them visible.
        for partition, batch_members, future in sent:
            base = (await future).offset
            for index, delta in batch_members:
                offsets[index] = base + delta
            end = base + batch_members[-1][1] + 1
            self._appended[partition] = max(self._appended.get(partition, 0), end)
        return offsets

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            await self._topics()
            producer = AIOKafkaProducer(
                bootstrap_servers=self.config.bootstrap,
                client_id=self.transactional_id,
                transactional_id=self.transactional_id,
                enable_idempotence=True,
                acks="all",
                compression_type=self.config.compression,
                # _send builds whole record batches itself, so nothing gains from lingering;
                # large ones save produce requests (the broker takes up to 1 MiB per batch).
                linger_ms=0,
                max_batch_size=960 * 1024,
                request_timeout_ms=int(self.timeout * 1000),
            )
            self._producer = producer  # before start(), so a failed start is discarded too
            await producer.start()
        return self._producer

    async def _discard_producer(self) -> None:
        # A producer that failed mid-transaction is not reused. Its open transaction would hold
        # back every read_committed consumer of its partitions until it times out: abort it if
        # the broker still answers; if not, the next producer, with the same transactional id,
        # fences this one and the broker aborts what it left open.
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.abort_transaction(), 2.0)
        except Exception:  # no transaction open, or the broker is away
            log.debug("aborting the transaction of a failed producer", exc_info=True)
        try:
            await asyncio.wait_for(producer.stop(), 2.0)
        except Exception:
            # stop() flushes first, which cannot finish while the broker is away; the sender
            # would then wake up when the broker is back and race the producer that replaced
            # this one. aiokafka has no public way to drop unsent data, hence the private field.
            sender_task = producer._sender.sender_task
            if sender_task is not None:
                sender_task.cancel()
            await producer.client.close()

    # -- reading ----------------------------------------------------------------------------

    async def head(self) -> Checkpoint:
        return await asyncio.wrap_future(self._run(self._head()))

    async def _head(self) -> Checkpoint:
        try:
            async with asyncio.timeout(self.timeout):
                count = await self._topics()
                if self._reader is None:
                    self._reader = AIOKafkaConsumer(bootstrap_servers=self.config.bootstrap,
                                                    isolation_level="read_committed")
                    await self._reader.start()
                partitions = [TopicPartition(self.config.topic, p) for p in range(count)]
                ends = await self._reader.end_offsets(partitions)
        except (TimeoutError, KafkaError, OSError) as error:
            raise _unavailable(error, f"Kafka at {self.config.bootstrap} did not answer") from error
        return {str(tp.partition): offset for tp, offset in self._with_own_appends(ends).items()}

    def _with_own_appends(self, ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """End offsets no lower than what this process already appended (read-your-writes)."""
        return {tp: max(end, self._appended.get(tp.partition, 0)) for tp, end in ends.items()}

    def subscribe(self, group: str, checkpoint: Checkpoint | None) -> KafkaSubscription:
        return KafkaSubscription(self, group, checkpoint)

    async def records(self) -> AsyncIterator[RecordedEvent]:
        """Every event in the log, partition by partition in offset order, as subscriptions
        hand them out (dead letters left out): what `modeldb verify` compares the audit with."""
        count = await self._topics()
        consumer = AIOKafkaConsumer(bootstrap_servers=self.config.bootstrap, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="earliest",
                                    max_partition_fetch_bytes=8 * 1024 * 1024)
        await consumer.start()
        try:
            for partition in range(count):
                tp = TopicPartition(self.config.topic, partition)
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                end = self._with_own_appends(await consumer.end_offsets([tp]))[tp]
                while await consumer.position(tp) < end:
                    fetched = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
                    events, _ = await asyncio.to_thread(_decode, fetched.get(tp, []))
                    for event in events:
                        yield event
        finally:
            await consumer.stop()

    # -- closing ----------------------------------------------------------------------------

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        with self._io_lock:
            io, self._io = self._io, None
        if io is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), io.loop).result(self.timeout + 5)
        except Exception:
            log.warning("closing the Kafka event log did not finish cleanly", exc_info=True)
        io.stop()

    async def _shutdown(self) -> None:
        if self._writer is not None:
            await asyncio.wait([self._writer], timeout=self.timeout)
        await self._discard_producer()
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None


def _encode(events: Sequence[Mapping[str, Any]]) -> list[tuple[bytes, bytes]]:
    """(key, value) per event; the aggregate id as key keeps one aggregate in one partition."""
    records = []
    for event in events:
        value = orjson.dumps(event)
        if len(value) > MAX_EVENT_BYTES:
            raise EventTooLarge(f"event {event['event_id']} is {len(value)} bytes; the Kafka log "
                             f"takes at most {MAX_EVENT_BYTES}")
        records.append((event["aggregate"]["id"].encode(), value))
    return records


def _decode(records: list[ConsumerRecord]) -> tuple[list[RecordedEvent], list[tuple[ConsumerRecord, str]]]:
    """The records as events, and those that are no event with the reason why."""
    events: list[RecordedEvent] = []
    rejected: list[tuple[ConsumerRecord, str]] = []
    for record in records:
        try:
            recorded = RecordedEvent(position=record.offset, partition=record.partition,
                                     raw=orjson.loads(record.value))
            recorded.event  # noqa: B018 - decoded now (and cached) so bad records go aside
            events.append(recorded)
        except (orjson.JSONDecodeError, InvalidEvent, TypeError) as error:
            rejected.append((record, str(error) or type(error).__name__))
    return events, rejected


@functools.lru_cache(maxsize=65536)
def _partition_of(key: bytes, partitions: int) -> int:
    # The Java client's (and aiokafka's) murmur2 choice, so every producer of the topic
    # agrees; cached because it is pure Python and one run's events share a key.
    return DefaultPartitioner()(key, list(range(partitions)), None)  # type: ignore[no-any-return]


class KafkaSubscription(Subscription):
    """One member of consumer group `group`; lives on the event loop that first uses it."""

    def __init__(self, log: KafkaEventLog, group: str, checkpoint: Checkpoint | None):
        self._log = log
        self._config = log.config
        self.group = group
        # Where this member would resume each partition: the stored checkpoint, advanced by
        # every batch handed out. Kept across rebalances, because aiokafka forgets positions.
        self._positions: Checkpoint = dict(checkpoint or {})
        self._consumer: AIOKafkaConsumer | None = None
        self._dead_letters: AIOKafkaProducer | None = None
        self._assigned = asyncio.Event()

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            await self._log._topics()
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._config.bootstrap,
                group_id=self.group,
                client_id=f"modeldb-{self.group}-{os.getpid()}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                # Larger fetches make larger batches, which the projections write in bulk.
                max_partition_fetch_bytes=8 * 1024 * 1024,
            )
            await consumer.start()
            consumer.subscribe([self._config.topic], listener=_Resume(self, consumer))
            self._consumer = consumer
        return self._consumer

    async def _on_assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        ours = sorted((tp for tp in assigned if tp.topic == self._config.topic),
                      key=lambda tp: tp.partition)
        if not self._positions and ours:
            # An empty store is a new or reset read model (`modeldb replay`): it must see the
            # whole log, whatever this group committed for an earlier read model.
            await consumer.seek_to_beginning(*ours)
        for tp in ours:
            if (position := self._positions.get(str(tp.partition))) is not None:
                consumer.seek(tp, position)
            # else: the group's committed offset, else the earliest (aiokafka's own reset)
        self._assigned.set()

    def partitions(self) -> list[int]:
        """The partitions this member holds now."""
        if self._consumer is None:
            return []
        return sorted(tp.partition for tp in self._consumer.assignment())

    async def next_batch(self, max_events: int, max_wait: float) -> Batch:
        consumer = await self._started()
        if not self._assigned.is_set():
            # Joining the group takes a moment; "nothing within max_wait" means nothing yet.
            try:
                await asyncio.wait_for(self._assigned.wait(), max(max_wait, JOIN_WAIT))
            except TimeoutError:
                return Batch([], self._checkpoint(consumer))
        fetched = await consumer.getmany(timeout_ms=int(max_wait * 1000), max_records=max_events)
        count = sum(map(len, fetched.values()))
        while fetched and count < max_events:
            # Take what the fetcher already holds, without waiting for more.
            more = await consumer.getmany(timeout_ms=0, max_records=max_events - count)
            if not more:
                break
            for tp, records in more.items():
                fetched.setdefault(tp, []).extend(records)
            count += sum(map(len, more.values()))
        # Validating thousands of events takes seconds of CPU: off the loop, so heartbeats
        # and the next fetch go on meanwhile.
        events, rejected = await asyncio.to_thread(_decode, [r for rs in fetched.values() for r in rs])
        for tp in consumer.assignment():
            # Also partitions that yielded no record: skipped transaction markers move them too.
            if tp in fetched or str(tp.partition) in self._positions:
                self._positions[str(tp.partition)] = await consumer.position(tp)
        if rejected:
            await self._dead_letter(rejected)
        return Batch(events, self._checkpoint(consumer))

    def _checkpoint(self, consumer: AIOKafkaConsumer) -> Checkpoint:
        # Every held partition, not just this batch's: the runtime keeps the latest batch's
        # checkpoint as its whole position, and a partition that another member holds now
        # must not be written back with this member's older position.
        held = {str(tp.partition) for tp in consumer.assignment()}
        return {part: pos for part, pos in self._positions.items() if part in held}

    async def _dead_letter(self, rejected: list[tuple[ConsumerRecord, str]]) -> None:
        if self._dead_letters is None:
            producer = AIOKafkaProducer(bootstrap_servers=self._config.bootstrap, acks="all",
                                        enable_idempotence=True)
            await producer.start()
            self._dead_letters = producer
        sent = []
        for record, reason in rejected:
            log.warning("dead-lettering %s[%d]@%d for group %s: %s", record.topic, record.partition,
                        record.offset, self.group, reason)
            headers = [("reason", reason.encode()), ("source_partition", str(record.partition).encode()),
                       ("source_offset", str(record.offset).encode()), ("group", self.group.encode())]
            value = b"" if record.value is None else record.value  # a tombstone has neither
            sent.append(await self._dead_letters.send(self._config.dead_letter_topic, value,
                                                      key=record.key, headers=headers))
        # Stored before the checkpoint moves past them, so a rejected record is never lost.
        await asyncio.gather(*sent)

    async def commit(self, batch: Batch) -> None:
        if self._consumer is None:
            return
        held = self._consumer.assignment()
        offsets = {tp: position for part, position in batch.checkpoint.items()
                   if (tp := TopicPartition(self._config.topic, int(part))) in held}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as error:
            # The projection's own checkpoint is what resumes it; Kafka's copy only shows lag.
            log.warning("group %s could not commit offsets %s: %r", self.group, offsets, error)

    async def caught_up(self) -> bool:
        consumer = await self._started()
        if not self._assigned.is_set():
            return False
        held = list(consumer.assignment())
        if not held:
            return True  # the other members of the group hold every partition
        ends = self._log._with_own_appends(await consumer.end_offsets(held))
        return all([await consumer.position(tp) >= ends[tp] for tp in held])

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()  # leaves the group at once, so the others rebalance now
        producer, self._dead_letters = self._dead_letters, None
        if producer is not None:
            await producer.stop()


class _Resume(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seeks each newly assigned partition to where the projection's store says it is."""

    def __init__(self, subscription: KafkaSubscription, consumer: AIOKafkaConsumer):
        self._subscription = subscription
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None  # nothing to flush: offsets are committed after each applied batch

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._subscription._on_assigned(self._consumer, assigned)
