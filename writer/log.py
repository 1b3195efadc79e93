"""The EventLog port: what every log adapter (SQLite, Kafka) offers.

A ladder of abilities, each fully abstract: append a batch atomically and durably; read
the whole log in order (for replay and audit); subscribe as a named consumer group that
resumes from a checkpoint the consumer stores itself, in its own transaction. A log that can
also read one aggregate's events and append only if nobody appended to it meanwhile
(`AggregateLog`, the SQLite log) backs registry commands with optimistic concurrency.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modeldb.event_schema import Aggregate, RecordedEvent

# Opaque to consumers: {"position": last applied} on SQLite, {"<partition>": next offset} on
# Kafka. Either way a larger number per key is further along.
Checkpoint = dict[str, int]


def reached(checkpoint: Checkpoint, target: Checkpoint) -> bool:
    return all(checkpoint.get(part, 0) >= position for part, position in target.items())


class EventLogUnavailable(ConnectionError):
    """The log did not take a batch (broker away, database locked past its timeout, disk
    full); nothing of it may be assumed stored.

    The caller should answer "try again later" (HTTP 503) or spool and retry; a retried
    batch may end up stored twice, which projections absorb by event_id.
    """


class EventTooLarge(ValueError):
    """One event is larger than the log accepts (Kafka: its max message size)."""


@dataclass(frozen=True)
class Batch:
    events: list[RecordedEvent]
    checkpoint: Checkpoint  # where to resume after this batch is applied
    # Where the cursor stood before this batch, from a log that holds each event_id once, at
    # one position (SQLite). The batch is then exactly the events between `after` and
    # `checkpoint`, so a consumer applies it once by moving its stored checkpoint from `after`
    # (compare-and-set) and needs no memory of event ids. None (Kafka): a retried append may
    # have stored an event twice, so consumers skip event ids they applied before.
    after: Checkpoint | None = None


class Subscription(ABC):
    """One consumer group's cursor over the log."""

    @abstractmethod
    async def next_batch(self, max_events: int, max_wait: float) -> Batch:
        """Up to max_events events after the cursor; empty if none came within max_wait s."""

    @abstractmethod
    async def commit(self, batch: Batch) -> None:
        """Tell the log the batch is applied (after the consumer's own transaction)."""

    @abstractmethod
    async def caught_up(self) -> bool:
        """True when the cursor has reached the log's end as of now."""

    @abstractmethod
    async def close(self) -> None: ...


class EventLog(ABC):
    """An append-only, totally ordered (per partition) log of stored-form events."""

    url: str

    @abstractmethod
    async def append(self, events: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append validated, stamped events in one atomic, durable step; their positions.

        An event whose event_id is already in the log is not stored again where the log
        can tell (SQLite); its existing position is returned.
        """

    @abstractmethod
    async def head(self) -> Checkpoint:
        """The checkpoint a consumer reaches once it has consumed everything appended so far."""

    @abstractmethod
    def subscribe(self, group: str, checkpoint: Checkpoint | None) -> Subscription:
        """A cursor for consumer `group`, resuming after `checkpoint` (None: from the start)."""

    @abstractmethod
    async def close(self) -> None: ...


class ConcurrencyConflict(Exception):
    """An aggregate moved on between reading it and appending to it; nothing was appended."""

    def __init__(self, aggregate: Aggregate, expected: int, actual: int):
        self.aggregate, self.expected, self.actual = aggregate, expected, actual
        super().__init__(f"{aggregate.kind} {aggregate.id!r} is at version {actual}, "
                         f"not {expected}: someone else changed it first")


class AggregateStore(ABC):
    """One aggregate's events, and an append that succeeds only on the version it was read at.

    The version of an aggregate is the number of its events. Registry commands read it,
    decide against the state those events fold into, and append with `append_if`, so two
    commands racing on one aggregate cannot both succeed.
    """

    @abstractmethod
    async def read_aggregate(self, aggregate: Aggregate) -> list[RecordedEvent]:
        """Every event of one aggregate (kind and id), in log order."""

    @abstractmethod
    async def append_if(
        self, aggregate: Aggregate, expected_version: int, events: Sequence[Mapping[str, Any]]
    ) -> list[int]:
        """Append atomically if `aggregate` still has `expected_version` events, else raise
        ConcurrencyConflict; the events must all belong to `aggregate`."""


class AggregateLog(EventLog, AggregateStore):
    """An event log that is its own aggregate store (reads and conditional appends in one
    transaction)."""


def open_event_log(url: str) -> EventLog:
    """A SQLite file path (or sqlite:///path) for the embedded log, kafka://host:port for Kafka."""
    if url.startswith("kafka://"):
        from modeldb.writer.kafka_log import KafkaEventLog

        return KafkaEventLog(url)
    from modeldb.writer.sqlite_log import SQLiteEventLog

    return SQLiteEventLog(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
