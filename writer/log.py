"""The EventLog port: what every log adapter (SQLite, Kafka) offers.

A ladder of abilities, each fully abstract: append a batch atomically and durably; read
the whole log in order (for replay and audit); subscribe as a named consumer group that
resumes from a checkpoint the consumer stores itself, in its own transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modeldb.event_schema import RecordedEvent

# Opaque to consumers: {"position": last applied} on SQLite, {"<partition>": next offset} on
# Kafka. Either way a larger number per key is further along.
Checkpoint = dict[str, int]


def reached(checkpoint: Checkpoint, target: Checkpoint) -> bool:
    return all(checkpoint.get(part, 0) >= position for part, position in target.items())


@dataclass(frozen=True)
class Batch:
    events: list[RecordedEvent]
    checkpoint: Checkpoint  # where to resume after this batch is applied


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


def open_event_log(url: str) -> EventLog:
    """A SQLite file path (or sqlite:///path) for the embedded log, kafka://host:port for Kafka."""
    if url.startswith("kafka://"):
        from modeldb.writer.kafka_log import KafkaEventLog

        return KafkaEventLog(url)
    from modeldb.writer.sqlite_log import SQLiteEventLog

    return SQLiteEventLog(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
