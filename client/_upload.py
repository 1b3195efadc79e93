"""The client half of resumable uploads (see modeldb.writer.uploads): a large artifact file
goes up in chunks read one at a time from disk, never whole into memory.

Each call is one attempt, as the Transport contract wants: it asks the server where the
upload stands (creating it, or finding it again: the server names an upload by digest and
size), sends the missing chunks, and completes. A dropped connection or a restarting
server raises ServerUnavailable; the worker retries, and the next attempt resumes at the
offset the server reports, so only the missing bytes travel. Content the server already
has costs one small request and no bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from modeldb._errors import RequestRejected, ServerUnavailable
from modeldb._transports import StoredBlob

_MAX_RESYNCS = 8  # 409 answers in a row before this attempt gives up (another writer races us)


class ResumableUploader:
    def __init__(self, http: httpx.Client, url: str, chunk_size: int, timeout: float) -> None:
        self._http, self.url, self.chunk_size, self._timeout = http, url, chunk_size, timeout
        self.sent = 0  # artifact bytes this uploader sent, over all its uploads (for stats)
        #: Called with the server's offset after each chunk it acknowledged.
        self.on_chunk: Callable[[int], None] | None = None

    def upload(self, path: Path, digest: str, size: int) -> StoredBlob:
        try:
            return self._attempt(path, digest, size)
        except RequestRejected as exc:
            if exc.status != 422:
                raise
            # The server checked the whole upload, found another digest and discarded it: a
            # crash of its machine can leave a bad tail, or the file changed. A fresh start
            # tells which (a changed file fails again, and that 422 stands).
            return self._attempt(path, digest, size)

    def _attempt(self, path: Path, digest: str, size: int) -> StoredBlob:
        answer = self._call("POST", "/api/v1/uploads", (200, 201), missing_is_retryable=False,
                            json={"digest": digest, "size": size})
        if answer.get("status") == "stored":
            return _blob(answer)  # dedupe: the server has this content
        upload_id, offset = str(answer["upload_id"]), int(answer["offset"])
        chunk = min(self.chunk_size, int(answer.get("chunk_size") or self.chunk_size))
        for _ in range(_MAX_RESYNCS):
            offset = self._send_from(path, upload_id, offset, size, chunk)
            done = self._call("POST", f"/api/v1/uploads/{upload_id}/complete", (201, 409))
            if "offset" not in done:
                return _blob(done)
            offset = int(done["offset"])  # someone truncated or raced us: fill the gap
        raise ServerUnavailable(f"{self.url}: upload {upload_id} of {path} kept changing under us")

    def _send_from(self, path: Path, upload_id: str, offset: int, size: int, chunk: int) -> int:
        resyncs = 0
        with open(path, "rb") as f:
            while offset < size:
                f.seek(offset)
                data = f.read(min(chunk, size - offset))
                if not data:
                    raise RequestRejected(422, f"{path} shrank while it was uploaded")
                answer = self._call("PATCH", f"/api/v1/uploads/{upload_id}", (200, 409), content=data,
                                    headers={"upload-offset": str(offset),
                                             "content-type": "application/offset+octet-stream"})
                if "size" not in answer:  # 409: our offset was wrong; go on from the server's
                    resyncs += 1
                    if resyncs > _MAX_RESYNCS:
                        raise ServerUnavailable(f"{self.url}: upload {upload_id} keeps moving")
                else:
                    self.sent += len(data)
                    if self.on_chunk is not None:
                        self.on_chunk(int(answer["offset"]))
                offset = int(answer["offset"])
        return offset

    def _call(self, method: str, path: str, ok: tuple[int, ...], *, missing_is_retryable: bool = True,
              **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, timeout=self._timeout, **kwargs)
        except httpx.TransportError as exc:  # refused, reset, timeouts: retry, then resume
            raise ServerUnavailable(f"{self.url}{path}: {type(exc).__name__}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:500]}
        if response.status_code in ok and isinstance(body, dict):
            return body
        message = str(body.get("error") if isinstance(body, dict) else body)[:2000]
        if response.status_code in (404, 405) and not missing_is_retryable:
            raise RequestRejected(response.status_code, f"{self.url} takes no resumable uploads "
                                  "(an older server?): raise upload_threshold above this file's size")
        if response.status_code >= 500 or response.status_code in (404, 408, 429):
            # 404: the upload vanished (swept, or another client completed it): start over.
            raise ServerUnavailable(f"{self.url}{path}: HTTP {response.status_code}: {message}")
        raise RequestRejected(response.status_code, message)


def _blob(body: dict[str, Any]) -> StoredBlob:
    return StoredBlob(str(body["digest"]), int(body["size"]), str(body["uri"]))
