"""The artifact store on S3 or any S3-compatible server (MinIO, Ceph, moto …), with boto3.

Keys are content-addressed like the local store's paths: `<prefix>/sha256/ab/<hex>`, so a
content is stored once and a digest names exactly one object. Objects above the part
size go up as multipart uploads (boto3's transfer manager). Incoming streams are staged
in a local folder first: the key is the digest, known only once every byte was seen.

Settings: `MODELDB_ARTIFACT_STORE=s3://bucket/prefix`, `MODELDB_S3_ENDPOINT_URL` for a
server other than AWS; credentials and region from the standard AWS variables/files.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modeldb.writer.artifacts import (
    ArtifactStore,
    ArtifactStoreUnavailable,
    StoredArtifact,
    artifact_uri,
    check_digest,
    file_digest,
    spool_stream,
)

_READ_CHUNK = 1 << 20
DEFAULT_PART_SIZE = 16 * 1024 * 1024  # S3 wants parts of 5 MiB at least


class S3ArtifactStore(ArtifactStore):
    def __init__(self, bucket: str, prefix: str, staging: str | Path, *,
                 endpoint_url: str | None = None, part_size: int = DEFAULT_PART_SIZE,
                 client: Any = None) -> None:
        import boto3  # only an S3-backed server pays for boto3 (the `s3` extra)
        from boto3.s3.transfer import TransferConfig

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.staging = Path(staging)
        (self.staging / "tmp").mkdir(parents=True, exist_ok=True)
        from botocore.config import Config

        # Few, quick retries: the server answers 503 and the client retries with backoff.
        config = Config(connect_timeout=5, read_timeout=60,
                        retries={"max_attempts": 2, "mode": "standard"})
        self._s3 = client or boto3.client("s3", endpoint_url=endpoint_url or None, config=config)
        self._transfer = TransferConfig(multipart_threshold=part_size,
                                        multipart_chunksize=part_size, max_concurrency=4)

    def key_of(self, digest: str) -> str:
        hexdigest = check_digest(digest)
        key = f"sha256/{hexdigest[:2]}/{hexdigest}"
        return f"{self.prefix}/{key}" if self.prefix else key

    def stat(self, digest: str) -> StoredArtifact | None:
        from botocore.exceptions import ClientError

        key = self.key_of(digest)
        with _unavailable():
            try:
                head = self._s3.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
        return StoredArtifact(digest, int(head["ContentLength"]), artifact_uri(digest))

    async def put_stream(
        self, chunks: AsyncIterator[bytes], expected_digest: str | None = None
    ) -> StoredArtifact:
        tmp, digest, size = await spool_stream(chunks, self.staging / "tmp", expected_digest)
        try:
            # boto3 blocks: the upload runs in a thread so the server keeps answering meanwhile.
            return await asyncio.to_thread(self.adopt, tmp, digest, size)
        finally:
            tmp.unlink(missing_ok=True)

    def adopt(self, path: Path, digest: str, size: int) -> StoredArtifact:
        stored = self._upload(path, digest, size)
        path.unlink()  # only once S3 has it: on an error the caller still holds the file
        return stored

    def put_file(self, path: str | Path) -> StoredArtifact:
        return self._upload(Path(path), file_digest(path), os.path.getsize(path))

    def _upload(self, path: Path, digest: str, size: int) -> StoredArtifact:
        if self.stat(digest) is None:  # content-addressed: a stored key never changes
            with _unavailable():
                self._s3.upload_file(str(path), self.bucket, self.key_of(digest),
                                     ExtraArgs={"ContentType": "application/octet-stream"},
                                     Config=self._transfer)
        return StoredArtifact(digest, size, artifact_uri(digest))

    def open_stream(self, digest: str) -> Iterator[bytes]:
        key = self.key_of(digest)
        with _unavailable():
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                yield from body.iter_chunks(_READ_CHUNK)
            finally:
                body.close()


@contextmanager
def _unavailable() -> Iterator[None]:
    """boto3's errors (no connection, access denied, no such bucket …) as the store's own."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError, Boto3Error) as exc:
        raise ArtifactStoreUnavailable(f"S3: {exc}") from exc
