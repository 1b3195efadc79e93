"""The writer: validate a batch whole, stamp it, append it. Nothing partial, ever."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from modeldb.event_schema import InvalidBatch, InvalidEvent
from modeldb.event_schema.codec import stored_form
from modeldb.event_schema.types import GOVERNED_KINDS
from modeldb.writer.log import EventLog

DEFAULT_MAX_BATCH = 10_000


class BatchTooLarge(ValueError):
    pass


class Writer:
    def __init__(self, log: EventLog, *, max_batch: int = DEFAULT_MAX_BATCH):
        self.log = log
        self.max_batch = max_batch

    def prepare(self, items: Sequence[Any], actor: str, *, governed: bool = True) -> list[dict[str, Any]]:
        """Validate every event and stamp actor and recorded_at; raise naming each bad one.

        `governed=False` refuses events of the registry's aggregates (models, deployments,
        environments, webhooks): from outside, those enter only as registry commands, which
        check them against the aggregate's state (modeldb.writer.commands).
        """
        if len(items) > self.max_batch:
            raise BatchTooLarge(f"batch of {len(items)} events exceeds the limit of {self.max_batch}")
        now = datetime.now(UTC)
        stored, errors = [], []
        for i, item in enumerate(items):
            try:
                form = stored_form(item, actor=actor, recorded_at=now)
                if not governed and form["aggregate"]["kind"] in GOVERNED_KINDS:
                    raise InvalidEvent(
                        f"{form['type']} is a registry event: send it as a registry command "
                        "(POST /api/v1/registry/commands or a GraphQL mutation)",
                        event_id=form["event_id"])
                stored.append(form)
            except InvalidEvent as exc:
                errors.append(exc.at(i))
        if errors:
            raise InvalidBatch(errors)
        return stored

    async def ingest(self, items: Sequence[Any], actor: str, *, governed: bool = True) -> list[int]:
        """Validate, stamp and append a batch atomically; the positions it got."""
        if not items:
            return []
        return await self.log.append(self.prepare(items, actor, governed=governed))
