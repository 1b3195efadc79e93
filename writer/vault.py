"""Crypto-shredding: erasure that leaves the log, its hashes and `verify` intact.

A producer marks values sensitive at log time (the envelope's `sensitive` paths, e.g.
`["params.email"]`). The writer replaces each such value with a token

    enc:v1:<key_id>:<base64url(nonce ‖ AES-256-GCM ciphertext)>

under a data key of the entity (the run) the event is about, before anything is appended.
The log, Kafka included, only ever holds tokens. Projections and answers see the value
through `reveal`, which decrypts with the entity's keys; a redaction destroys those keys,
after which every token of the entity reveals as a marker naming the token's digest,
`[redacted sha256:…]`. The audit chain hashes the stored (encrypted) form, so it does not
change when a key goes.

Data keys are kept wrapped (AES-GCM under a key derived from the server key), in a small
table beside the read model — the one place in ModelDB where a row is deleted on purpose.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from modeldb.event_schema.sensitive import split_path

TOKEN_PREFIX = "enc:v1:"


class VaultUnavailable(ConnectionError):
    """The key store cannot be reached: nothing sensitive can be sealed or revealed now."""


def token_digest(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def redacted_marker(digest: str) -> str:
    """What a redacted value reads as: it names the digest of the ciphertext the log keeps,
    so an auditor can match it to the log while nothing of the value is left."""
    return f"[redacted {digest[:23]}]"


def is_token(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


def key_id_of(token: str) -> str:
    return token[len(TOKEN_PREFIX):].split(":", 1)[0]


# -- the key store ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DataKey:
    key_id: str
    entity: str
    wrapped: bytes


MakeKey = Callable[[str], DataKey]


class KeyStore(ABC):
    """Where the wrapped data keys live: get-or-create per entity, fetch by id, destroy."""

    @abstractmethod
    async def active_keys(self, entities: Sequence[str], make: MakeKey) -> dict[str, DataKey]:
        """A live key for each entity; `make(entity)` gives a new (wrapped) one where there
        is none."""

    @abstractmethod
    async def fetch(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        """The wrapped keys still alive among `key_ids` (destroyed ones are absent)."""

    @abstractmethod
    async def destroy(self, entity: str) -> list[str]:
        """Destroy every key of `entity`; the ids destroyed (empty if none were alive)."""


class SqliteKeyStore(KeyStore):
    """Keys in their own SQLite file, with `secure_delete` so a destroyed key's bytes are
    overwritten on disk rather than left in a free page."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._ready = False  # the file is made on first use: most homes never mark a value

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA secure_delete = ON")
            if not self._ready:
                db.execute("CREATE TABLE IF NOT EXISTS data_keys (key_id TEXT PRIMARY KEY, "
                           "entity TEXT NOT NULL, wrapped BLOB, created_at REAL NOT NULL, "
                           "destroyed_at REAL)")
                db.execute("CREATE INDEX IF NOT EXISTS data_keys_entity ON data_keys (entity)")
                self._ready = True
            yield db
        finally:
            db.close()

    async def active_keys(self, entities: Sequence[str], make: MakeKey) -> dict[str, DataKey]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            found = _latest(db.execute(
                f"SELECT key_id, entity, wrapped FROM data_keys WHERE wrapped IS NOT NULL AND entity IN "
                f"({','.join('?' * len(entities))}) ORDER BY created_at", list(entities)).fetchall())
            made = [make(e) for e in entities if e not in found]
            db.executemany("INSERT INTO data_keys VALUES (?, ?, ?, ?, NULL)",
                           [(k.key_id, k.entity, k.wrapped, time.time()) for k in made])
            db.execute("COMMIT")
        return found | {k.entity: k for k in made}

    async def fetch(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        ids = list(key_ids)
        with self._connect() as db:
            rows = db.execute(f"SELECT key_id, wrapped FROM data_keys WHERE wrapped IS NOT NULL AND "
                              f"key_id IN ({','.join('?' * len(ids))})", ids).fetchall()
        return {key_id: bytes(wrapped) for key_id, wrapped in rows}

    async def destroy(self, entity: str) -> list[str]:
        with self._connect() as db:
            ids = [r[0] for r in db.execute("SELECT key_id FROM data_keys WHERE entity = ? AND "
                                            "wrapped IS NOT NULL", (entity,))]
            db.execute("UPDATE data_keys SET wrapped = NULL, destroyed_at = ? WHERE entity = ? "
                       "AND wrapped IS NOT NULL", (time.time(), entity))
        return ids


class PostgresKeyStore(KeyStore):
    """Keys in a table of the read model's PostgreSQL database (never touched by a replay).
    A connection per call: these calls are rare (only batches with sensitive values) and
    may come from different event loops (the SDK's kafka:// transport)."""

    TABLE = "modeldb_data_keys"

    def __init__(self, url: str):
        self.dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self._ready = False

    async def _connect(self) -> Any:
        import asyncpg

        try:
            conn = await asyncpg.connect(self.dsn, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise VaultUnavailable(f"the key store is unreachable: {exc}") from exc
        if not self._ready:
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {self.TABLE} (key_id text PRIMARY KEY, "
                               "entity text NOT NULL, wrapped bytea, created_at double precision "
                               "NOT NULL, destroyed_at double precision)")
            await conn.execute(f"CREATE INDEX IF NOT EXISTS {self.TABLE}_entity ON {self.TABLE} (entity)")
            self._ready = True
        return conn

    async def active_keys(self, entities: Sequence[str], make: MakeKey) -> dict[str, DataKey]:
        conn = await self._connect()
        try:
            rows = await conn.fetch(f"SELECT key_id, entity, wrapped FROM {self.TABLE} WHERE "
                                    "wrapped IS NOT NULL AND entity = ANY($1) ORDER BY created_at",
                                    list(entities))
            found = _latest([tuple(r) for r in rows])
            made = [make(e) for e in entities if e not in found]
            await conn.executemany(f"INSERT INTO {self.TABLE} VALUES ($1, $2, $3, $4, NULL)",
                                   [(k.key_id, k.entity, k.wrapped, time.time()) for k in made])
        finally:
            await conn.close()
        return found | {k.entity: k for k in made}

    async def fetch(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        conn = await self._connect()
        try:
            rows = await conn.fetch(f"SELECT key_id, wrapped FROM {self.TABLE} WHERE wrapped IS NOT "
                                    "NULL AND key_id = ANY($1)", list(key_ids))
        finally:
            await conn.close()
        return {r["key_id"]: bytes(r["wrapped"]) for r in rows}

    async def destroy(self, entity: str) -> list[str]:
        conn = await self._connect()
        try:
            rows = await conn.fetch(f"UPDATE {self.TABLE} SET wrapped = NULL, destroyed_at = $2 "
                                    "WHERE entity = $1 AND wrapped IS NOT NULL RETURNING key_id",
                                    entity, time.time())
            # The old row versions keep the key until vacuumed; FULL rewrites the (tiny) table.
            await conn.execute(f"VACUUM FULL {self.TABLE}")
        finally:
            await conn.close()
        return [r["key_id"] for r in rows]


def _latest(rows: Iterable[tuple[Any, ...]]) -> dict[str, DataKey]:
    found: dict[str, DataKey] = {}
    for key_id, entity, wrapped in rows:  # ordered by age: the newest wins
        found[entity] = DataKey(key_id, entity, bytes(wrapped))
    return found


def open_key_store(url: str) -> KeyStore:
    """`postgresql+asyncpg://…` (the read model's database), or a SQLite file path."""
    if url.startswith(("postgresql", "postgres://")):
        return PostgresKeyStore(url)
    return SqliteKeyStore(url.removeprefix("sqlite:///"))


# -- sealing and revealing ------------------------------------------------------------------


class Vault:
    """Seals marked values in stored events, reveals them for projections and answers, and
    shreds an entity's keys."""

    def __init__(self, store: KeyStore, server_key: bytes):
        self.store = store
        self._kek = AESGCM(hashlib.sha256(b"modeldb-data-keys\n" + server_key).digest())

    def _new_key(self, entity: str) -> DataKey:
        # Wrapped before it leaves this object: the store never holds a bare key.
        key_id, nonce = secrets.token_hex(8), os.urandom(12)
        return DataKey(key_id, entity, nonce + self._kek.encrypt(nonce, os.urandom(32), key_id.encode()))

    def _unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        return self._kek.decrypt(wrapped[:12], wrapped[12:], key_id.encode())

    async def seal(self, forms: Sequence[dict[str, Any]]) -> None:
        """Encrypt, in place, the values the stored forms mark sensitive."""
        marked = [f for f in forms if f.get("sensitive")]
        if not marked:
            return
        keys = await self.store.active_keys(sorted({f["aggregate"]["id"] for f in marked}), self._new_key)
        for form in marked:
            key = keys[form["aggregate"]["id"]]
            cipher = AESGCM(self._unwrap(key.key_id, key.wrapped))
            for path in form["sensitive"]:
                container, name = split_path(path)
                values = form["payload"][container]
                nonce = os.urandom(12)
                sealed = cipher.encrypt(nonce, orjson.dumps(values[name]), _aad(form, path))
                values[name] = f"{TOKEN_PREFIX}{key.key_id}:" + base64.urlsafe_b64encode(
                    nonce + sealed).decode().rstrip("=")

    async def reveal(self, raws: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The events with each sealed value decrypted, or replaced by its redaction marker
        where the key is gone. Events without sensitive values are returned as they are."""
        tokens = [v for raw in raws for v in _sealed_values(raw)]
        if not tokens:
            return list(raws)
        alive = await self.store.fetch({key_id_of(t) for t in tokens})
        ciphers = {kid: AESGCM(self._unwrap(kid, w)) for kid, w in alive.items()}
        return [self._reveal_one(raw, ciphers) if raw.get("sensitive") else raw for raw in raws]

    def _reveal_one(self, raw: Mapping[str, Any], ciphers: Mapping[str, Any]) -> dict[str, Any]:
        payload = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw["payload"].items()}
        for path in raw["sensitive"]:
            container, name = split_path(path)
            token = payload.get(container, {}).get(name)
            if not is_token(token):
                continue
            cipher = ciphers.get(key_id_of(token))
            payload[container][name] = (_decrypt(cipher, token, raw, path) if cipher is not None
                                        else redacted_marker(token_digest(token)))
        return {**raw, "payload": payload}

    async def destroy(self, entity: str) -> list[str]:
        return await self.store.destroy(entity)



def _aad(raw: Mapping[str, Any], path: str) -> bytes:
    # Binds a token to its event and place: a token copied elsewhere does not decrypt.
    return f"{raw['event_id']}|{path}".encode()


def _decrypt(cipher: Any, token: str, raw: Mapping[str, Any], path: str) -> Any:
    body = token[len(TOKEN_PREFIX):].split(":", 1)[1]
    blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    return orjson.loads(cipher.decrypt(blob[:12], blob[12:], _aad(raw, path)))


def _sealed_values(raw: Mapping[str, Any]) -> list[str]:
    found = []
    for path in raw.get("sensitive") or ():
        container, name = split_path(path)
        value = (raw.get("payload", {}).get(container) or {}).get(name)
        if is_token(value):
            found.append(value)
    return found

