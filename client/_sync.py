"""Offline mode's second half: upload an embedded folder's log to a server (`modeldb sync`).

Log offline by pointing init() at a folder (the SDK appends to `<folder>/events.db`);
later `modeldb sync FOLDER --url http://host:port` sends every event, in log order and in
batches, after the artifacts those events name (from `<folder>/artifacts`, each with its
digest header, so the server checks what it got).

Exactly once: the server stores an event_id once (a resent batch is harmless), and a
cursor file in the folder remembers, per target URL, the last log position the server
acknowledged, so a second sync, or one resumed after a crash, sends only what is new.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldb import _settings
from modeldb._errors import ConfigError
from modeldb._transports import Transport, resolve
from modeldb.event_schema.types import GOVERNED_KINDS, GOVERNED_TYPES

CURSOR_FILE = "sync-cursors.json"
_ARTIFACT_URI = "modeldb://artifacts/"
# What the writer stamps on arrival; the target server stamps its own.
_STAMPS = ("recorded_at", "actor")


@dataclass(frozen=True)
class SyncResult:
    sent: int  # events the server acknowledged in this sync
    artifacts: int  # blobs uploaded
    skipped: int  # registry events: those enter a server only as registry commands
    position: int  # the cursor now: the last log position synced to this URL
    complete: bool  # False when max_batches stopped it early


def read_cursor(folder: Path, url: str) -> int:
    path = folder / CURSOR_FILE
    if not path.exists():
        return 0
    return int(json.loads(path.read_text()).get(url, 0))


def _write_cursor(folder: Path, url: str, position: int) -> None:
    path = folder / CURSOR_FILE
    cursors = json.loads(path.read_text()) if path.exists() else {}
    cursors[url] = position
    # Write-then-rename: a crash leaves the old cursor or the new one, never half a file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cursors, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _artifact_digests(value: Any) -> Iterator[str]:
    """Every `modeldb://artifacts/<digest>` an event's payload names, at any depth."""
    if isinstance(value, str):
        if value.startswith(_ARTIFACT_URI):
            yield value[len(_ARTIFACT_URI):]
    elif isinstance(value, dict):
        for item in value.values():
            yield from _artifact_digests(item)
    elif isinstance(value, list):
        for item in value:
            yield from _artifact_digests(item)


def _revealed(home: Path, raws: list[Any]) -> list[Any]:
    """Sensitive values are sealed with this folder's keys, which the server does not hold:
    send them in clear, still marked, for the server to seal with its own (over TLS in
    production). Values redacted here go as their markers."""
    if not any(raw.get("sensitive") for raw in raws):
        return raws
    from modeldb.writer.keys import server_key
    from modeldb.writer.sync import run_sync
    from modeldb.writer.vault import SqliteKeyStore, Vault

    vault = Vault(SqliteKeyStore(home / "keys.db"),
                  server_key(home, os.environ.get("MODELDB_SERVER_KEY") or None))
    return run_sync(vault.reveal(raws))


def sync(folder: str | os.PathLike[str], url: str, *, batch_size: int = 500,
         max_batches: int | None = None, transport: Transport | None = None) -> SyncResult:
    """Send what `folder`'s log holds past this URL's cursor; see the module docstring.

    `max_batches` stops after that many batches (the cursor keeps the place); a server
    that is away raises ServerUnavailable, a refused batch RequestRejected, and in both
    cases the events before it are synced and the next call resumes there."""
    from modeldb.writer.artifacts import LocalArtifactStore  # the SDK stays light
    from modeldb.writer.sqlite_log import SQLiteEventLog

    home = Path(folder).expanduser().absolute()
    if not (home / "events.db").is_file():
        raise ConfigError(f"{home} has no events.db: not a ModelDB folder")
    target = resolve(url)
    if target.scheme != "http":
        raise ConfigError(f"sync sends to a server (http://host:port), not {url!r}")
    if batch_size < 1:
        raise ConfigError("batch_size must be at least 1")
    own = transport is None
    transport = transport or target.open(_settings.Options.load())
    log = SQLiteEventLog(home / "events.db")
    store = LocalArtifactStore(home / "artifacts")
    position = read_cursor(home, target.url)
    sent = uploaded = skipped = batches = 0
    uploaded_digests: set[str] = set()
    try:
        while max_batches is None or batches < max_batches:
            recorded = log.read_sync(position, batch_size)
            if not recorded:
                return SyncResult(sent, uploaded, skipped, position, True)
            events = []
            for raw in _revealed(home, [item.raw for item in recorded]):
                if raw["aggregate"]["kind"] in GOVERNED_KINDS or raw["type"] in GOVERNED_TYPES:
                    skipped += 1
                    continue
                for digest in _artifact_digests(raw.get("payload")):
                    try:
                        blob = store.path_of(digest)
                    except ValueError:  # not a digest this store names: nothing to upload
                        continue
                    if digest not in uploaded_digests and blob.is_file():
                        transport.put_artifact(blob, digest)  # before the event naming it
                        uploaded_digests.add(digest)
                        uploaded += 1
                events.append({k: v for k, v in raw.items() if k not in _STAMPS})
            if events:
                transport.send(events)
                sent += len(events)
            position = recorded[-1].position
            _write_cursor(home, target.url, position)
            batches += 1
        return SyncResult(sent, uploaded, skipped, position, not log.read_sync(position, 1))
    finally:
        if own:
            transport.close()
