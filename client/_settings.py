"""Every environment variable the SDK reads, declared once, and the options they make.

MODELDB_URL         what init() talks to when it gets no url (else: embedded)
MODELDB_HOME        the embedded home, and where the spool lives (default ~/.modeldb)
MODELDB_SPOOL_DIR   root of the spool folders (default $MODELDB_HOME/spool); one
                    sub-folder per target URL, so a batch is only resent where it was going
MODELDB_MAX_QUEUE   items held in memory before logging calls spill to the spool
MODELDB_EXIT_TIMEOUT   seconds interpreter exit waits for delivery before spooling
MODELDB_BATCH_SIZE     events per batch sent
MODELDB_BATCH_INTERVAL seconds a logged item waits at most before its batch is sent
MODELDB_RETRY_SECONDS  how long one batch is retried before it is spooled
MODELDB_HTTP_TIMEOUT   seconds one HTTP request may take
MODELDB_TOKEN          the API token sent as `Authorization: Bearer …` (servers in token mode)
MODELDB_UPLOAD_THRESHOLD  artifact files of this many bytes or more go up as resumable,
                          chunked uploads (default 8 MiB)
MODELDB_UPLOAD_CHUNK      bytes per chunk of a resumable upload (default 8 MiB)
MODELDB_SYSTEM_METRICS           1/true: runs sample CPU, memory, disk, network, GPU
MODELDB_SYSTEM_METRICS_INTERVAL  seconds between two samples (default 10)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from modeldb._errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class EnvVar(Generic[T]):
    name: str
    parse: Callable[[str], T]
    default: T

    def get(self) -> T:
        raw = os.environ.get(self.name)
        if raw is None or raw == "":
            return self.default
        try:
            return self.parse(raw)
        except ValueError:
            raise ConfigError(f"{self.name}={raw!r} is not a valid {self.parse.__name__}") from None


def flag(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


URL = EnvVar[str | None]("MODELDB_URL", str, None)
HOME = EnvVar[Path | None]("MODELDB_HOME", _path, None)
SPOOL_DIR = EnvVar[Path | None]("MODELDB_SPOOL_DIR", _path, None)
MAX_QUEUE = EnvVar("MODELDB_MAX_QUEUE", int, 1_000_000)
EXIT_TIMEOUT = EnvVar("MODELDB_EXIT_TIMEOUT", float, 10.0)
BATCH_SIZE = EnvVar("MODELDB_BATCH_SIZE", int, 1000)
BATCH_INTERVAL = EnvVar("MODELDB_BATCH_INTERVAL", float, 0.2)
RETRY_SECONDS = EnvVar("MODELDB_RETRY_SECONDS", float, 4.0)
HTTP_TIMEOUT = EnvVar("MODELDB_HTTP_TIMEOUT", float, 30.0)
TOKEN = EnvVar[str | None]("MODELDB_TOKEN", str.strip, None)
UPLOAD_THRESHOLD = EnvVar("MODELDB_UPLOAD_THRESHOLD", int, 8 * 1024 * 1024)
UPLOAD_CHUNK = EnvVar("MODELDB_UPLOAD_CHUNK", int, 8 * 1024 * 1024)
MAX_UPLOAD_CHUNK = 64 * 1024 * 1024  # what the server takes in one request
SYSTEM_METRICS = EnvVar("MODELDB_SYSTEM_METRICS", flag, False)
SYSTEM_METRICS_INTERVAL = EnvVar("MODELDB_SYSTEM_METRICS_INTERVAL", float, 10.0)


def home() -> Path:
    return HOME.get() or Path.home() / ".modeldb"


@dataclass(frozen=True)
class Options:
    """How the client batches, retries and spools; from the environment, then init()."""

    spool_dir: Path
    max_queue: int
    exit_timeout: float
    batch_size: int
    batch_interval: float
    retry_seconds: float
    http_timeout: float
    # One MetricsLogged event carries at most this many points (the schema allows 10,000).
    points_per_event: int = 1000
    # A batch carries at most this many metric points, which keeps a request near 8 MB.
    points_per_batch: int = 100_000
    upload_threshold: int = 8 * 1024 * 1024
    upload_chunk: int = 8 * 1024 * 1024

    @classmethod
    def load(cls, **overrides: Any) -> Options:
        options = cls(
            spool_dir=SPOOL_DIR.get() or home() / "spool",
            max_queue=MAX_QUEUE.get(),
            exit_timeout=EXIT_TIMEOUT.get(),
            batch_size=BATCH_SIZE.get(),
            batch_interval=BATCH_INTERVAL.get(),
            retry_seconds=RETRY_SECONDS.get(),
            http_timeout=HTTP_TIMEOUT.get(),
            upload_threshold=UPLOAD_THRESHOLD.get(),
            upload_chunk=UPLOAD_CHUNK.get(),
        )
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - known
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
        if "spool_dir" in given:
            given["spool_dir"] = Path(given["spool_dir"]).expanduser()
        options = replace(options, **given)
        if options.max_queue < 1 or options.batch_size < 1:
            raise ConfigError("max_queue and batch_size must be at least 1")
        if min(options.exit_timeout, options.batch_interval, options.retry_seconds) < 0:
            raise ConfigError("exit_timeout, batch_interval and retry_seconds cannot be negative")
        if not 0 < options.upload_chunk <= MAX_UPLOAD_CHUNK or options.upload_threshold < 0:
            raise ConfigError(f"upload_chunk must be 1 to {MAX_UPLOAD_CHUNK} bytes and "
                              "upload_threshold at least 0")
        return options
