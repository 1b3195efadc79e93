"""Resumable artifact uploads: a small tus-like protocol for files too large for one request.

    POST   /api/v1/uploads            {"digest": "sha256:<hex>", "size": N}
           → 200 {"status": "stored", digest, size, uri}  the store has it: nothing to send
           → 201 {"status": "uploading", upload_id, offset, size, digest, chunk_size}
    PATCH  /api/v1/uploads/{id}       header Upload-Offset: <offset>, body: the next bytes
           → 200 {"offset": new offset}; 409 {"error", "offset": real offset} when the
             client's offset is not the server's; 413 past the size or above chunk_size
    HEAD   /api/v1/uploads/{id}       → headers Upload-Offset, Upload-Length
    GET    /api/v1/uploads/{id}       → {upload_id, digest, size, offset}
    POST   /api/v1/uploads/{id}/complete
           → 201 {digest, size, uri}: size and sha256 verified, file moved into the store;
             422 on a mismatch (the partial upload is discarded); 409 while bytes are missing
    DELETE /api/v1/uploads/{id}       → 204, the partial upload discarded

State lives on disk (`<store staging>/uploads/<id>/{meta.json,data}`): the offset is the
data file's length, so an upload survives a server restart, and bytes of a chunk cut off
half-way are kept (tus does the same; the final sha256 check catches any bad byte). The
upload id derives from (digest, size): a client that lost the id (its process restarted)
gets the same upload back, at its offset, by creating it again. Uploads idle for a week
are swept away.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from modeldb.writer.artifacts import ArtifactStore, StoredArtifact, check_digest, file_digest

DEFAULT_MAX_CHUNK = 64 * 1024 * 1024
DEFAULT_MAX_SIZE = 8 * 1024**3
EXPIRE_SECONDS = 7 * 24 * 3600
_ID = re.compile(r"^[0-9a-f]{32}$")


class UploadError(Exception):
    """A refused request: its HTTP status, message and extra answer fields."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message, **self.extra}, self.status)


@dataclass(frozen=True)
class Upload:
    upload_id: str
    digest: str
    size: int
    offset: int

    def to_dict(self) -> dict[str, Any]:
        return {"upload_id": self.upload_id, "digest": self.digest, "size": self.size,
                "offset": self.offset}


class UploadArea:
    """The partial uploads of one artifact store, on disk."""

    def __init__(self, store: ArtifactStore, *, max_size: int = DEFAULT_MAX_SIZE,
                 max_chunk: int = DEFAULT_MAX_CHUNK) -> None:
        self.store = store
        self.root = store.staging / "uploads"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_size, self.max_chunk = max_size, max_chunk
        # One writer per upload at a time in this process (PATCH and complete).
        self._locks: dict[str, asyncio.Lock] = {}

    def _dir(self, upload_id: str) -> Path:
        folder = self.root / upload_id
        # Checked against the pattern, so an id can never name a path outside the area.
        if not _ID.match(upload_id) or not (folder / "meta.json").is_file():
            raise UploadError(404, f"no upload {upload_id[:40]!r} (finished, discarded or unknown)")
        return folder

    def get(self, upload_id: str) -> Upload:
        folder = self._dir(upload_id)
        meta = json.loads((folder / "meta.json").read_text())
        data = folder / "data"
        offset = data.stat().st_size if data.exists() else 0
        return Upload(upload_id, meta["digest"], meta["size"], offset)

    async def create(self, digest: Any, size: Any) -> Upload | StoredArtifact:
        try:
            check_digest(digest)
        except ValueError as exc:
            raise UploadError(400, str(exc)) from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise UploadError(400, f"size must be a non-negative integer, not {size!r}")
        if size > self.max_size:
            raise UploadError(413, f"artifact of {size} bytes exceeds {self.max_size} bytes")
        stored = await _in_store(self.store.stat, digest)
        if stored is not None:
            return stored  # dedupe: the content is there, no byte needs to travel
        self._sweep()
        upload_id = hashlib.sha256(f"{digest}:{size}".encode()).hexdigest()[:32]
        folder = self.root / upload_id
        if not (folder / "meta.json").is_file():
            folder.mkdir(exist_ok=True)
            (folder / "data").touch()
            tmp = folder / "meta.json.tmp"
            tmp.write_text(json.dumps({"digest": digest, "size": size, "created": time.time()}))
            os.replace(tmp, folder / "meta.json")  # the upload exists once its meta is whole
        return self.get(upload_id)

    async def append(self, upload_id: str, offset: int, chunks: AsyncIterator[bytes],
                     declared: int | None) -> Upload:
        async with self._lock(upload_id):
            upload = self.get(upload_id)
            if offset != upload.offset:
                raise UploadError(409, f"upload is at offset {upload.offset}, not {offset}",
                                  offset=upload.offset)
            room = min(self.max_chunk, upload.size - offset)
            if declared is not None and declared > room:
                raise _too_large(upload, room, self.max_chunk)
            data = self._dir(upload_id) / "data"
            with data.open("r+b") as f:
                f.seek(offset)
                written = 0
                try:
                    async for chunk in chunks:
                        written += len(chunk)
                        if written > room:
                            f.truncate(offset)  # refused whole: the offset stays where it was
                            raise _too_large(upload, room, self.max_chunk)
                        f.write(chunk)
                except ClientDisconnect:
                    pass  # keep what arrived; the client asks for the offset and goes on
                f.flush()
                os.fsync(f.fileno())  # acknowledged bytes survive a crash of the machine
            return self.get(upload_id)

    async def complete(self, upload_id: str) -> StoredArtifact:
        async with self._lock(upload_id):
            upload = self.get(upload_id)
            if upload.offset != upload.size:
                raise UploadError(409, f"upload has {upload.offset} of {upload.size} bytes",
                                  offset=upload.offset)
            data = self._dir(upload_id) / "data"
            digest = await asyncio.to_thread(file_digest, data)
            if digest != upload.digest:
                self.discard(upload_id)
                raise UploadError(422, f"uploaded bytes have digest {digest}, expected "
                                       f"{upload.digest}; the upload was discarded, start again")
            # On a store error the verified bytes stay here and `complete` can be called again.
            stored = await _in_store(self.store.adopt, data, digest, upload.size)
            self.discard(upload_id)
            return stored

    def discard(self, upload_id: str) -> None:
        shutil.rmtree(self._dir(upload_id), ignore_errors=True)
        self._locks.pop(upload_id, None)

    def _lock(self, upload_id: str) -> asyncio.Lock:
        return self._locks.setdefault(upload_id, asyncio.Lock())

    def _sweep(self) -> None:
        """Drop uploads nobody touched for EXPIRE_SECONDS (abandoned by their client)."""
        cutoff = time.time() - EXPIRE_SECONDS
        for folder in self.root.iterdir():
            try:
                if (folder / "data").stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                continue


async def _in_store(call: Callable[..., Any], *args: Any) -> Any:
    """A store call in a thread (S3 blocks); its failure (S3 away, bad credentials) is a 503."""
    try:
        return await asyncio.to_thread(call, *args)
    except OSError as exc:  # ArtifactStoreUnavailable, a full disk
        raise UploadError(503, f"artifact store unavailable, retry later: {exc}") from exc


def _too_large(upload: Upload, room: int, max_chunk: int) -> UploadError:
    return UploadError(413, f"a chunk may carry at most {room} bytes here (chunk_size {max_chunk}, "
                            f"{upload.size - upload.offset} bytes left)", offset=upload.offset)


def uploads_router(get_store: Callable[[], ArtifactStore], *, max_size: int = DEFAULT_MAX_SIZE,
                   max_chunk: int = DEFAULT_MAX_CHUNK) -> APIRouter:
    router = APIRouter(prefix="/api/v1/uploads")
    areas: dict[int, UploadArea] = {}

    def area() -> UploadArea:
        store = get_store()  # built lazily: the store exists once the server has started
        if id(store) not in areas:
            areas[id(store)] = UploadArea(store, max_size=max_size, max_chunk=max_chunk)
        return areas[id(store)]

    @router.post("")
    async def create(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(400, 'body must be a JSON object {"digest": "sha256:<hex>", "size": N}')
        try:
            found = await area().create(body.get("digest"), body.get("size"))
        except UploadError as exc:
            return exc.response()
        if isinstance(found, StoredArtifact):
            return JSONResponse({"status": "stored", "digest": found.digest, "size": found.size,
                                 "uri": found.uri}, 200)
        return JSONResponse({"status": "uploading", **found.to_dict(), "chunk_size": max_chunk}, 201,
                            headers={"location": f"/api/v1/uploads/{found.upload_id}"})

    @router.head("/{upload_id}")
    async def head(upload_id: str) -> Response:
        try:
            upload = area().get(upload_id)
        except UploadError as exc:
            return Response(status_code=exc.status)
        return Response(headers={"upload-offset": str(upload.offset),
                                 "upload-length": str(upload.size), "cache-control": "no-store"})

    @router.get("/{upload_id}")
    async def status(upload_id: str) -> JSONResponse:
        try:
            return JSONResponse(area().get(upload_id).to_dict())
        except UploadError as exc:
            return exc.response()

    @router.patch("/{upload_id}")
    async def append(upload_id: str, request: Request) -> JSONResponse:
        offset, declared = _int_header(request, "upload-offset"), _int_header(request, "content-length")
        if offset is None:
            return _error(400, "the Upload-Offset header must carry the byte offset of this chunk")
        try:
            upload = await area().append(upload_id, offset, request.stream(), declared)
        except UploadError as exc:
            return exc.response()
        return JSONResponse({"offset": upload.offset, "size": upload.size},
                            headers={"upload-offset": str(upload.offset)})

    @router.post("/{upload_id}/complete")
    async def complete(upload_id: str) -> JSONResponse:
        try:
            stored = await area().complete(upload_id)
        except UploadError as exc:
            return exc.response()
        return JSONResponse({"digest": stored.digest, "size": stored.size, "uri": stored.uri}, 201)

    @router.delete("/{upload_id}")
    async def discard(upload_id: str) -> Response:
        try:
            area().discard(upload_id)  # 404 for an unknown id (see UploadArea._dir)
        except UploadError as exc:
            return exc.response()
        return Response(status_code=204)

    return router


def _int_header(request: Request, name: str) -> int | None:
    raw = request.headers.get(name)
    return int(raw) if raw is not None and raw.isdigit() else None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)
