"""The queue's records → wire-form events, off the caller's thread.

Logging calls put a few plain values on the queue (a deque): one call's values go in with
one `deque.extend` of a tuple, which is atomic, and the tuple itself is freed at once.
`take` reads the records back as tuples.

Metric points (log_metric, log_metrics: the hot path) do not even go there: they are
written into the columns of a preallocated `PointChunk` (floats and int64s in arrays, the
key and run id as references), which joins the queue as one CHUNK record when full or
when anything else is put. So a point allocates nothing that lives: no garbage collection,
and, above all, no fresh memory. A backlog of a million points held as objects touched
~140 MB of new pages, and on a virtual machine the first touch of a page (a page fault)
can cost ~10 us: one call in thirty paid it, which was the slow 1% of log_metric. A
chunk's pages are touched once, when the chunk is made, and chunks are reused.

This is where records become events (ids, validation, the wire form). Metric points of
one run are grouped into one MetricsLogged event of up to `points_per_event` points; a
run's other events first close its open group, so each run's events keep their order.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from array import array
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from modeldb import _capture
from modeldb._settings import Options
from modeldb.event_schema import event_type, new_event, to_wire, uuid7
from modeldb.event_schema.types import MetricPoint

# Record kinds: the first value of every record, and how many values the record has.
METRIC = 0  # METRIC, run_id, key, value, step, timestamp_ms
METRICS = 1  # METRICS, run_id, {key: value}, step, timestamp_ms
EVENT = 2  # EVENT, type, aggregate_id, payload, occurred_at as epoch seconds
ENVIRONMENT = 3  # ENVIRONMENT, run_id, occurred_at: captured here, off the caller's thread
FLUSH = 4  # FLUSH, waiter
STOP = 5  # STOP, waiter
MARKED_EVENT = 6  # as EVENT, then the payload paths marked sensitive
CHUNK = 7  # CHUNK, PointChunk: metric points written in place
SIZE = (6, 5, 5, 3, 2, 2, 6, 2)
MARKERS = (FLUSH, STOP)  # records that are not data but wait for the data before them
SLOTS_PER_POINT = SIZE[METRIC]  # the queue bound counts values; max_queue counts points

Item = tuple[Any, ...]
Point = tuple[Any, Any, Any, Any]  # key, value, step, timestamp ms
Wire = dict[str, Any]
# Called with records that could not become events, and why; they are set aside, not sent.
OnInvalid = Callable[[list[dict[str, Any]], str], None]


CHUNK_POINTS = 4096  # points per chunk: 160 KB of columns, made (and paged in) at once
SPARE_CHUNKS = 4  # emptied chunks kept for reuse


class PointChunk:
    """Columns of up to `capacity` metric points; `n` are written. Written only under the
    buffer's lock, read by the worker once the chunk is in the queue (sealed)."""

    __slots__ = ("capacity", "keys", "n", "owner", "runs", "stamps", "steps", "values")

    def __init__(self, owner: PointBuffer, capacity: int) -> None:
        self.owner = owner
        self.capacity = capacity
        zeros = bytes(8 * capacity)  # the arrays' pages are touched now, not on a logging call
        self.values = array("d", zeros)
        self.steps = array("q", zeros)
        self.stamps = array("q", zeros)
        self.keys: list[Any] = [None] * capacity
        self.runs: list[Any] = [None] * capacity
        self.n = 0

    def compact(self) -> PointChunk:
        """A copy holding just the written points (a right-sized chunk); this one emptied."""
        n = self.n
        copy = PointChunk(self.owner, 0)
        copy.capacity, copy.n = n, n
        copy.values, copy.steps, copy.stamps = self.values[:n], self.steps[:n], self.stamps[:n]
        copy.keys, copy.runs = self.keys[:n], self.runs[:n]
        self.keys[:n] = self.runs[:n] = [None] * n
        self.n = 0
        return copy

    def release(self) -> None:
        """Read: back to the buffer for reuse."""
        self.owner.recycle(self)


class PointBuffer:
    """Where a client's log_metric calls write (see the module docstring).

    `lock` guards the current chunk; `seal` (lock held) moves it into the queue as one
    CHUNK record, so whatever is put in the queue after the points stays after them.
    `queued` counts the points of sealed chunks not yet read, for the queue's bound.
    """

    def __init__(self, queue: deque[Any], capacity: int = CHUNK_POINTS) -> None:
        self.queue = queue
        self.capacity = max(1, capacity)
        self.lock = threading.Lock()
        self.spare: list[PointChunk] = []
        self.chunk = PointChunk(self, self.capacity)
        self.queued = 0
        _buffers.add(self)

    def seal(self) -> None:
        """Queue the current chunk if it holds points; the caller holds `lock`."""
        chunk = self.chunk
        if chunk.n and chunk.n < chunk.capacity // 4:
            # Sealed early (another record is put): queue a right-sized copy and keep this
            # chunk, so logging a point and a tag per step does not cost a chunk per step.
            self.queue.extend((CHUNK, chunk.compact()))
            self.queued += self.queue[-1].n
        elif chunk.n:
            self.queue.extend((CHUNK, chunk))
            self.queued += chunk.n
            try:
                self.chunk = self.spare.pop()
            except IndexError:
                self.chunk = PointChunk(self, self.capacity)

    def flush(self) -> None:
        with self.lock:
            self.seal()

    def put(self, record: tuple[Any, ...]) -> None:
        """Put a record behind every point written so far."""
        with self.lock:
            self.seal()
            self.queue.extend(record)

    def recycle(self, chunk: PointChunk) -> None:
        with self.lock:
            if chunk.owner is not self or chunk.n == 0:
                return
            self.queued -= chunk.n
            n, chunk.n = chunk.n, 0
            chunk.keys[:n] = chunk.runs[:n] = [None] * n  # no key or run id kept alive
            if len(self.spare) < SPARE_CHUNKS and chunk.capacity == self.capacity:
                self.spare.append(chunk)

    def reset(self) -> None:
        """After a fork, in the child: the parent's points are the parent's to send."""
        self.lock = threading.Lock()
        self.spare = []
        self.chunk = PointChunk(self, self.capacity)
        self.queued = 0


_buffers: weakref.WeakSet[PointBuffer] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for buffer in list(_buffers):
        buffer.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def take(queue: deque[Any], limit: int) -> list[Item]:
    """Up to `limit` records from the front of the queue, as tuples.

    Only one thread may take at a time (the caller holds the client's `taking` lock):
    records go in atomically, but come out one value at a time.
    """
    popleft = queue.popleft
    records: list[Item] = []
    for _ in range(limit):
        try:
            kind = popleft()
        except IndexError:
            break
        # A record is whole once its kind is there, so these pops cannot fail.
        size = SIZE[kind]
        if size == 6:
            records.append((kind, popleft(), popleft(), popleft(), popleft(), popleft()))
        elif size == 5:
            records.append((kind, popleft(), popleft(), popleft(), popleft()))
        elif size == 3:
            records.append((kind, popleft(), popleft()))
        else:
            records.append((kind, popleft()))
    return records


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


_METRICS_SPEC = event_type("MetricsLogged")
_KEY_MAX = 250  # event_schema.types.Key
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def fast_metrics(run_id: str, points: list[dict[str, Any]], source: str = "sdk") -> Wire | None:
    """The wire form of MetricsLogged built directly, for points that are plainly valid
    (see `_fast_metrics`); points as dicts {key, value, step, timestamp}."""
    return _fast_metrics(run_id, [(p["key"], p["value"], p["step"], p["timestamp"]) for p in points],
                         source)


def _fast_metrics(run_id: str, points: list[Point], source: str = "sdk") -> Wire | None:
    """The wire form of MetricsLogged built directly, for points that are plainly valid.

    Pydantic costs ~1.5 us a point, more than the caller's log_metric itself; the caller
    already made `value` a float, so a point with a str key, int step and int timestamp
    cannot fail validation. Anything unusual returns None and takes the validated path.
    A test checks that both paths give the same wire form.
    """
    out = []
    append = out.append
    for key, value, step, timestamp in points:
        if not (type(key) is str and 0 < len(key) <= _KEY_MAX and type(value) is float
                and type(step) is int and type(timestamp) is int):
            return None
        if value - value != 0.0:  # NaN or infinity: JSON has neither; as MetricPoint writes them
            value = "NaN" if value != value else _NON_FINITE[value]
        append({"key": key, "value": value, "step": step, "timestamp": timestamp})
    try:
        occurred_at = _at(points[0][3] / 1000).isoformat()
    except (OverflowError, OSError, ValueError):  # a timestamp no datetime can hold
        return None
    return {
        "event_id": uuid7(),
        "type": "MetricsLogged",
        "schema_version": _METRICS_SPEC.version,
        "aggregate": {"kind": _METRICS_SPEC.aggregate_kind, "id": run_id},
        "occurred_at": occurred_at,
        "recorded_at": None,
        "actor": None,
        "source": source,
        "payload": {"points": out},
    }


def _int(step: Any) -> Any:
    if step is None:
        return 0
    if type(step) is int:
        return step
    try:
        return int(step)  # numpy integers, 0-d tensors
    except (TypeError, ValueError):
        return step  # validation names it


class Batcher:
    """Collects events for one batch; `guard` is held while ids are made (see _client).

    `sources` maps the id of a run that did not come from plain SDK calls (an autolog run,
    say) to its envelope `source`: records carry only the run id, so the source is looked
    up here, once per event, never on the logging call. An entry is dropped with the run's
    RunFinished (the run's earlier records are ahead of it in the queue), so the map holds
    only open runs. One exception: when the queue overflows, a spill can take a run's end
    while the worker still builds its last points, which then say "sdk".
    """

    def __init__(self, options: Options, guard: threading.Lock, on_invalid: OnInvalid,
                 sources: dict[str, str] | None = None) -> None:
        self._options = options
        self._guard = guard
        self._on_invalid = on_invalid
        self._sources = {} if sources is None else sources
        self.events: list[Wire] = []
        self._groups: dict[str, list[Point]] = {}
        self.points = 0
        self.first_at: float | None = None  # monotonic time the oldest pending item was seen

    def __bool__(self) -> bool:
        return bool(self.events or self._groups)

    def full(self) -> bool:
        return (
            len(self.events) + len(self._groups) >= self._options.batch_size
            or self.points >= self._options.points_per_batch
        )

    def add(self, item: Item, now: float) -> None:
        if self.first_at is None:
            self.first_at = now
        kind = item[0]
        with self._guard:
            if kind == CHUNK:
                self._chunk(item[1])
            elif kind == METRIC:
                self._points(item[1], [(item[2], item[3], _int(item[4]), item[5])])
            elif kind == METRICS:
                _, run_id, values, step, timestamp = item
                step = _int(step)
                self._points(run_id, [(key, value, step, timestamp) for key, value in values.items()])
            elif kind in (EVENT, MARKED_EVENT):
                type_, aggregate_id, payload, at = item[1:5]
                if type_ != "MetricsLogged" and aggregate_id in self._groups:
                    self._close(aggregate_id)
                self._event(type_, aggregate_id, payload, at, item[5] if len(item) > 5 else ())
                if type_ == "RunFinished":
                    self._sources.pop(aggregate_id, None)
            elif kind == ENVIRONMENT:
                self._event("EnvironmentRecorded", item[1], _capture.environment(), item[2])

    def take(self) -> list[Wire]:
        """The batch's events, every open metric group closed; the batcher starts over."""
        with self._guard:
            for run_id in list(self._groups):
                self._close(run_id)
        events, self.events, self.points, self.first_at = self.events, [], 0, None
        return events

    # -- building ----------------------------------------------------------------------------

    def _chunk(self, chunk: PointChunk) -> None:
        n = chunk.n
        try:  # copied out before the chunk goes back for reuse
            runs = chunk.runs[:n]
            columns = (chunk.keys[:n], chunk.values[:n], chunk.steps[:n], chunk.stamps[:n])
        finally:
            chunk.release()
        if not n:
            return
        # Most chunks hold one run's points: group by run without a dict lookup per point.
        first = runs[0]
        if runs.count(first) == n:
            self._points(first, list(zip(*columns, strict=True)))
            return
        by_run: dict[str, list[Point]] = {}
        for run_id, *point in zip(runs, *columns, strict=True):
            by_run.setdefault(run_id, []).append(tuple(point))  # type: ignore[arg-type]
        for run_id, points in by_run.items():
            self._points(run_id, points)

    def _points(self, run_id: str, points: list[Point]) -> None:
        group = self._groups.get(run_id)
        if group is None:
            group = self._groups[run_id] = []
        group += points
        self.points += len(points)
        limit = self._options.points_per_event
        while len(group) >= limit:  # full events of exactly `limit` points, in order
            self._groups[run_id] = group[:limit]
            self._close(run_id)
            group = group[limit:]
            if group:
                self._groups[run_id] = group

    def _close(self, run_id: str) -> None:
        points = self._groups.pop(run_id)
        source = self._sources.get(run_id, "sdk")
        fast = _fast_metrics(run_id, points, source)
        if fast is not None:
            self.events.append(fast)
            return
        self._close_validated(run_id, [{"key": k, "value": v, "step": s, "timestamp": t}
                                       for k, v, s, t in points], source)

    def _close_validated(self, run_id: str, points: list[dict[str, Any]], source: str) -> None:
        try:
            event = new_event("MetricsLogged", run_id, {"points": points}, source=source,
                              occurred_at=_at(points[0]["timestamp"] / 1000))
        except (ValidationError, TypeError, ValueError, OverflowError):
            # Keep the good points; set the bad ones aside with what is wrong with each.
            good, bad = [], []
            for point in points:
                try:
                    good.append(MetricPoint.model_validate(point))
                except ValidationError as exc:
                    bad.append((point, _reason(exc)))
            self._on_invalid(
                [{"type": "MetricsLogged", "aggregate_id": run_id, "payload": {"points": [p]},
                  "error": why} for p, why in bad],
                f"{len(bad)} metric point(s) of run {run_id} are invalid: {bad[0][1]}",
            )
            if not good:
                return
            event = new_event("MetricsLogged", run_id, {"points": good}, source=source,
                              occurred_at=_at(good[0].timestamp / 1000))
        self.events.append(to_wire(event))

    def _event(self, type_: str, aggregate_id: str, payload: dict[str, Any], at: float,
               sensitive: tuple[str, ...] = ()) -> None:
        source = "sdk"
        # A dataset or model may be named like a run id: only run events take a run's source.
        if aggregate_id in self._sources and event_type(type_).aggregate_kind == "run":
            source = self._sources[aggregate_id]
        try:
            event = new_event(type_, aggregate_id, payload, source=source, occurred_at=_at(at),
                              sensitive=sensitive)
        except ValidationError as exc:
            why = _reason(exc)
            self._on_invalid(
                [{"type": type_, "aggregate_id": aggregate_id, "payload": payload, "error": why}],
                f"{type_} for {aggregate_id!r} is invalid: {why}",
            )
            return
        self.events.append(to_wire(event))


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)
