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


@dataclass(frozen=True)
class StoredArtifact:
    digest: str  # "sha256:<hex>"
    size: int
    uri: str


def artifact_uri(digest: str) -> str:
    return f"modeldb://artifacts/{digest}"


class ArtifactStore(ABC):
    @abstractmethod
    async def put_stream(
        self, chunks: AsyncIterator[bytes], expected_digest: str | None = None
    ) -> StoredArtifact: ...

    @abstractmethod
    def open_stream(self, digest: str) -> Iterator[bytes]: ...

    @abstractmethod
    def exists(self, digest: str) -> bool: ...


class LocalArtifactStore(ArtifactStore):
    def __init__(self, root: str | Path):
        self.root = Path(root)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def path_of(self, digest: str) -> Path:
        # The digest is validated, so a request can never name a path outside the store.
        if not _DIGEST.match(digest):
            raise ValueError(f"not a sha256 digest: {digest[:80]!r}")
        hexdigest = digest.removeprefix("sha256:")
        return self.root / "sha256" / hexdigest[:2] / hexdigest

    def exists(self, digest: str) -> bool:
        return self.path_of(digest).is_file()

    async def put_stream(
        self, chunks: AsyncIterator[bytes], expected_digest: str | None = None
    ) -> StoredArtifact:
        hasher, size = hashlib.sha256(), 0
        fd, tmp_name = tempfile.mkstemp(dir=self.root / "tmp")
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
            target = self.path_of(digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, target)  # atomic: readers see the whole file or none
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
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


def file_digest(path: str | Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"
