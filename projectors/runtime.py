"""The projector runtime: pull batches from the log, apply each in one transaction with its
checkpoint, commit to the log only after, and offer "wait until position N is applied"."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from modeldb.event_schema import RecordedEvent
from modeldb.projectors.base import CheckpointMoved, Projection
from modeldb.writer.log import Batch, Checkpoint, EventLog, Subscription, reached
from modeldb.writer.vault import Vault

log = logging.getLogger("modeldb.projectors")


class ProjectorRuntime:
    def __init__(
        self,
        log: EventLog,
        projection: Projection,
        *,
        batch_size: int = 5000,
        max_wait: float = 0.2,
        reveal: Vault | None = None,
    ):
        self.log = log
        self.projection = projection
        # Projections see sensitive values decrypted (or redacted); the audit store keeps
        # what the log holds, so its hashes never depend on a key.
        self.vault = None if projection.reads_sealed else reveal
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.checkpoint: Checkpoint = {}
        self.applied = 0
        self._progress = asyncio.Condition()

    async def _step(self, subscription: Subscription, max_wait: float | None = None) -> int:
        wait = self.max_wait if max_wait is None else max_wait
        batch = await subscription.next_batch(self.batch_size, wait)
        if not batch.events and reached(self.checkpoint, batch.checkpoint):
            return 0
        # A batch without events can still move the checkpoint (past Kafka's transaction
        # markers or dead-lettered records): store that too, or waiters never see the head.
        await self.projection.apply(await self._revealed(batch))
        await subscription.commit(batch)
        await self._advanced(batch)
        return len(batch.events)

    async def _revealed(self, batch: Batch) -> Batch:
        if self.vault is None or not any(e.raw.get("sensitive") for e in batch.events):
            return batch
        raws = await self.vault.reveal([e.raw for e in batch.events])
        events = [RecordedEvent(e.position, raw, e.partition)
                  for e, raw in zip(batch.events, raws, strict=True)]
        return Batch(events, batch.checkpoint, batch.after)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the log until `stop` is set; a failing batch is retried, never skipped."""
        await self.projection.setup()
        self.checkpoint = await self.projection.load_checkpoint() or {}
        async with self._progress:
            self._progress.notify_all()  # waiters may already be satisfied by the stored one
        subscription = self.log.subscribe(self.projection.name, self.checkpoint)
        try:
            while not stop.is_set():
                try:
                    await self._step(subscription)
                except CheckpointMoved:
                    subscription = await self._resubscribe(subscription)
                except Exception:
                    log.exception("projection %s failed a batch; retrying", self.projection.name)
                    await asyncio.sleep(1.0)
                    subscription = await self._resubscribe(subscription)
        finally:
            await subscription.close()

    async def _resubscribe(self, subscription: Subscription) -> Subscription:
        """A new cursor from the stored checkpoint (after a failed or superseded batch)."""
        await subscription.close()
        self.checkpoint = await self.projection.load_checkpoint() or {}
        return self.log.subscribe(self.projection.name, self.checkpoint)

    async def catch_up(self, on_progress: Callable[[int], None] | None = None) -> int:
        """Apply everything in the log now, then return how many events were applied."""
        await self.projection.setup()
        return await self._read_to_end(on_progress)

    async def _read_to_end(self, on_progress: Callable[[int], None] | None) -> int:
        self.checkpoint = await self.projection.load_checkpoint() or {}
        subscription = self.log.subscribe(self.projection.name, self.checkpoint)
        total = 0
        try:
            while True:
                try:
                    applied = await self._step(subscription, max_wait=0.0)
                except CheckpointMoved:  # another process caught up too: go on from there
                    subscription = await self._resubscribe(subscription)
                    continue
                total += applied
                if on_progress and applied:
                    on_progress(applied)
                if not applied and await subscription.caught_up():
                    return total
        finally:
            await subscription.close()

    async def rebuild(self, on_progress: Callable[[int], None] | None = None) -> int:
        """Drop the projection and build it again from position zero."""
        return await rebuild_together(self.log, [self], on_progress, batch_size=self.batch_size)

    async def _advanced(self, batch: Batch) -> None:
        """Record that `batch` was applied (by this runtime or a shared rebuild) and wake waiters."""
        self.checkpoint = {**self.checkpoint, **batch.checkpoint}
        self.applied += len(batch.events)
        async with self._progress:
            self._progress.notify_all()

    async def wait_until(self, target: Checkpoint, timeout: float = 10.0) -> bool:
        """Wait until this projection has applied the log up to `target`; False on timeout."""
        async def until_reached() -> None:
            async with self._progress:
                await self._progress.wait_for(lambda: reached(self.checkpoint, target))

        try:
            await asyncio.wait_for(until_reached(), timeout)
        except TimeoutError:
            return False
        return True


async def rebuild_together(
    log: EventLog,
    runtimes: Sequence[ProjectorRuntime],
    on_progress: Callable[[int], None] | None = None,
    *,
    batch_size: int = 10_000,
) -> int:
    """Drop several projections and rebuild them in one pass over the log: each batch is read
    and decoded once, then applied by every projection in turn (each in its own transaction,
    with its own checkpoint, exactly as its runtime would). Returns the events read."""
    if not runtimes:
        return 0
    for runtime in runtimes:
        await runtime.projection.setup()
        # Before the reset: emptying tables without their indexes is faster too.
        await runtime.projection.prepare_rebuild()
        await runtime.projection.reset()
        runtime.checkpoint = {}
    try:
        with _fewer_collections():
            return await _read_into(log, runtimes, on_progress, batch_size)
    finally:
        for runtime in runtimes:
            await runtime.projection.finish_rebuild()


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """A rebuild decodes and folds hundreds of thousands of objects per batch, acyclic and
    alive until the batch is written. The cyclic garbage collector, run every 700
    allocations, kept promoting and rescanning them: about a fifth of a replay's time (and
    half of reading the log). While a rebuild runs, it runs every 100,000 allocations."""
    before = gc.get_threshold()
    gc.set_threshold(100_000, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


async def _read_into(log: EventLog, runtimes: Sequence[ProjectorRuntime],
                     on_progress: Callable[[int], None] | None, batch_size: int) -> int:
    # One cursor for all: the projections keep their checkpoints in their own stores, so the
    # log's consumer group (named after the first) is only where the read position is kept.
    subscription = log.subscribe(runtimes[0].projection.name, {})
    total = 0
    try:
        while True:
            batch = await subscription.next_batch(batch_size, 0.0)
            if not batch.events and reached(runtimes[0].checkpoint, batch.checkpoint):
                if await subscription.caught_up():
                    return total
                continue
            revealed: dict[int, Batch] = {}  # one reveal per vault, shared
            for runtime in runtimes:
                key = id(runtime.vault)
                if key not in revealed:
                    revealed[key] = await runtime._revealed(batch)
                await runtime.projection.apply(revealed[key])
            await subscription.commit(batch)
            for runtime in runtimes:
                await runtime._advanced(batch)
            total += len(batch.events)
            if on_progress and batch.events:
                on_progress(len(batch.events))
    finally:
        await subscription.close()
