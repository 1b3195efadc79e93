"""The spool: batches that could not be delivered yet, as fsynced NDJSON files.

One folder per target URL (`<root>/<url hash>/`): `batch-<time ns>-<pid>-<n>.ndjson`
are waiting to be resent, oldest first (their names sort by time); `rejected-*.ndjson` are
events the server refused, kept for a person to look at, with the server's reasons beside
them in `rejected-*.error.json`; `blobs/` holds artifact files waiting to be uploaded.
A file is deleted only after the server acknowledged it. Events keep the event_id they were
made with, so a batch resent after a crash is stored once.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; two clients may then resend a file twice
    fcntl = None  # type: ignore[assignment]

_counter = itertools.count()


class Spool:
    def __init__(self, root: Path, url: str) -> None:
        self.dir = root
        self.blobs = root / "blobs"
        self.url = url
        # Cheap flags so the worker lists the folder only when there may be something in it;
        # set by anyone who writes, cleared by the worker once it found nothing.
        self.maybe_pending = any(self.pending())
        self.maybe_blobs = any(self.pending_blobs())
        self.generation = 0  # counts writes, so a reader can tell whether it saw them all

    def _ensure(self) -> None:
        if not self.dir.is_dir():
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "url.txt").write_text(self.url + "\n")

    # -- batches ----------------------------------------------------------------------------

    def write(self, events: Sequence[Mapping[str, Any]]) -> Path:
        """Keep a batch durably until it can be sent; atomic, so readers never see half."""
        self._ensure()
        name = f"batch-{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}.ndjson"
        path = self.dir / name
        _write_durably(path, b"".join(orjson.dumps(e) + b"\n" for e in events))
        self.generation += 1
        self.maybe_pending = True
        return path

    def pending(self) -> list[Path]:
        try:
            return sorted(self.dir.glob("batch-*.ndjson"))
        except OSError:
            return []

    @contextlib.contextmanager
    def claim(self, path: Path) -> Iterator[list[dict[str, Any]] | None]:
        """The events of one spooled batch, locked against other clients; None when it is
        gone or another process is sending it right now. Delete it with `done`."""
        try:
            f = open(path, "rb")  # noqa: SIM115 - held open for the lock's lifetime
        except FileNotFoundError:
            yield None
            return
        with f:
            if fcntl is not None:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield None
                    return
            if os.fstat(f.fileno()).st_nlink == 0:  # sent and deleted before we locked it
                yield None
                return
            yield [orjson.loads(line) for line in f.read().splitlines() if line.strip()]

    @staticmethod
    def done(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def reject(self, events: Sequence[Mapping[str, Any]], reason: str,
               errors: Sequence[Mapping[str, Any]] = ()) -> Path:
        """Set refused events aside for a person, with the server's reasons."""
        self._ensure()
        stem = f"rejected-{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}"
        path = self.dir / f"{stem}.ndjson"
        lines = (orjson.dumps(e, option=orjson.OPT_NON_STR_KEYS, default=str) for e in events)
        _write_durably(path, b"".join(line + b"\n" for line in lines))
        _write_durably(self.dir / f"{stem}.error.json",
                       orjson.dumps({"error": reason, "errors": list(errors)},
                                    option=orjson.OPT_INDENT_2, default=str))
        return path

    def rejected(self) -> list[Path]:
        return sorted(self.dir.glob("rejected-*.ndjson"))

    # -- artifact files waiting for upload --------------------------------------------------

    def stash_blob(self, path: Path, digest: str) -> Path:
        self.blobs.mkdir(parents=True, exist_ok=True)
        target = self.blobs / digest.replace(":", "-")
        if not target.exists():
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            shutil.copyfile(path, tmp)
            _fsync(tmp)
            os.replace(tmp, target)
        self.maybe_blobs = True
        return target

    def pending_blobs(self) -> list[tuple[Path, str]]:
        try:
            return [(p, p.name.replace("-", ":", 1)) for p in sorted(self.blobs.glob("sha256-*"))]
        except OSError:
            return []


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    # Write, fsync, rename, fsync the folder: after a crash the file is whole or absent.
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
