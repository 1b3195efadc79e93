"""Runs: start_run, the Run handle and its log_* calls, datasets, the active run.

Every log_* call only puts a record of plain values on the client's queue; ids,
validation and I/O happen in the worker. log_metric is the hot path (a training loop
calls it millions of times), so it is written for speed: no event objects, no locks, no
object that outlives the call (see _batch), the record kind as a literal, one length check
for the queue bound.
"""

from __future__ import annotations

import contextvars
import logging
import math
import mimetypes
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from modeldb import _capture, _settings
from modeldb._batch import ENVIRONMENT
from modeldb._client import Client, current
from modeldb._data import DatasetVersion, as_path, fingerprint
from modeldb._errors import InvalidArgument
from modeldb.event_schema import uuid7

if TYPE_CHECKING:
    from modeldb._system import SystemSampler

_time = time.time
_PER_EVENT = 1000  # ParamsLogged and TagsSet hold at most 1000 keys each
RunStatus = Literal["FINISHED", "FAILED", "KILLED"]
_STATUSES = ("FINISHED", "FAILED", "KILLED")
_SOURCE_MAX = 100  # the envelope's limit
_INT64 = 1 << 63

_active: contextvars.ContextVar[Run | None] = contextvars.ContextVar("modeldb_run", default=None)


def active_run() -> Run | None:
    """The run started last in this context (thread or task) and not yet ended."""
    return _active.get()


@dataclass(frozen=True)
class Artifact:
    """A file logged to a run, as stored: content digest, size and where it lives."""

    name: str
    digest: str
    size: int
    uri: str
    kind: str = "artifact"


def _number(key: str, value: Any) -> float:
    try:
        return float(value)  # int, bool, numpy scalars, 0-d tensors: converted now, while
    except (TypeError, ValueError):  # the value is the one the caller meant
        raise InvalidArgument(f"metric {key!r}: {value!r} is not a number") from None


def _scalar(value: Any) -> str | int | float | bool:
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # JSON has no NaN
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "ndim", None) == 0:
        return _scalar(item())
    return str(value)


def _chunks(items: Mapping[str, Any]) -> list[dict[str, Any]]:
    pairs = list(items.items())
    return [dict(pairs[i : i + _PER_EVENT]) for i in range(0, len(pairs), _PER_EVENT)]


class Run:
    """One run. Also a context manager: FINISHED on normal exit, FAILED on an exception
    (KILLED on KeyboardInterrupt), and the exception propagates."""

    __slots__ = ("_attached", "_client", "_ended", "_limit", "_max_points", "_points", "_previous",
                 "_queue", "_sampler", "id", "name", "source")

    def __init__(self, client: Client, run_id: str, name: str | None, source: str = "sdk") -> None:
        self.id = run_id
        self.name = name
        self.source = source
        self._client = client
        self._queue = client.queue
        self._points = client.points  # where points are written; see _batch
        self._limit = client.max_slots
        self._max_points = client.options.max_queue
        self._ended = False
        self._previous: Run | None = None
        self._sampler: SystemSampler | None = None
        self._attached = False  # a handle on a run some other process started and ends

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r})"

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        if exc_type is None:
            self.end("FINISHED")
        else:
            self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")
        return False

    # -- metrics: the hot path ---------------------------------------------------------------

    def log_metric(self, key: str, value: float, step: int | None = None,
                   timestamp: int | None = None) -> None:
        """Record one point; `timestamp` in epoch milliseconds (default now), step 0."""
        if type(value) is not float:
            value = _number(key, value)
        stamp = int(_time() * 1000) if timestamp is None else int(timestamp)
        if step is None:
            step = 0
        elif type(step) is not int:
            return self._put_record((0, self.id, key, value, step, stamp))  # 0 is _batch.METRIC
        # Written in place (see _batch.PointBuffer): nothing allocated here outlives the call.
        points = self._points
        with points.lock:
            chunk = points.chunk
            n = chunk.n
            try:
                chunk.steps[n] = step
                chunk.stamps[n] = stamp
            except OverflowError:  # beyond int64: the record path, whose validation names it
                full = False
            else:
                chunk.values[n] = value
                chunk.keys[n] = key
                chunk.runs[n] = self.id
                chunk.n = n = n + 1
                full = n == chunk.capacity
                if full:
                    points.seal()
                else:
                    return None
        if not full:
            return self._put_record((0, self.id, key, value, step, stamp))
        if points.queued > self._max_points or len(self._queue) > self._limit:
            self._client.spill()
        return None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        values = {k: v if type(v) is float else _number(k, v) for k, v in metrics.items()}
        stamp = int(_time() * 1000)
        if step is None:
            step = 0
        if type(step) is not int or not -_INT64 <= step < _INT64 or not values:
            return self._put_record((1, self.id, values, step, stamp))  # 1 is _batch.METRICS
        points, run_id = self._points, self.id
        sealed = False
        with points.lock:
            for key, value in values.items():
                chunk = points.chunk
                n = chunk.n
                chunk.steps[n] = step
                chunk.stamps[n] = stamp
                chunk.values[n] = value
                chunk.keys[n] = key
                chunk.runs[n] = run_id
                chunk.n = n = n + 1
                if n == chunk.capacity:
                    points.seal()
                    sealed = True
        if sealed and (points.queued > self._max_points or len(self._queue) > self._limit):
            self._client.spill()
        return None

    def _put_record(self, record: tuple[Any, ...]) -> None:
        """A point as a queue record (an unusual step, say), behind the points before it."""
        self._points.put(record)
        if len(self._queue) > self._limit or self._points.queued > self._max_points:
            self._client.spill()

    # -- params, tags ------------------------------------------------------------------------

    def log_param(self, key: str, value: Any, *, sensitive: bool = False) -> None:
        self.log_params({key: value}, sensitive=sensitive)

    def log_params(self, params: Mapping[str, Any], *, sensitive: bool | Iterable[str] = False) -> None:
        """Params are immutable once set; values other than str/int/float/bool become str.

        `sensitive` (True, or the keys that are): those values are stored encrypted with a
        key of this run, so `modeldb redact` can erase them later (crypto-shredding)."""
        self._emit_values("ParamsLogged", "params", {k: _scalar(v) for k, v in params.items()},
                          sensitive)

    def set_tag(self, key: str, value: Any, *, sensitive: bool = False) -> None:
        self.set_tags({key: value}, sensitive=sensitive)

    def set_tags(self, tags: Mapping[str, Any], *, sensitive: bool | Iterable[str] = False) -> None:
        self._emit_values("TagsSet", "tags", {k: str(v) for k, v in tags.items()}, sensitive)

    def _emit_values(self, type_: str, field: str, values: dict[str, Any],
                     sensitive: bool | Iterable[str]) -> None:
        marked = set(values) if sensitive is True else set(sensitive or ())
        for chunk in _chunks(values):
            paths = tuple(f"{field}.{k}" for k in chunk if k in marked)
            self._client.emit(type_, self.id, {field: chunk}, sensitive=paths)

    def delete_tag(self, key: str) -> None:
        self._client.emit("TagsDeleted", self.id, {"keys": [key]})

    # -- artifacts and lineage ---------------------------------------------------------------

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None,
                     kind: str = "artifact") -> Artifact:
        """Store the file now (content-addressed) and record it on the run.

        Unlike the other calls this reads the whole file in the caller's thread: a file
        is often rewritten or deleted right after it is logged.
        """
        file = Path(path)
        if not file.is_file():
            raise InvalidArgument(f"log_artifact needs a file; {file} is not one")
        stored = self._client.store_artifact(file)
        artifact = Artifact(name or file.name, stored.digest, stored.size, stored.uri, kind)
        payload: dict[str, Any] = {"name": artifact.name, "digest": stored.digest,
                                   "size": stored.size, "uri": stored.uri, "kind": kind}
        media_type = mimetypes.guess_type(artifact.name)[0]
        if media_type:
            payload["media_type"] = media_type
        self._client.emit("ArtifactLogged", self.id, payload)
        return artifact

    def log_input(self, data: Any, name: str | None = None) -> DatasetVersion:
        """Record that the run read `data`: a path, a DatasetVersion or in-memory data."""
        return self._link("RunInputLogged", data, name)

    def log_output(self, data: Any, name: str | None = None) -> DatasetVersion:
        """Record that the run produced `data`: a path, a DatasetVersion or in-memory data."""
        return self._link("RunOutputLogged", data, name)

    def _link(self, type_: str, data: Any, name: str | None) -> DatasetVersion:
        version = data if isinstance(data, DatasetVersion) else dataset_version(
            self._client, name, data)
        self._client.emit(type_, self.id, {"kind": "DatasetVersion", "id": version.id,
                                           "name": name or version.dataset})
        return version

    # -- the end -----------------------------------------------------------------------------

    def end(self, status: RunStatus = "FINISHED") -> None:
        """Finish the run (once; later calls do nothing). On a handle from attach_run this
        only stops this process's logging into it: the run's owner finishes it."""
        if status not in _STATUSES:
            raise InvalidArgument(f"status must be one of {', '.join(_STATUSES)}, not {status!r}")
        if self._ended:
            return
        self._ended = True
        if self._sampler is not None:  # its last sample lands before RunFinished
            self._sampler.stop()
        if not self._attached:
            self._client.emit("RunFinished", self.id, {"status": status,
                                                       "end_time": datetime.now(UTC)})
        if _active.get() is self:
            _active.set(self._previous)


def start_run(name: str | None = None, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, Any] | None = None, parent: Run | str | None = None, *,
              source: str = "sdk", log_system_metrics: bool | None = None,
              rank: int | None = None) -> Run:
    """Start a run in the configured project and experiment (see init()).

    A run is never started implicitly, and `parent` is never guessed: pass the parent
    Run (or its id) to make a child run. `source` says what made the run ("sdk", or
    "autolog:sklearn" for a run autolog started); every event of the run carries it.

    `log_system_metrics` (None: `$MODELDB_SYSTEM_METRICS`, default off) samples CPU,
    memory, disk, network and GPUs every `$MODELDB_SYSTEM_METRICS_INTERVAL` s (10) as
    `system/*` metrics until the run ends, and tags the run `system.node` = hostname.

    Distributed training: `rank` (else `$RANK`, as torchrun sets it) with `$WORLD_SIZE`
    and `$LOCAL_RANK` are recorded as the run's attributes `rank`, `world_size`,
    `local_rank`. Either every rank starts its own child run of one parent
    (`start_run(parent=parent_id)`), or rank 0 starts the run and the others log into
    it with `attach_run(run_id)`.
    """
    client = current()
    if parent is not None and not isinstance(parent, Run | str):
        raise InvalidArgument(f"parent must be a Run or a run id, not {type(parent).__name__}")
    if not isinstance(source, str) or not 0 < len(source) <= _SOURCE_MAX:
        raise InvalidArgument(f"source must be a string of 1 to {_SOURCE_MAX} characters, "
                              f"not {source!r}")
    parent_id = parent.id if isinstance(parent, Run) else parent
    run = Run(client, uuid7(), name or None, source)
    if source != "sdk":
        client.sources[run.id] = source  # read by the worker, which builds the events
    now = _time()
    client.emit("RunStarted", run.id, {
        "project": client.project, "experiment": client.experiment, "name": run.name,
        "parent_run_id": parent_id, "start_time": datetime.fromtimestamp(now, UTC),
    }, now)
    code = _capture.code_version()
    if code is not None:
        client.emit("CodeVersionRecorded", run.id, code, now)
    client.put((ENVIRONMENT, run.id, now))  # read by the worker, off this thread
    if params:
        run.log_params(params)
    if tags:
        run.set_tags(tags)
    _record_rank(client, run, rank)
    _maybe_sample(run, log_system_metrics)
    run._previous = _active.get()
    _active.set(run)
    return run


def attach_run(run_id: str, *, log_system_metrics: bool | None = None) -> Run:
    """A handle on a run started elsewhere (rank 0 of a distributed job, say): its log_*
    calls go into that run; it neither starts nor finishes it (end() only stops the
    handle). It becomes the active run of this context until end(). Ranks that log the
    same keys into one run collide: prefix them (`loss/rank1`), or give each rank a child
    run (`start_run(parent=run_id)`), which is also where per-rank system metrics belong."""
    if not isinstance(run_id, str) or not run_id:
        raise InvalidArgument(f"attach_run needs a run id, not {run_id!r}")
    run = Run(current(), run_id, None)
    run._attached = True
    _maybe_sample(run, log_system_metrics)
    run._previous = _active.get()
    _active.set(run)
    return run


def distributed_attributes(rank: int | None = None) -> dict[str, int]:
    """rank, world_size and local_rank of this process: `rank` or `$RANK`, `$WORLD_SIZE`,
    `$LOCAL_RANK` (torchrun, torch.distributed.launch, accelerate and SLURM wrappers set
    them); {} outside distributed training."""
    found: dict[str, int] = {}
    for key, env in (("rank", "RANK"), ("world_size", "WORLD_SIZE"), ("local_rank", "LOCAL_RANK")):
        raw = os.environ.get(env, "").strip()
        if raw:
            try:
                found[key] = int(raw)
            except ValueError:
                raise InvalidArgument(f"${env}={raw!r} is not an integer") from None
    if rank is not None:
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
            raise InvalidArgument(f"rank must be a non-negative int, not {rank!r}")
        found["rank"] = rank
    return found if "rank" in found else {}


def _record_rank(client: Client, run: Run, rank: int | None) -> None:
    attributes = distributed_attributes(rank)
    if attributes:
        client.emit("AttributesSet", run.id, {"attributes": attributes})


def _maybe_sample(run: Run, wanted: bool | None) -> None:
    if wanted is None:
        wanted = _settings.SYSTEM_METRICS.get()
    if not wanted:
        return
    from modeldb._system import NODE_TAG, SystemSampler, node_name

    if not run._attached:  # an attached rank must not retag its owner's run
        run.set_tag(NODE_TAG, node_name())
    interval = _settings.SYSTEM_METRICS_INTERVAL.get()
    try:
        run._sampler = SystemSampler(run, interval).start()
    except Exception as exc:  # psutil missing or broken: the run goes on without samples
        logging.getLogger("modeldb").warning("modeldb: no system metrics: %s", exc)


def dataset_version(client: Client, name: str | None, data: Any) -> DatasetVersion:
    """Fingerprint `data` and record the dataset version it is (the same content is the
    same version, so recording it again is harmless)."""
    found = fingerprint(data)
    dataset = name or found.name
    if not dataset:
        raise InvalidArgument("in-memory data needs a dataset name, e.g. name='train'")
    client.emit("DatasetCreated", dataset, {"name": dataset})
    payload: dict[str, Any] = {"digest": found.digest, "uri": found.uri,
                               "row_count": found.row_count}
    if found.schema is not None:
        payload["schema"] = found.schema
    client.emit("DatasetVersionCreated", dataset, payload)
    return DatasetVersion(dataset, found.digest, found.uri, found.row_count)


def log_dataset(name: str, path_or_data: Any) -> DatasetVersion:
    """Record a content-addressed version of dataset `name`; pass it to log_input/output."""
    if as_path(path_or_data) is None and not name:
        raise InvalidArgument("log_dataset needs a name")
    return dataset_version(current(), name, path_or_data)
