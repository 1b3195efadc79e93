"""The server key: one secret per ModelDB installation, from which the writer derives each
webhook's signing secret and the audit signs its checkpoints (HMAC-SHA256).

Given as MODELDB_SERVER_KEY (read by modeldb.infra.settings), else kept in `<home>/server.key`,
made on first use with 256 random bits and mode 0600. Whoever holds it can sign: in
production give it from a secret store, so it never sits beside the data it vouches for.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "server.key"


def server_key(home: Path, configured: str | None = None) -> bytes:
    if configured:
        return configured.encode()
    path = Path(home) / KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return _read(path)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return _read(path)


def _read(path: Path) -> bytes:
    text = path.read_text().strip()
    if not text:  # made by another process that has not written it yet
        import time

        time.sleep(0.05)
        text = path.read_text().strip()
    return text.encode()


def derive(key: bytes, purpose: str) -> str:
    """A secret for one purpose, so no derived secret reveals the key or another secret."""
    return hmac.new(key, purpose.encode(), hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A public name for the key (which key signed a checkpoint), revealing nothing of it."""
    return hashlib.sha256(b"modeldb-key-id\n" + key).hexdigest()[:16]


def webhook_secret(key: bytes, webhook_id: str) -> str:
    return derive(key, f"webhook:{webhook_id}")
