"""The envelope every event travels in, and the ids it carries."""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import BaseModel

if TYPE_CHECKING:
    from collections.abc import Mapping

_uuid7_lock = threading.Lock()
_uuid7_last = 0


def _reset_after_fork() -> None:
    # A fork may happen while another thread holds the lock; the child must not inherit it.
    global _uuid7_lock
    _uuid7_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def uuid7() -> str:
    """A time-ordered UUIDv7 (RFC 9562), monotonic within this process.

    Python 3.11 has no uuid.uuid7; ids sort by creation time, which keeps B-tree inserts
    local and lets a reader see at a glance which event came first.
    """
    global _uuid7_last
    with _uuid7_lock:
        ms = time.time_ns() // 1_000_000
        rand = int.from_bytes(os.urandom(10), "big")
        # 12 bits of "rand_a" double as a counter so ids made in one millisecond still sort.
        candidate = (ms << 12) | (rand >> 68)
        if candidate <= _uuid7_last:
            candidate = _uuid7_last + 1
        _uuid7_last = candidate
    ms, rand_a = candidate >> 12, candidate & 0xFFF
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


class Aggregate(NamedTuple):
    """What an event is about; `id` is the Kafka key, so one aggregate's events stay ordered."""

    kind: str
    id: str


@dataclass(frozen=True, slots=True)
class Event:
    """One immutable fact. `payload` is the typed model of `type` at its current version."""

    event_id: str
    type: str
    aggregate: Aggregate
    payload: BaseModel
    occurred_at: datetime
    schema_version: int
    source: str = "sdk"
    recorded_at: datetime | None = None
    actor: str | None = None
    # Payload paths ("params.email") whose values are sealed in the log (writer/vault.py).
    sensitive: tuple[str, ...] = ()

    def stamped(self, actor: str, recorded_at: datetime | None = None) -> Event:
        """The writer's copy: actor and recorded_at come from the server, never the client."""
        return Event(
            event_id=self.event_id,
            type=self.type,
            aggregate=self.aggregate,
            payload=self.payload,
            occurred_at=self.occurred_at,
            schema_version=self.schema_version,
            source=self.source,
            recorded_at=recorded_at or datetime.now(UTC),
            actor=actor,
            sensitive=self.sensitive,
        )


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as the log holds it: its position and the exact stored wire form.

    `raw` is what was appended (at the schema version it was written with); `event`
    decodes and upcasts it on first use, so the audit projection can keep the verbatim
    bytes while the other projections see today's schema.
    """

    position: int
    raw: Mapping[str, Any]
    partition: int = 0
    _event: list[Event] = field(default_factory=list, repr=False, compare=False)

    @property
    def event(self) -> Event:
        if not self._event:
            from modeldb.event_schema.codec import decode

            self._event.append(decode(self.raw))
        return self._event[0]


def new_event(
    type: str,
    aggregate_id: str,
    payload: Mapping[str, Any] | BaseModel,
    *,
    source: str = "sdk",
    occurred_at: datetime | None = None,
    event_id: str | None = None,
    sensitive: tuple[str, ...] = (),
) -> Event:
    """Build a validated event of the current schema version of `type`."""
    from modeldb.event_schema.types import event_type

    spec = event_type(type)
    model = payload if isinstance(payload, BaseModel) else spec.payload.model_validate(payload)
    return Event(
        event_id=event_id or uuid7(),
        type=type,
        aggregate=Aggregate(spec.aggregate_kind, aggregate_id),
        payload=model,
        occurred_at=occurred_at or datetime.now(UTC),
        schema_version=spec.version,
        source=source,
        sensitive=tuple(sensitive),
    )
