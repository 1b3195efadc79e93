"""The HTTP transport: the writer's ingest API and the query API over one keep-alive
httpx.Client (thread-safe, so the worker and logging threads share it)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from modeldb import _settings
from modeldb._data import file_digest
from modeldb._errors import QueryError, RequestRejected, ServerUnavailable
from modeldb._transports import StoredBlob, Target, Transport, WireEvent, unwrap_graphql
from modeldb._upload import ResumableUploader

# The statuses that mean "this batch is wrong": sending it again cannot help. Any other
# 4xx (401, 403, 404 …) says the client or server is misconfigured, which a person can fix,
# so those batches are kept in the spool rather than thrown away.
REJECTING = frozenset({400, 413, 422})
_CHUNK = 1 << 20


class HttpTransport(Transport):
    def __init__(self, target: Target, options: _settings.Options) -> None:
        self.url = target.url
        self._timeout = options.http_timeout
        self._http = httpx.Client(
            base_url=target.url,
            timeout=httpx.Timeout(options.http_timeout, connect=min(5.0, options.http_timeout)),
            headers=_headers(_settings.TOKEN.get()),
        )
        self._upload_threshold = options.upload_threshold
        self.uploads = ResumableUploader(self._http, target.url, options.upload_chunk,
                                         options.http_timeout)

    def _post(self, path: str, timeout: float | None, **kwargs: Any) -> httpx.Response:
        limit = self._timeout if timeout is None else max(0.05, min(timeout, self._timeout))
        try:
            response = self._http.post(path, timeout=limit, **kwargs)
        except httpx.TransportError as exc:  # refused, reset, DNS, timeouts, protocol errors
            raise ServerUnavailable(f"{self.url}{path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise ServerUnavailable(f"{self.url}{path}: HTTP {response.status_code}")
        return response

    def send(self, events: Sequence[WireEvent], timeout: float | None = None) -> None:
        response = self._post(
            "/api/v1/events",
            timeout,
            content=orjson.dumps(list(events)),
            headers={"content-type": "application/json"},
        )
        if response.status_code in (200, 201, 202):
            return
        message, errors = _error_of(response)
        if response.status_code in REJECTING:
            raise RequestRejected(response.status_code, message, errors)
        raise ServerUnavailable(f"{self.url}/api/v1/events: HTTP {response.status_code}: {message}")

    def put_artifact(self, path: Path, digest: str | None) -> StoredBlob:
        if digest is None:
            digest = file_digest(path)
        size = path.stat().st_size
        if size >= self._upload_threshold:  # large: chunked, resumable, deduped before sending
            return self.uploads.upload(path, digest, size)
        response = self._post(
            "/api/v1/artifacts",
            None,
            content=_chunks(path),
            headers={"x-content-digest": digest, "content-type": "application/octet-stream"},
        )
        if response.status_code in (200, 201):
            body = response.json()
            return StoredBlob(body["digest"], int(body["size"]), body["uri"])
        message, errors = _error_of(response)
        if response.status_code in REJECTING:
            raise RequestRejected(response.status_code, message, errors)
        raise ServerUnavailable(f"{self.url}/api/v1/artifacts: HTTP {response.status_code}: {message}")

    def query(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        response = self._post("/graphql", None, json={"query": query, "variables": dict(variables)})
        try:
            body = orjson.loads(response.content)  # 3x json's speed on a long metricSeries
        except ValueError:
            raise QueryError(f"{self.url}/graphql: HTTP {response.status_code}, not JSON") from None
        if not isinstance(body, dict) or ("data" not in body and "errors" not in body):
            raise QueryError(f"{self.url}/graphql: HTTP {response.status_code}: {body!r:.200}")
        return unwrap_graphql(body)

    def command(self, command: str, args: Mapping[str, Any]) -> dict[str, Any]:
        response = self._post("/api/v1/registry/commands", None,
                              json={"command": command, "args": dict(args), "source": "sdk"})
        if response.status_code == 200:
            return dict(response.json())
        message, _errors = _error_of(response)
        try:
            code = response.json().get("code")
        except (ValueError, AttributeError):
            code = None
        if 400 <= response.status_code < 500:
            raise RequestRejected(response.status_code, message, [{"code": code}] if code else [])
        raise ServerUnavailable(f"{self.url}/api/v1/registry/commands: HTTP "
                                f"{response.status_code}: {message}")

    def close(self) -> None:
        self._http.close()


def _headers(token: str | None) -> dict[str, str]:
    headers = {"user-agent": "modeldb-python"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return headers


def _error_of(response: httpx.Response) -> tuple[str, list[dict[str, Any]]]:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase, []
    if isinstance(body, dict):
        errors = body.get("errors")
        return str(body.get("error") or body.get("detail") or body)[:2000], (
            [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
        )
    return str(body)[:2000], []


def _chunks(path: Path) -> Iterator[bytes]:
    # A generator, so a model file of gigabytes streams instead of sitting in memory.
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk
