"""Where events go: the small Transport interface, the URL → transport registry, and the
embedded transport (the SDK appends to a local SQLite log itself).

A transport makes one attempt per call; retrying, backoff and spooling live in the worker,
so every transport gets them for free. Adding one means one class and one line in
`_SCHEMES`.
"""

from __future__ import annotations

import getpass
import hashlib
import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modeldb import _settings
from modeldb._errors import (
    ConfigError,
    QueryError,
    RequestRejected,
    ServerUnavailable,
    UnsupportedTransport,
)

WireEvent = Mapping[str, Any]


@dataclass(frozen=True)
class StoredBlob:
    """Where an artifact's bytes were stored, as the store reported it."""

    digest: str  # "sha256:<hex>"
    size: int
    uri: str


class Transport(ABC):
    """One attempt at each operation; raise ServerUnavailable (retry) or RequestRejected."""

    #: The target, normalised; the spool folder is named after its hash.
    url: str
    #: True when send() does local I/O only (no network): it may run under the fork guard.
    local: bool = False

    @abstractmethod
    def send(self, events: Sequence[WireEvent], timeout: float | None = None) -> None:
        """Append a batch of wire-form events atomically (all or nothing)."""

    @abstractmethod
    def put_artifact(self, path: Path, digest: str | None) -> StoredBlob:
        """Store one file; `digest` (when known) lets the store check what it received."""

    @abstractmethod
    def query(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        """Run a GraphQL query; its `data`. Raises QueryError for GraphQL errors."""

    @abstractmethod
    def command(self, command: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Run one registry command (see modeldb.writer.commands); the writer's answer.
        Raises RequestRejected when it is refused (404, 403, 409, 422)."""

    @abstractmethod
    def close(self) -> None: ...


@dataclass(frozen=True)
class Target:
    """A resolved init() url: which transport, and what it needs to be built."""

    scheme: str  # "embedded", "http", "kafka", …
    url: str  # normalised, e.g. "http://127.0.0.1:8000" or "sqlite:////home/me/.modeldb/events.db"
    home: Path | None = None  # embedded only
    log_path: Path | None = None  # embedded only

    @property
    def key(self) -> str:
        """A short stable name for this target, for its spool folder."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    def open(self, options: _settings.Options) -> Transport:
        spec = _SCHEMES.get(self.scheme)
        if spec is None:
            raise ConfigError(f"no transport for {self.url!r}")
        factory = spec if callable(spec) else _load(spec)
        return factory(self, options)


_LOG_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def resolve(url: str | os.PathLike[str] | None) -> Target:
    """init()'s url → a Target. None: $MODELDB_URL, else embedded in $MODELDB_HOME."""
    if url is None:
        url = _settings.URL.get()
    if url is None:
        return _embedded(_settings.home())
    text = os.fspath(url)
    if "://" not in text:
        path = Path(text).expanduser()
        return _embedded_file(path) if path.suffix in _LOG_SUFFIXES else _embedded(path)
    scheme = text.split("://", 1)[0].lower()
    if scheme in ("http", "https"):
        parts = urlsplit(text)
        if not parts.netloc:
            raise ConfigError(f"{text!r} has no host: expected http://host:port")
        return Target("http", text.rstrip("/"))
    if scheme in ("file", "sqlite", "offline"):
        # As SQLAlchemy and the writer read them: sqlite:///rel.db, sqlite:////abs/path.db.
        # offline:///folder is a folder too, named for what it is for: `modeldb sync` later.
        rest = text.split("://", 1)[1]
        path = Path(rest.removeprefix("/") if scheme == "sqlite" else rest or ".")
        return _embedded_file(path) if path.suffix in _LOG_SUFFIXES else _embedded(path)
    if scheme in _SCHEMES:
        return Target(scheme, text)
    raise ConfigError(
        f"unknown URL scheme {scheme!r} in {text!r}: use http://host:port, a folder, "
        "sqlite:///path, file://path or offline://path"
    )


def _embedded(home: Path) -> Target:
    home = home.expanduser().absolute()
    return _embedded_file(home / "events.db", home)


def _embedded_file(log_path: Path, home: Path | None = None) -> Target:
    log_path = log_path.expanduser().absolute()
    home = home or log_path.parent
    return Target("embedded", f"sqlite:///{log_path}", home=home, log_path=log_path)


def local_user() -> str:
    """The actor of embedded events: the local user, as `modeldb serve` stamps it too."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


class SelfWritingTransport(Transport):
    """A transport where the SDK is its own writer (embedded, kafka://): it validates and
    stamps events as the server would, appends them to the log, and stores artifacts in a
    local content-addressed store. Subclasses set `_log`, `_writer`, `_store` and `actor`."""

    _log: Any
    _writer: Any
    _store: Any
    actor: str

    def send(self, events: Sequence[WireEvent], timeout: float | None = None) -> None:
        from modeldb.event_schema import InvalidBatch
        from modeldb.writer import BatchTooLarge
        from modeldb.writer.vault import VaultUnavailable

        try:
            stored = self._writer.prepare(list(events), self.actor)
            self._writer.seal_sync(stored)
        except InvalidBatch as exc:
            raise RequestRejected(422, str(exc), [e.to_dict() for e in exc.errors]) from None
        except BatchTooLarge as exc:
            raise RequestRejected(413, str(exc)) from None
        except VaultUnavailable as exc:
            raise ServerUnavailable(str(exc)) from exc
        from modeldb.writer.log import EventLogUnavailable, EventTooLarge

        try:
            self._log.append_sync(stored)
        except EventTooLarge as exc:
            raise RequestRejected(413, str(exc)) from None
        except EventLogUnavailable as exc:  # the log is away or locked: retry, then spool
            raise ServerUnavailable(str(exc)) from exc

    def put_artifact(self, path: Path, digest: str | None) -> StoredBlob:
        stored = self._store.put_file(path)
        if digest and digest != stored.digest:
            raise RequestRejected(422, f"{path} changed while it was stored")
        return StoredBlob(stored.digest, stored.size, stored.uri)


class EmbeddedTransport(SelfWritingTransport):
    """The SDK is its own writer: validate, stamp with the local user, append to SQLite."""

    local = True

    def __init__(self, target: Target, options: _settings.Options) -> None:
        # The writer pulls in sqlite and the artifact store: only embedded users pay for them.
        from modeldb.writer import LocalArtifactStore, Writer
        from modeldb.writer.keys import server_key
        from modeldb.writer.sqlite_log import SQLiteEventLog
        from modeldb.writer.vault import SqliteKeyStore, Vault

        assert target.home is not None and target.log_path is not None
        self.url = target.url
        self.home = target.home
        self.actor = local_user()
        self._log = SQLiteEventLog(target.log_path)
        # The same keys and server key as `modeldb serve` on this home (infra.settings).
        vault = Vault(SqliteKeyStore(target.home / "keys.db"),
                      server_key(target.home, os.environ.get("MODELDB_SERVER_KEY") or None))
        self._writer = Writer(self._log, vault=vault)
        self._store = LocalArtifactStore(target.home / "artifacts")

    def query(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        try:
            from modeldb.infra.embedded import execute_graphql
        except ImportError as exc:
            raise UnsupportedTransport(
                f"queries on an embedded home need the server parts ({exc}); "
                "install modeldb[server], or point init() at a running server"
            ) from exc
        try:
            return unwrap_graphql(execute_graphql(self.home, query, dict(variables)))
        except ValueError as exc:  # execute_graphql reports GraphQL errors as ValueError
            raise QueryError(str(exc)) from exc

    def command(self, command: str, args: Mapping[str, Any]) -> dict[str, Any]:
        from modeldb.writer.commands import CommandService
        from modeldb.writer.registry import ADMIN_ROLE, CommandRefused, Principal
        from modeldb.writer.sync import run_sync

        # The local user owns an embedded home. Webhooks need a server to deliver them, so
        # this service has no signing secrets.
        service = CommandService(self._writer, self._log)
        who = Principal(self.actor, frozenset({ADMIN_ROLE}))
        try:
            result = run_sync(service.execute(command, args, who, source="sdk"))
        except CommandRefused as exc:
            raise RequestRejected(exc.status, exc.message, [{"code": exc.code}]) from None
        except ConnectionError as exc:  # EventLogUnavailable: locked past its timeout, disk full
            raise ServerUnavailable(str(exc)) from exc
        return result.to_dict()

    def close(self) -> None:
        # The log is closed by the garbage collector; its close() is a coroutine.
        pass


def unwrap_graphql(result: Mapping[str, Any]) -> dict[str, Any]:
    """Accept a GraphQL response ({data, errors}) or bare data; the data, or QueryError."""
    if set(result) <= {"data", "errors", "extensions"} and ("data" in result or "errors" in result):
        if result.get("errors"):
            messages = "; ".join(str(e.get("message", e)) for e in result["errors"])
            raise QueryError(messages)
        return dict(result.get("data") or {})
    return dict(result)


def _load(spec: str) -> Callable[[Target, _settings.Options], Transport]:
    module, _, name = spec.partition(":")
    factory: Callable[[Target, _settings.Options], Transport] = getattr(
        importlib.import_module(module), name
    )
    return factory


# scheme → a factory, or "module:Class" imported on first use (keeps `import modeldb` light).
_SCHEMES: dict[str, str | Callable[[Target, _settings.Options], Transport]] = {
    "embedded": EmbeddedTransport,
    "http": "modeldb._http:HttpTransport",
    "kafka": "modeldb._kafka:KafkaTransport",
}
