"""HTTP ingest: POST /api/v1/events and the artifact upload/download routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from modeldb.event_schema import InvalidBatch
from modeldb.event_schema.codec import parse_body
from modeldb.writer.artifacts import DigestMismatch, LocalArtifactStore
from modeldb.writer.service import BatchTooLarge, Writer

DEFAULT_MAX_BODY = 32 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


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
    get_artifacts: Callable[[], LocalArtifactStore],
    actor_of: Callable[[Request], str],
    *,
    max_body: int = DEFAULT_MAX_BODY,
    max_artifact: int = 8 * 1024**3,
) -> APIRouter:
    router = APIRouter(prefix="/api/v1")

    @router.post("/events", status_code=202)
    async def post_events(request: Request) -> JSONResponse:
        try:
            body = b"".join([chunk async for chunk in _limited(request, max_body)])
        except BodyTooLarge:
            return _error(413, f"request body exceeds {max_body} bytes")
        try:
            items = parse_body(body)
            if not isinstance(items, list):
                return _error(400, "body must be a JSON array of events or NDJSON")
            positions = await get_writer().ingest(items, actor_of(request))
        except InvalidBatch as exc:
            status = 400 if any("malformed JSON" in e.reason for e in exc.errors) else 422
            return JSONResponse(
                {"error": str(exc), "errors": [e.to_dict() for e in exc.errors]}, status
            )
        except BatchTooLarge as exc:
            return _error(413, str(exc))
        except (ConnectionError, TimeoutError) as exc:
            # Nothing was acknowledged: the client keeps the batch and retries later.
            return _error(503, f"event log unavailable, retry later: {exc}")
        return JSONResponse({"positions": positions}, 202)

    @router.post("/artifacts", status_code=201)
    async def upload_artifact(request: Request) -> JSONResponse:
        expected = request.headers.get("x-content-digest")
        try:
            stored = await get_artifacts().put_stream(_limited(request, max_artifact), expected)
        except BodyTooLarge:
            return _error(413, f"artifact exceeds {max_artifact} bytes")
        except DigestMismatch as exc:
            return _error(422, str(exc))
        return JSONResponse({"digest": stored.digest, "size": stored.size, "uri": stored.uri}, 201)

    @router.get("/artifacts/{digest}", response_model=None)
    async def download_artifact(digest: str) -> StreamingResponse | JSONResponse:
        store = get_artifacts()
        try:
            found = store.exists(digest)
        except ValueError as exc:
            return _error(400, str(exc))
        if not found:
            return _error(404, f"no artifact {digest}")
        return StreamingResponse(store.open_stream(digest), media_type="application/octet-stream")

    return router


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)
