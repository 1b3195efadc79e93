"""The background worker: drain the queue, batch by count and time, deliver, retry with
backoff and jitter, spool what cannot be delivered, and resend the spool oldest first.

Delivery order is: artifact files stashed for upload, then spooled batches (oldest
first), then the fresh batch, so the log receives a client's events in the order they
were made, and never an ArtifactLogged before its file. While the target is unreachable
the worker is "offline": fresh batches go straight to the spool and one probe is made
after a growing pause (0.5 s … 5 s); the first success resends everything spooled.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from modeldb._batch import MARKERS, STOP, Batcher, Wire, take
from modeldb._errors import RequestRejected, ServerUnavailable

if TYPE_CHECKING:
    from modeldb._client import Client
    from modeldb._transports import Transport

logger = logging.getLogger("modeldb")
T = TypeVar("T")

IDLE_POLL = 0.05  # how often an idle worker looks at the queue (a deque cannot wake it)
DRAIN_MAX = 20_000  # records taken per pass, so batches are cut and markers seen promptly
PROBE_MIN, PROBE_MAX = 0.5, 5.0
EXIT_MARGIN = 0.25  # left before an exit deadline to write the spool file


def _upload(transport: Transport, path: Path, digest: str, _timeout: float | None) -> None:
    transport.put_artifact(path, digest)


class Waiter:
    """What flush() and close() wait on: set by the worker when it reaches their marker."""

    __slots__ = ("_event", "ok")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.ok = False

    def done(self, ok: bool) -> None:
        self.ok = ok
        self._event.set()

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout) and self.ok


class Worker:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.spool = client.spool
        self.options = client.options
        self.batch = Batcher(client.options, client.guard, self.set_aside_invalid, client.sources)
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._main, name="modeldb-worker", daemon=True)
        self.deadline: float | None = None  # set by stop(): retries end by then
        self.offline_until = 0.0  # 0: online; else monotonic time of the next probe
        self._probe_delay = PROBE_MIN
        self._warned: set[str] = set()
        self._open_chunk: tuple[Any, float] | None = None  # the chunk seen partly written, when
        self.delivered = self.spooled = self.rejected = 0  # events, for tests and curiosity

    # -- control, from other threads --------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def marker(self, kind: int) -> Waiter:
        waiter = Waiter()
        self.client.points.put((kind, waiter))  # behind every point logged so far
        self.wake.set()
        return waiter

    def stop(self, timeout: float) -> bool:
        """Deliver what is queued within `timeout` s, spool the rest, end the thread."""
        self.deadline = time.monotonic() + timeout
        ok = self.marker(STOP).wait(timeout + 1.0) if self.thread.is_alive() else False
        self.thread.join(max(0.0, self.deadline + 1.0 - time.monotonic()))
        return ok

    # -- the loop ---------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._resend_spool(force=True)  # leftovers of earlier processes go first
        except Exception:
            logger.exception("modeldb: resending the spool failed")
        while True:
            try:
                if self._step():
                    return
            except Exception:  # a bug must not kill the worker: everything after would be lost
                logger.exception("modeldb worker: unexpected error; keeping the batch in the spool")
                try:
                    self._save(self.batch.take())
                except Exception:
                    logger.exception("modeldb worker: could not spool the batch")
                time.sleep(IDLE_POLL)

    def _step(self) -> bool:
        """One pass over the queue; True once the STOP marker was handled."""
        self.wake.clear()
        queue, batch = self.client.queue, self.batch
        with self.client.taking:
            records = take(queue, DRAIN_MAX)
        stop = False
        for item in records:
            if item[0] not in MARKERS:
                batch.add(item, time.monotonic())
                if batch.full():
                    self._ship()
                continue
            ok = False
            try:
                ok = self._ship(force=True)
            finally:  # whatever happens, flush() and close() get their answer
                item[1].done(ok)
            stop = stop or item[0] == STOP
        if stop:
            self._ship()  # what was logged after the STOP marker, within the same deadline
            return True
        # The queue is empty, or DRAIN_MAX items were taken and the loop comes straight back.
        if batch and time.monotonic() - (batch.first_at or 0) >= self.options.batch_interval:
            self._ship()
        if queue:
            return False
        if self._seal_idle_points():
            return False
        if (self.spool.maybe_pending or self.spool.maybe_blobs) and self._probe_due():
            self._resend_spool()
        wait = IDLE_POLL
        if batch:
            age = time.monotonic() - (batch.first_at or 0)
            wait = min(wait, self.options.batch_interval - age)
        self.wake.wait(max(wait, 0.001))
        return False

    def _seal_idle_points(self) -> bool:
        """Queue the points of a partly written chunk once it has waited `batch_interval`
        (a full chunk goes by itself); True when it did. Not sooner: while a loop is
        logging, each chunk would hold a few points and a new one be needed."""
        points = self.client.points
        chunk = points.chunk
        if not chunk.n:
            self._open_chunk = None
            return False
        now = time.monotonic()
        if self._open_chunk is None or self._open_chunk[0] is not chunk:
            self._open_chunk = (chunk, now)
            return False
        if now - self._open_chunk[1] < self.options.batch_interval:
            return False
        points.flush()
        self._open_chunk = None
        return True

    def _ship(self, force: bool = False) -> bool:
        """Deliver the current batch; True when nothing of it (or before it) is still owed."""
        events = self.batch.take()
        if not self._resend_spool(force=force):
            self._save(events)  # older batches are waiting: keep the order
            return False
        if not events:
            return True
        owed = self._attempt(events)
        self._save(owed)
        return not owed

    # -- delivery ---------------------------------------------------------------------------

    def _probe_due(self) -> bool:
        return time.monotonic() >= self.offline_until

    def _budget(self) -> float:
        # Offline, one attempt is the probe; online, a batch gets the whole retry budget.
        return 0.0 if self.offline_until else self.options.retry_seconds

    def _limit(self) -> float:
        return self.deadline - EXIT_MARGIN if self.deadline is not None else float("inf")

    def retrying(self, call: Callable[[float | None], T]) -> T:
        """`call(timeout)` until it succeeds or the budget is spent (then ServerUnavailable)."""
        give_up = min(time.monotonic() + self._budget(), self._limit())
        delay = 0.05
        while True:
            remaining = self._limit() - time.monotonic()
            try:
                result = call(remaining if self.deadline is not None else None)
            except ServerUnavailable as exc:
                pause = delay * random.uniform(0.5, 1.5)  # jitter: many clients, no stampede
                if time.monotonic() + pause >= give_up:
                    self._offline(exc)
                    raise
                time.sleep(pause)
                delay = min(delay * 2, 2.0)
                continue
            self._online()
            return result

    def _send(self, events: list[Wire], timeout: float | None) -> None:
        transport = self.client.transport()
        if transport.local:
            with self.client.guard:  # see _client: no fork while SQLite holds its locks
                transport.send(events, timeout)
        else:
            transport.send(events, timeout)

    def _attempt(self, events: list[Wire]) -> list[Wire]:
        """Send with retries; the events still owed (empty: delivered or set aside)."""
        if not events:
            return []
        if self._limit() <= time.monotonic():
            return events
        try:
            self.retrying(lambda timeout: self._send(events, timeout))
        except ServerUnavailable:
            return events
        except RequestRejected as exc:
            return self._refused(events, exc)
        self.delivered += len(events)
        return []

    def _refused(self, events: list[Wire], exc: RequestRejected) -> list[Wire]:
        bad = {i for i in exc.indexes if 0 <= i < len(events)}
        if bad and len(bad) < len(events):
            # The server named the bad events: set those aside, the others are fine.
            self._set_aside([events[i] for i in sorted(bad)], exc)
            return self._attempt([e for i, e in enumerate(events) if i not in bad])
        if exc.status == 413 and len(events) > 1:  # too big: halve until it fits
            half = len(events) // 2
            owed = self._attempt(events[:half])
            return owed + (events[half:] if owed else self._attempt(events[half:]))
        self._set_aside(events, exc)
        return []

    def _resend_spool(self, force: bool = False) -> bool:
        """Upload stashed artifacts and resend spooled batches; True when none is left."""
        spool = self.spool
        if not (spool.maybe_pending or spool.maybe_blobs):
            return True
        if not force and not self._probe_due():
            return False
        if spool.maybe_blobs and not self._upload_blobs():
            return False
        generation = spool.generation
        for path in spool.pending():
            with spool.claim(path) as events:
                if events is None:
                    continue  # gone, or another client is sending it right now
                if self._attempt(events):
                    return False  # the file stays whole; resent events are deduplicated
                spool.done(path)
        if spool.generation == generation:  # nobody spooled meanwhile
            spool.maybe_pending = False
        return True

    def _upload_blobs(self) -> bool:
        transport = self.client.transport()
        for path, digest in self.spool.pending_blobs():
            try:
                self.retrying(functools.partial(_upload, transport, path, digest))
            except ServerUnavailable:
                return False
            except RequestRejected as exc:  # e.g. the stashed copy is damaged: keep it aside
                aside = path.with_name(f"rejected-{path.name}")
                path.replace(aside)
                self._warn("blob", f"ModelDB refused the artifact file {aside}: {exc}")
                continue
            path.unlink(missing_ok=True)
        self.spool.maybe_blobs = False
        return True

    # -- when things go wrong ---------------------------------------------------------------

    def _save(self, events: list[Wire]) -> None:
        if events:
            path = self.spool.write(events)
            self.spooled += len(events)
            logger.debug("modeldb: spooled %d events to %s", len(events), path)

    def _offline(self, exc: Exception) -> None:
        if not self.offline_until:
            self._warn("offline", f"ModelDB at {self.client.target.url} is unavailable ({exc}); "
                       f"keeping events in {self.spool.dir} and retrying in the background")
        self.offline_until = time.monotonic() + self._probe_delay
        self._probe_delay = min(self._probe_delay * 2, PROBE_MAX)

    def _online(self) -> None:
        if self.offline_until:
            logger.info("modeldb: %s is reachable again", self.client.target.url)
            self._warned.discard("offline")
        self.offline_until = 0.0
        self._probe_delay = PROBE_MIN

    def _set_aside(self, events: list[Wire], exc: RequestRejected) -> None:
        path = self.spool.reject(events, exc.message, exc.errors)
        self.rejected += len(events)
        self._warn("rejected", f"ModelDB refused {len(events)} event(s): {exc.message} "
                   f"(kept in {path}; later refusals are logged at INFO)")

    def set_aside_invalid(self, records: list[dict[str, Any]], reason: str) -> None:
        """Items that could not even become events (a bad value): kept, never sent."""
        path = self.spool.reject(records, reason)
        self.rejected += len(records)
        self._warn("rejected", f"ModelDB cannot record {reason} (kept in {path})")

    def _warn(self, topic: str, message: str) -> None:
        # Warn once per topic; a training loop logging a bad value must not flood stderr.
        # logging, not warnings.warn: this runs in a background thread.
        if topic in self._warned:
            logger.info(message)
        else:
            self._warned.add(topic)
            logger.warning(message)
