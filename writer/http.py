"""HTTP ingest: POST /api/v1/events, the artifact upload/download routes, and the registry
commands (POST /api/v1/registry/commands)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from modeldb.event_schema import InvalidBatch
from modeldb.event_schema.codec import parse_body
from modeldb.writer.artifacts import ArtifactStore, ArtifactStoreUnavailable, DigestMismatch
from modeldb.writer.commands import CommandService, describe_commands
from modeldb.writer.log import EventTooLarge
from modeldb.writer.registry import CommandRefused, Principal
from modeldb.writer.service import BatchTooLarge, Writer

DEFAULT_MAX_BODY = 32 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


class BadBody(ValueError):
    """The body is not what the route takes (HTTP 400)."""


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    # Count while streaming, so an oversize body is refused without being held in memory.
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise BodyTooLarge
        yield chunk


def ingest_router(
    get_writer: Callable[[], Writer],
    get_artifacts: Callable[[], ArtifactStore],
    actor_of: Callable[[Request], str],
    *,
    max_body: int = DEFAULT_MAX_BODY,
    max_artifact: int = 8 * 1024**3,
    authorize: Callable[[Request, list[Any]], Awaitable[None]] | None = None,
    may_download: Callable[[Request, str], Awaitable[bool]] | None = None,
) -> APIRouter:
    """`authorize(request, items)` raises PermissionError when the caller may not write
    some event (403); `may_download(request, digest)` False answers 404 (modeldb.infra.guard)."""
    router = APIRouter(prefix="/api/v1")

    async def ingest(
        request: Request, to_items: Callable[[bytes], list[Any]]
    ) -> JSONResponse | tuple[list[Any], list[int]]:
        """Read a size-limited body, turn it into wire events and append them whole: the
        events and their positions, or the error to answer."""
        try:
            body = b"".join([chunk async for chunk in _limited(request, max_body)])
        except BodyTooLarge:
            return _error(413, f"request body exceeds {max_body} bytes")
        try:
            items = to_items(body)
            if authorize is not None:
                await authorize(request, items)
            positions = await get_writer().ingest(items, actor_of(request), governed=False)
        except BadBody as exc:
            return _error(400, str(exc))
        except PermissionError as exc:
            return _error(403, str(exc))
        except InvalidBatch as exc:
            status = 400 if any("malformed JSON" in e.reason for e in exc.errors) else 422
            return JSONResponse(
                {"error": str(exc), "errors": [e.to_dict() for e in exc.errors]}, status
            )
        except (BatchTooLarge, EventTooLarge) as exc:
            return _error(413, str(exc))
        except (ConnectionError, TimeoutError) as exc:
            # Nothing was acknowledged: the client keeps the batch and retries later.
            return _error(503, f"event log unavailable, retry later: {exc}")
        return items, positions

    @router.post("/events", status_code=202)
    async def post_events(request: Request) -> JSONResponse:
        def events(body: bytes) -> list[Any]:
            items = parse_body(body)
            if not isinstance(items, list):
                raise BadBody("body must be a JSON array of events or NDJSON")
            return items

        done = await ingest(request, events)
        if isinstance(done, JSONResponse):
            return done
        return JSONResponse({"positions": done[1]}, 202)

    @router.post("/lineage", status_code=201)
    async def post_lineage(request: Request) -> JSONResponse:
        # OpenLineage RunEvents, as openlineage-python's HTTP transport posts them by default.
        from modeldb.ingest_adapters.openlineage import MalformedLineage, map_body

        def events(body: bytes) -> list[Any]:
            try:
                return map_body(body, request.headers.get("content-encoding"))
            except MalformedLineage as exc:
                raise BadBody(f"not an OpenLineage RunEvent: {exc}") from None

        done = await ingest(request, events)
        if isinstance(done, JSONResponse):
            return done
        return JSONResponse({"event_ids": [e["event_id"] for e in done[0]]}, 201)

    @router.post("/artifacts", status_code=201)
    async def upload_artifact(request: Request) -> JSONResponse:
        expected = request.headers.get("x-content-digest")
        try:
            stored = await get_artifacts().put_stream(_limited(request, max_artifact), expected)
        except BodyTooLarge:
            return _error(413, f"artifact exceeds {max_artifact} bytes")
        except DigestMismatch as exc:
            return _error(422, str(exc))
        except ArtifactStoreUnavailable as exc:
            return _error(503, f"artifact store unavailable, retry later: {exc}")
        return JSONResponse({"digest": stored.digest, "size": stored.size, "uri": stored.uri}, 201)

    @router.get("/artifacts/{digest}", response_model=None)
    async def download_artifact(digest: str, request: Request) -> StreamingResponse | JSONResponse:
        store = get_artifacts()
        if may_download is not None and not await may_download(request, digest):
            return _error(404, f"no artifact {digest}")  # as if it did not exist
        try:
            found = await asyncio.to_thread(store.exists, digest)  # S3: a network call
        except ValueError as exc:
            return _error(400, str(exc))
        except ArtifactStoreUnavailable as exc:
            return _error(503, f"artifact store unavailable, retry later: {exc}")
        if not found:
            return _error(404, f"no artifact {digest}")
        return StreamingResponse(store.open_stream(digest), media_type="application/octet-stream")

    return router


def registry_router(
    get_commands: Callable[[], CommandService],
    principal_of: Callable[[Request], Principal],
) -> APIRouter:
    """POST /api/v1/registry/commands: one registry command, checked and appended.

    Body: `{"command": "set_stage", "args": {...}, "expected_revision": 7, "source": "sdk"}`
    (`expected_revision` and `source` optional). Answers 200 with the events appended, the
    aggregate's new revision and state and the command's result; 4xx with `error` and
    `code` (invalid 422, forbidden 403, not_found 404, conflict/locked 409).
    """
    router = APIRouter(prefix="/api/v1/registry")

    @router.get("/commands")
    async def list_commands() -> JSONResponse:
        return JSONResponse(describe_commands())

    @router.post("/commands")
    async def post_command(request: Request) -> JSONResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            return _error(400, "body must be a JSON object {command, args}")
        if not isinstance(body, dict) or not isinstance(body.get("command"), str) \
                or not isinstance(body.get("args", {}), dict):
            return _error(400, "body must be a JSON object {command, args}")
        expected, source = body.get("expected_revision"), body.get("source", "api")
        if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool)):
            return _error(400, "expected_revision must be an integer")
        if not isinstance(source, str) or not 0 < len(source) <= 100:
            return _error(400, "source must be a string of 1 to 100 characters")
        try:
            result = await get_commands().execute(
                body["command"], body.get("args", {}), principal_of(request),
                expected_revision=expected, source=source)
        except CommandRefused as exc:
            return JSONResponse({"error": exc.message, "code": exc.code}, exc.status)
        except (ConnectionError, TimeoutError) as exc:
            return _error(503, f"event log unavailable, retry later: {exc}")
        return JSONResponse(result.to_dict(), 200)

    return router


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)
