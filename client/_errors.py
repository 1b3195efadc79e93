"""The SDK's errors, one small hierarchy::

    ModelDBError                 every error the SDK raises on purpose
    ├── ConfigError              init()'s arguments, a URL or a MODELDB_* setting cannot be used
    │   └── UnsupportedTransport the URL's transport is not available in this installation
    │                            (also a NotImplementedError)
    ├── InvalidArgument          a logging call got a value that cannot be recorded
    │                            (also a ValueError)
    ├── TransportError           talking to the server or the event log failed
    │   ├── ServerUnavailable    not reachable, or 5xx / timeouts, within the retry budget
    │   └── RequestRejected      the server refused the request itself (4xx): do not retry
    └── QueryError               search_runs: the query was refused or failed

Logging calls never raise TransportError: the background worker retries, then spools to a
local file. Only calls that need an answer (search_runs, log_artifact) can raise it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ModelDBError(Exception):
    """Base of every error the SDK raises on purpose."""


class ConfigError(ModelDBError):
    """init()'s arguments, a URL or a MODELDB_* setting cannot be used."""


class UnsupportedTransport(ConfigError, NotImplementedError):
    """The URL names a transport that this installation does not provide (yet)."""


class InvalidArgument(ModelDBError, ValueError):
    """A logging call got a value that cannot be recorded; the message says which."""


class TransportError(ModelDBError):
    """Talking to the server or the event log failed."""


class ServerUnavailable(TransportError):
    """The server could not be reached, or answered 5xx / timed out; worth retrying."""


class RequestRejected(TransportError):
    """The server refused the request itself (a 4xx): sending it again cannot help.

    `errors` are the server's per-event complaints (`{"index", "event_id", "error"}`),
    so a batch can be split into the events it refused and the ones it would take.
    """

    def __init__(
        self, status: int, message: str, errors: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        self.status = status
        self.message = message
        self.errors = [dict(e) for e in errors]
        super().__init__(f"HTTP {status}: {message}")

    @property
    def indexes(self) -> set[int]:
        """Positions, in the batch sent, of the events the server named as bad."""
        return {e["index"] for e in self.errors if isinstance(e.get("index"), int)}


class QueryError(ModelDBError):
    """search_runs: the server refused the query (a bad filter, say) or failed."""
