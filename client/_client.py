"""The one configured client: its queue, worker, transport and spool, its life cycle
(init, flush, exit, fork), and the calls that need the transport directly.

Fork safety: the child of a fork gets an empty queue (the parent's items are the
parent's to send), a new worker thread and, on first use, a new transport (an SQLite
connection or a socket must not be shared across a fork). `guard` is held while the
worker makes event ids and while it writes to SQLite, and the fork hooks take it, so a
child never inherits a lock that some thread of its parent was holding.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from modeldb import _settings
from modeldb._batch import (
    CHUNK_POINTS,
    EVENT,
    FLUSH,
    MARKED_EVENT,
    MARKERS,
    SLOTS_PER_POINT,
    Batcher,
    Item,
    PointBuffer,
    take,
)
from modeldb._data import file_digest
from modeldb._errors import ConfigError, RequestRejected, ServerUnavailable, TransportError
from modeldb._spool import Spool
from modeldb._transports import StoredBlob, Target, Transport, resolve
from modeldb._worker import Worker


class Client:
    def __init__(self, target: Target, options: _settings.Options, project: str,
                 experiment: str) -> None:
        self.target = target
        self.options = options
        self.project = project
        self.experiment = experiment
        self.queue: deque[Any] = deque()  # flat records, see _batch
        self.sources: dict[str, str] = {}  # run id → its events' source, when not "sdk"
        self.max_slots = options.max_queue * SLOTS_PER_POINT
        self.points = PointBuffer(self.queue, min(CHUNK_POINTS, options.max_queue))  # log_metric's
        self.spool = Spool(options.spool_dir / target.key, target.url)
        self.guard = threading.Lock()
        self.taking = threading.Lock()  # one reader of the queue at a time (see _batch.take)
        self._transport_lock = threading.Lock()
        self._transport: Transport | None = target.open(options)  # config errors surface here
        self._orphans: list[Any] = []  # a parent's transports, held by a child, never closed
        self.closed = False
        self.worker = Worker(self)
        self.worker.start()

    # -- the queue ---------------------------------------------------------------------------

    def put(self, item: Item) -> None:
        self.points.put(item)  # behind the points logged before it
        if len(self.queue) > self.max_slots or self.closed:
            # Closed (at exit, say): no worker any more, so straight to the spool.
            self.spill(everything=self.closed)

    def emit(self, type_: str, aggregate_id: str, payload: dict[str, Any],
             at: float | None = None, sensitive: tuple[str, ...] = ()) -> None:
        at = time.time() if at is None else at
        if sensitive:
            self.put((MARKED_EVENT, type_, aggregate_id, payload, at, sensitive))
        else:
            self.put((EVENT, type_, aggregate_id, payload, at))

    def spill(self, everything: bool = False) -> None:
        """Move the oldest queued records to the spool, in this thread: the queue stays
        bounded without blocking on the network when the worker cannot keep up."""
        # Someone else is taking from the queue right now: let the queue run over its bound
        # for a moment rather than wait, unless it is twice over (a hard bound on memory).
        over = len(self.queue) > 2 * self.max_slots or self.points.queued > 2 * self.options.max_queue
        if not self.taking.acquire(blocking=everything or over):
            return
        try:
            batch = Batcher(self.options, self.guard, self.worker.set_aside_invalid, self.sources)
            markers: list[Item] = []
            keep = 0 if everything else self.max_slots // 2
            if everything:
                self.points.flush()
            while len(self.queue) > keep or self.points.queued > keep // SLOTS_PER_POINT:
                records = take(self.queue, 10_000)
                if not records:
                    break
                for record in records:
                    if record[0] in MARKERS:
                        markers.append(record)
                        continue
                    batch.add(record, 0.0)
                    if batch.full():
                        self.spool.write(batch.take())
            if batch:
                self.spool.write(batch.take())
            # Put flush markers back behind the spilled records; the worker resends the spool
            # before fresh batches, so they still answer "is everything before me in the log?"
            for marker in markers:
                if everything:
                    marker[1].done(False)
                else:
                    self.queue.extend(marker)
        finally:
            self.taking.release()

    # -- life cycle --------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        if self.closed or not self.worker.thread.is_alive():
            return not self.queue
        return self.worker.marker(FLUSH).wait(timeout)

    def close(self, timeout: float) -> bool:
        """Deliver within `timeout` s, spool whatever is left, stop the worker."""
        if self.closed:
            return True
        self.closed = True
        ok = self.worker.stop(timeout)
        if self.queue:  # logged during shutdown, or the worker is stuck: keep it on disk
            self.spill(everything=True)
            ok = False
        if not self.worker.thread.is_alive() and self._transport is not None:
            self._transport.close()
        return ok

    def after_fork_in_child(self) -> None:
        self.queue.clear()
        self.guard = threading.Lock()
        self.taking = threading.Lock()
        self._transport_lock = threading.Lock()
        self._orphans.append(self._transport)
        self._transport = None
        self.closed = False
        self.worker = Worker(self)
        self.worker.start()
        # multiprocessing ends its fork children with os._exit, which skips atexit; its own
        # exit hook runs our close instead. It clears finalizers first, hence the after-fork.
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            mp_util.register_after_fork(self, _register_mp_finalizer)

    # -- the transport -----------------------------------------------------------------------

    def transport(self) -> Transport:
        if self._transport is None:
            with self._transport_lock:
                if self._transport is None:
                    self._transport = self.target.open(self.options)
        return self._transport

    def store_artifact(self, path: Path) -> StoredBlob:
        """Store a file now (it may change or vanish later). Offline, stash a copy in the
        spool for the worker to upload before the event that names it."""
        transport = self.transport()
        if transport.local:
            return transport.put_artifact(path, None)
        digest = file_digest(path)
        if not self.worker.offline_until:
            try:
                return self.worker.retrying(lambda _t: transport.put_artifact(path, digest))
            except ServerUnavailable:
                pass
            except RequestRejected as exc:
                raise TransportError(f"the server refused {path}: {exc.message}") from exc
        self.spool.stash_blob(path, digest)
        # Content-addressed: the server names a stored file by its digest alone.
        return StoredBlob(digest, path.stat().st_size, f"modeldb://artifacts/{digest}")

    def query(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return self.transport().query(query, variables)


def _register_mp_finalizer(client: Client) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, client.close, args=(client.options.exit_timeout,),
                                  exitpriority=10)


# -- the one configured client ---------------------------------------------------------------

_lock = threading.Lock()
_current: Client | None = None
_forking: Client | None = None


def configure(url: str | os.PathLike[str] | None, project: str, experiment: str,
              **options: Any) -> Client:
    for what, value in (("project", project), ("experiment", experiment)):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{what} must be a non-empty string, got {value!r}")
    target = resolve(url)
    opts = _settings.Options.load(**options)
    global _current
    with _lock:
        previous = _current
        if previous is not None and not previous.closed and previous.target == target \
                and previous.options == opts:
            client = previous
            client.project, client.experiment = project, experiment
        else:
            client = _current = Client(target, opts, project, experiment)
    if previous is not None and previous is not client:
        previous.close(previous.options.exit_timeout)  # hand over: drain the old target
    client.emit("ProjectCreated", project, {"name": project})
    client.emit("ExperimentCreated", f"{project}/{experiment}",
                {"project": project, "name": experiment})
    return client


def current() -> Client:
    """The configured client; the first call without init() configures the defaults.

    A client closed by interpreter exit stays the current one: what is logged after that
    goes to its spool, not to some other target."""
    client = _current
    if client is None:
        client = configure(None, "default", "default")
    return client


def flush(timeout: float | None = None) -> bool:
    client = _current
    return True if client is None else client.flush(timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Close the configured client (what interpreter exit does); the next call starts over."""
    global _current
    with _lock:
        client, _current = _current, None
    if client is None:
        return True
    return client.close(client.options.exit_timeout if timeout is None else timeout)


def _at_exit() -> None:
    client = _current
    if client is not None:
        client.close(client.options.exit_timeout)


def _before_fork() -> None:
    global _forking
    client = _forking = _current
    if client is not None:
        client.guard.acquire()


def _after_fork_in_parent() -> None:
    global _forking
    client, _forking = _forking, None
    if client is not None:
        client.guard.release()


def _after_fork_in_child() -> None:
    global _lock, _forking
    _lock = threading.Lock()
    client, _forking = _forking, None
    if client is not None and not client.closed:
        client.after_fork_in_child()


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
