"""ModelDB's SDK: `init`, `start_run`, `attach_run`, `run.log_*`, `log_dataset`, `flush`,
`aflush`, `search_runs`, `search`, `compare_runs`, `get_metric_history`, `autolog`, and the
registry: `register_model`, `set_stage`, `set_alias`.

Logging calls only enqueue; a background worker batches, sends, retries and spools.
Imports `modeldb.event_schema`; the embedded transport also uses `modeldb.writer`,
queries on an embedded home `modeldb.infra.embedded`, and `autolog` the hooks in
`modeldb.ingest_adapters` (all lazily).

    import modeldb

    modeldb.init("http://127.0.0.1:8000", project="vision", experiment="resnet")
    with modeldb.start_run(params={"lr": 0.01}) as run:
        for step in range(100):
            run.log_metric("loss", 1 / (step + 1), step=step)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from modeldb import _client
from modeldb._compare import RunComparison, compare_runs
from modeldb._data import DatasetVersion
from modeldb._errors import (
    ConfigError,
    InvalidArgument,
    ModelDBError,
    QueryError,
    RequestRejected,
    ServerUnavailable,
    TransportError,
    UnsupportedTransport,
)
from modeldb._history import MetricHistory, get_metric_history
from modeldb._registry import ModelVersion, redact_run, register_model, set_alias, set_stage
from modeldb._run import Artifact, Run, active_run, attach_run, log_dataset, start_run
from modeldb._search import RunInfo, search, search_runs

__all__ = [
    "Artifact",
    "ConfigError",
    "DatasetVersion",
    "InvalidArgument",
    "MetricHistory",
    "ModelDBError",
    "ModelVersion",
    "QueryError",
    "RequestRejected",
    "Run",
    "RunComparison",
    "RunInfo",
    "ServerUnavailable",
    "TransportError",
    "UnsupportedTransport",
    "active_run",
    "aflush",
    "attach_run",
    "autolog",
    "compare_runs",
    "flush",
    "get_metric_history",
    "init",
    "log_dataset",
    "redact_run",
    "register_model",
    "search",
    "search_runs",
    "set_alias",
    "set_stage",
    "start_run",
]


def init(
    url: str | os.PathLike[str] | None = None,
    project: str = "default",
    experiment: str = "default",
    *,
    spool_dir: str | os.PathLike[str] | None = None,
    max_queue: int | None = None,
    exit_timeout: float | None = None,
    batch_size: int | None = None,
    batch_interval: float | None = None,
    retry_seconds: float | None = None,
    http_timeout: float | None = None,
    upload_threshold: int | None = None,
    upload_chunk: int | None = None,
) -> None:
    """Choose where events go and which project and experiment new runs belong to.

    `url`: `http://host:port` (a ModelDB server), a folder, `file://folder` or
    `sqlite:///path` (embedded: the SDK appends to `<folder>/events.db` itself;
    `offline:///folder` says the same, and `modeldb sync FOLDER --url URL` uploads it
    to a server later, exactly once), or
    `kafka://host:port` (straight to the log; queries then need `$MODELDB_API_URL`).
    None: `$MODELDB_URL`, else embedded in
    `$MODELDB_HOME` (default `~/.modeldb`).

    The keyword options override the environment variable of the same name in capitals
    (`max_queue` ← `MODELDB_MAX_QUEUE`):
    `spool_dir` (default `$MODELDB_HOME/spool`) where undeliverable batches wait, one
    sub-folder per url; `max_queue` (1,000,000) items held in memory before logging calls
    spill to the spool; `exit_timeout` (10 s) how long interpreter exit waits for delivery;
    `batch_size` (1000 events) and `batch_interval` (0.2 s) when a batch is sent;
    `retry_seconds` (4 s) how long a batch is retried before it is spooled;
    `http_timeout` (30 s) per request; artifact files of `upload_threshold` bytes or more
    (8 MiB) go up in chunks of `upload_chunk` bytes (8 MiB) that resume after a dropped
    connection or a server restart.

    Calling init again with another url drains and closes the previous client; end its
    runs first.
    """
    options: dict[str, Any] = {
        "spool_dir": spool_dir, "max_queue": max_queue, "exit_timeout": exit_timeout,
        "batch_size": batch_size, "batch_interval": batch_interval,
        "retry_seconds": retry_seconds, "http_timeout": http_timeout,
        "upload_threshold": upload_threshold, "upload_chunk": upload_chunk,
    }
    _client.configure(url, project, experiment, **options)


def flush(timeout: float | None = None) -> bool:
    """Wait until everything logged so far is in the log; False if `timeout` s passed
    first or the target is unreachable (the events are then safe in the local spool and
    sent when it is back). Interpreter exit does this too, bounded by `exit_timeout`."""
    return _client.flush(timeout)


async def aflush(timeout: float | None = None) -> bool:
    """flush() for asyncio code: waits in a worker thread, so the event loop keeps running.
    Logging calls need no async twin: they only enqueue and never block."""
    import asyncio

    return await asyncio.to_thread(_client.flush, timeout)


def autolog(frameworks: Sequence[str] | None = None, *, log_models: bool = True,
            log_datasets: bool = True, disable: bool = False, silent: bool = False) -> None:
    """Track every training of the given frameworks (default: each one installed):
    params, metrics per epoch or iteration, the trained model and the training data.

    Names: "sklearn", "xgboost", "lightgbm", "keras", "lightning", "transformers"; an
    unknown name raises InvalidArgument. A framework imported later is patched when it is
    imported, so this call imports none of them. Training with no active run gets a run
    of its own (source "autolog:<name>"); inside an active run it logs into that run.
    A failure of the tracking itself is logged once and never stops training; set
    MODELDB_AUTOLOG_STRICT=1 to make it raise instead. `disable=True` undoes the patches;
    `silent=True` keeps autolog's own messages at DEBUG.
    """
    from modeldb.ingest_adapters.autolog import autolog as _autolog  # the SDK stays light

    _autolog(frameworks, log_models=log_models, log_datasets=log_datasets, disable=disable,
             silent=silent)
