"""Content-addressed artifact store: a file's name is its sha256, so a copy is stored once
and a digest names exactly one content."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHUNK = 1 << 20


class DigestMismatch(ValueError):
    pass


class ArtifactStoreUnavailable(ConnectionError):
    """The store cannot be reached or refuses us (S3 away, bad credentials): retry later."""


@dataclass(frozen=True)
class StoredArtifact:
    digest: str  # "sha256:<hex>"
    size: int
    uri: str


def artifact_uri(digest: str) -> str:
    return f"modeldb://artifacts/{digest}"


def check_digest(digest: str) -> str:
    """The digest's hex part; ValueError unless it is `sha256:<64 hex>`."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ValueError(f"not a sha256 digest: {str(digest)[:80]!r}")
    return digest.removeprefix("sha256:")


class ArtifactStore(ABC):
    """Where artifact bytes live, named by their sha256. `staging` is a local folder the
    server may use for files on their way in (temporary files, resumable uploads)."""

    staging: Path

    @abstractmethod
    async def put_stream(
        self, chunks: AsyncIterator[bytes], expected_digest: str | None = None
    ) -> StoredArtifact: ...

    @abstractmethod
    def put_file(self, path: str | Path) -> StoredArtifact:
        """Store a copy of a local file (the file stays)."""

    @abstractmethod
    def adopt(self, path: Path, digest: str, size: int) -> StoredArtifact:
        """Take over a local file whose digest and size were verified: it is moved into
        the store (or deleted when the store has that content already)."""

    @abstractmethod
    def open_stream(self, digest: str) -> Iterator[bytes]: ...

    @abstractmethod
    def stat(self, digest: str) -> StoredArtifact | None:
        """The stored artifact, or None when the store does not have this content."""

    def exists(self, digest: str) -> bool:
        return self.stat(digest) is not None


class LocalArtifactStore(ArtifactStore):
    def __init__(self, root: str | Path):
        self.root = self.staging = Path(root)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def path_of(self, digest: str) -> Path:
        # The digest is validated, so a request can never name a path outside the store.
        hexdigest = check_digest(digest)
        return self.root / "sha256" / hexdigest[:2] / hexdigest

    def stat(self, digest: str) -> StoredArtifact | None:
        path = self.path_of(digest)
        if not path.is_file():
            return None
        return StoredArtifact(digest, path.stat().st_size, artifact_uri(digest))

    async def put_stream(
        self, chunks: AsyncIterator[bytes], expected_digest: str | None = None
    ) -> StoredArtifact:
        tmp, digest, size = await spool_stream(chunks, self.root / "tmp", expected_digest)
        return self.adopt(tmp, digest, size)

    def adopt(self, path: Path, digest: str, size: int) -> StoredArtifact:
        target = self.path_of(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)  # atomic: readers see the whole file or none
        return StoredArtifact(digest, size, artifact_uri(digest))

    def put_file(self, path: str | Path) -> StoredArtifact:
        digest = file_digest(path)
        target = self.path_of(digest)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=self.root / "tmp")
            os.close(fd)
            shutil.copyfile(path, tmp_name)
            os.replace(tmp_name, target)
        return StoredArtifact(digest, target.stat().st_size, artifact_uri(digest))

    def open_stream(self, digest: str) -> Iterator[bytes]:
        with self.path_of(digest).open("rb") as f:
            while chunk := f.read(_CHUNK):
                yield chunk


async def spool_stream(chunks: AsyncIterator[bytes], folder: Path,
                       expected_digest: str | None = None) -> tuple[Path, str, int]:
    """Write a stream to a new file in `folder`, hashing on the way: (file, digest, size).
    Raises DigestMismatch (the file removed) when `expected_digest` is not what came."""
    hasher, size = hashlib.sha256(), 0
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=folder)
    try:
        with os.fdopen(fd, "wb") as tmp:
            async for chunk in chunks:
                hasher.update(chunk)
                size += len(chunk)
                tmp.write(chunk)
            tmp.flush()
            os.fsync(tmp.fileno())
        digest = f"sha256:{hasher.hexdigest()}"
        if expected_digest and expected_digest != digest:
            raise DigestMismatch(f"content has digest {digest}, expected {expected_digest}")
    except BaseException:
        os.unlink(tmp_name)
        raise
    return Path(tmp_name), digest, size


def open_artifact_store(spec: str, staging: str | Path, *,
                        s3_endpoint_url: str | None = None) -> ArtifactStore:
    """The store a setting names: "" (a folder: `staging`) or `s3://bucket[/prefix]`."""
    if not spec:
        return LocalArtifactStore(staging)
    if spec.startswith("s3://"):
        from modeldb.writer.s3_artifacts import S3ArtifactStore

        bucket, _, prefix = spec.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"MODELDB_ARTIFACT_STORE={spec!r} names no bucket: use s3://bucket/prefix")
        return S3ArtifactStore(bucket, prefix, staging, endpoint_url=s3_endpoint_url)
    raise ValueError(f"MODELDB_ARTIFACT_STORE must be s3://bucket[/prefix] (or unset for the "
                     f"folder MODELDB_ARTIFACTS), not {spec!r}")


def file_digest(path: str | Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"
