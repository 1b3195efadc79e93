"""The writer: validate a batch whole, stamp it, append it. Nothing partial, ever."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from modeldb.event_schema import InvalidBatch, InvalidEvent
from modeldb.event_schema.codec import stored_form
from modeldb.event_schema.types import GOVERNED_KINDS, GOVERNED_TYPES
from modeldb.writer.log import EventLog
from modeldb.writer.sync import run_sync
from modeldb.writer.vault import Vault

DEFAULT_MAX_BATCH = 10_000


class BatchTooLarge(ValueError):
    pass


class Writer:
    def __init__(self, log: EventLog, *, max_batch: int = DEFAULT_MAX_BATCH, vault: Vault | None = None):
        self.log = log
        self.max_batch = max_batch
        self.vault = vault

    def prepare(self, items: Sequence[Any], actor: str, *, governed: bool = True) -> list[dict[str, Any]]:
        """Validate every event and stamp actor and recorded_at; raise naming each bad one.

        `governed=False` refuses events of the registry's aggregates (models, deployments,
        environments, webhooks) and redactions: from outside, those enter only as commands,
        which check them against the aggregate's state (modeldb.writer.commands).

        Values marked sensitive are still in clear in what this returns: `seal` (or
        `seal_sync`) encrypts them, and must run before the forms are appended.
        """
        if len(items) > self.max_batch:
            raise BatchTooLarge(f"batch of {len(items)} events exceeds the limit of {self.max_batch}")
        now = datetime.now(UTC)
        stored, errors = [], []
        for i, item in enumerate(items):
            try:
                form = stored_form(item, actor=actor, recorded_at=now)
                if form.get("sensitive") and self.vault is None:
                    raise InvalidEvent("this writer has no key store, so it cannot accept values "
                                       "marked sensitive", event_id=form["event_id"])
                if not governed and (form["aggregate"]["kind"] in GOVERNED_KINDS
                                     or form["type"] in GOVERNED_TYPES):
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

    async def seal(self, stored: list[dict[str, Any]]) -> None:
        """Encrypt the sensitive values of prepared forms in place (see writer/vault.py)."""
        if self.vault is not None and any(f.get("sensitive") for f in stored):
            await self.vault.seal(stored)
            _check_sealed(stored)

    def seal_sync(self, stored: list[dict[str, Any]]) -> None:
        if self.vault is not None and any(f.get("sensitive") for f in stored):
            run_sync(self.vault.seal(stored))
            _check_sealed(stored)

    async def ingest(self, items: Sequence[Any], actor: str, *, governed: bool = True) -> list[int]:
        """Validate, stamp, seal and append a batch atomically; the positions it got."""
        if not items:
            return []
        stored = self.prepare(items, actor, governed=governed)
        await self.seal(stored)
        return await self.log.append(stored)


def _check_sealed(stored: list[dict[str, Any]]) -> None:
    # A sealed value is longer than the value: it must still fit the payload's limits.
    from modeldb.event_schema import decode

    errors = []
    for i, form in enumerate(stored):
        if form.get("sensitive"):
            try:
                decode(form)
            except InvalidEvent as exc:
                errors.append(InvalidEvent(f"a sensitive value is too long to seal: {exc.reason}",
                                           event_id=form["event_id"]).at(i))
    if errors:
        raise InvalidBatch(errors)
