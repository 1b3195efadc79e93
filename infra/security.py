"""Who a caller is (authentication) and what they may do (the grants behind authorisation).

Modes (setting MODELDB_AUTH):
- `local` (default): zero setup. One user, whoever runs the server, with every right; the
  development headers X-ModelDB-User / X-ModelDB-Roles still name another caller (tests and
  the UI use them). Project and model access are not checked.
- `token`: every request carries `Authorization: Bearer <token>`. Tokens are made by
  `modeldb token create NAME [--admin]` (or the `createToken` mutation), shown once and
  stored as the SHA-256 of a 256-bit secret. No or unknown token: 401.
- `proxy`: an identity-aware proxy in front of ModelDB authenticates users and passes the
  user name in a trusted header (MODELDB_AUTH_PROXY_HEADER, default X-Forwarded-User). Only
  in this mode is that header believed.

In `token` and `proxy` mode a user's rights are grants: a role (reader < writer < admin) on
a project or on a registered model (`*` for all of them), made by `modeldb grant`. Tokens
made with --admin, and users granted admin globally, may do everything.

Where they live: tables `security_tokens` and `security_grants` of the read database. They
belong to no projection, so `modeldb replay` (which resets projections) never touches them;
secrets must be revocable at once and never belong in the immutable, widely replicated log.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    and_,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from modeldb.writer.registry import ADMIN_ROLE, Principal

MODES = ("local", "token", "proxy")
ROLES = ("reader", "writer", "admin")
RANK = {role: i for i, role in enumerate(ROLES, 1)}
SCOPES = ("project", "model", "global")
ALL = "*"
TOKEN_PREFIX = "mdb_"
CACHE_SECONDS = 5.0  # how long another process may still accept a revoked token

# The development stand-in of `local` mode: a caller names itself and its registry roles.
USER_HEADER = "x-modeldb-user"
ROLES_HEADER = "x-modeldb-roles"

metadata = MetaData()
tokens = Table(
    "security_tokens", metadata,
    Column("id", String(32), primary_key=True),
    Column("user", String(250), nullable=False, index=True),
    Column("hash", String(64), nullable=False, unique=True),
    Column("admin", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(250)),
    Column("revoked_at", DateTime(timezone=True)),
)
grants = Table(
    "security_grants", metadata,
    Column("user", String(250), primary_key=True),
    Column("scope", String(16), primary_key=True),  # project | model | global
    Column("name", String(700), primary_key=True),  # the project or model, or *
    Column("role", String(16), nullable=False),
    Column("granted_by", String(250)),
    Column("granted_at", DateTime(timezone=True), nullable=False),
)


def hash_secret(secret: str) -> str:
    # A plain SHA-256 suffices: the secret has 256 bits of entropy, nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


class SecurityError(ValueError):
    """A token or grant request that makes no sense (unknown role, scope …)."""


@dataclass(frozen=True)
class TokenInfo:
    id: str
    user: str
    admin: bool
    created_at: datetime
    created_by: str | None
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "user": self.user, "admin": self.admin,
                "created_at": self.created_at.isoformat(), "created_by": self.created_by,
                "revoked": self.revoked_at is not None}


@dataclass(frozen=True)
class Grant:
    user: str
    scope: str
    name: str
    role: str


class SecurityStore:
    """Tokens and grants in the read database."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self._ready = False

    async def setup(self) -> None:
        # SQLite (embedded) is made here; a shared PostgreSQL database only by `modeldb
        # migrate` (projectors/migrations.py), never silently.
        if not self._ready and self.engine.dialect.name == "sqlite":
            async with self.engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
        self._ready = True

    async def create_token(self, user: str, *, admin: bool = False,
                           created_by: str | None = None) -> tuple[TokenInfo, str]:
        """A new token for `user`: its record and the secret, which is not kept anywhere."""
        user = user.strip()
        if not 0 < len(user) <= 250:
            raise SecurityError("a token's user name has 1 to 250 characters")
        await self.setup()
        token_id = secrets.token_hex(8)
        secret = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        info = TokenInfo(token_id, user, admin, datetime.now(UTC), created_by, None)
        async with self.engine.begin() as conn:
            await conn.execute(insert(tokens).values(
                id=token_id, user=user, hash=hash_secret(secret), admin=admin,
                created_at=info.created_at, created_by=created_by))
        return info, secret

    async def revoke_token(self, token_id: str) -> bool:
        await self.setup()
        async with self.engine.begin() as conn:
            result = await conn.execute(update(tokens).where(
                tokens.c.id == token_id, tokens.c.revoked_at.is_(None)).values(
                revoked_at=datetime.now(UTC)))
        return bool(result.rowcount)

    async def list_tokens(self) -> list[TokenInfo]:
        await self.setup()
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(tokens).order_by(tokens.c.created_at))
        return [TokenInfo(r.id, r.user, r.admin, r.created_at, r.created_by, r.revoked_at)
                for r in rows]

    async def lookup(self, secret: str) -> TokenInfo | None:
        """The live token with this secret, or None."""
        await self.setup()
        async with self.engine.connect() as conn:
            r = (await conn.execute(select(tokens).where(
                tokens.c.hash == hash_secret(secret), tokens.c.revoked_at.is_(None)))).first()
        return None if r is None else TokenInfo(r.id, r.user, r.admin, r.created_at,
                                                r.created_by, r.revoked_at)

    async def grant(self, user: str, role: str, scope: str, name: str, *,
                    granted_by: str | None = None) -> Grant:
        if role not in ROLES:
            raise SecurityError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if scope not in SCOPES:
            raise SecurityError(f"scope must be one of {', '.join(SCOPES)}")
        if scope == "global":
            name = ALL
        if not user.strip() or not name.strip() or len(name) > 700 or len(user) > 250:
            raise SecurityError("a grant names a user and a project or model")
        await self.setup()
        async with self.engine.begin() as conn:
            await conn.execute(delete(grants).where(
                grants.c.user == user, grants.c.scope == scope, grants.c.name == name))
            await conn.execute(insert(grants).values(
                user=user, scope=scope, name=name, role=role, granted_by=granted_by,
                granted_at=datetime.now(UTC)))
        return Grant(user, scope, name, role)

    async def revoke_grant(self, user: str, scope: str, name: str) -> bool:
        await self.setup()
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(grants).where(and_(
                grants.c.user == user, grants.c.scope == scope, grants.c.name == name)))
        return bool(result.rowcount)

    async def grants_of(self, user: str | None = None) -> list[Grant]:
        await self.setup()
        query = select(grants).order_by(grants.c.user, grants.c.scope, grants.c.name)
        if user is not None:
            query = query.where(grants.c.user == user)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
        return [Grant(r.user, r.scope, r.name, r.role) for r in rows]


# -- what one caller may do -------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """The rights of one caller. `unrestricted`: local mode, where nothing is checked."""

    user: str
    admin: bool = False
    unrestricted: bool = False
    grants: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (scope, name) → role
    token_id: str | None = None

    def allows(self, scope: str, name: str | None, role: str) -> bool:
        """May the caller act as `role` on this project or model? (name None: on any one)."""
        if self.admin or self.unrestricted:
            return True
        wanted = RANK[role]
        if RANK.get(self.grants.get(("global", ALL), ""), 0) >= wanted:
            return True
        if name is None:
            return any(s == scope and RANK[r] >= wanted for (s, _n), r in self.grants.items())
        best = max(RANK.get(self.grants.get((scope, name), ""), 0),
                   RANK.get(self.grants.get((scope, ALL), ""), 0))
        return best >= wanted

    def readable(self, scope: str) -> frozenset[str] | None:
        """The projects (or models) the caller may read; None: all of them."""
        if self.admin or self.unrestricted or self.allows(scope, ALL, "reader"):
            return None
        return frozenset(n for (s, n), _r in self.grants.items() if s == scope)

    @property
    def is_admin(self) -> bool:
        return self.admin or self.unrestricted or self.grants.get(("global", ALL)) == "admin"


@dataclass(frozen=True)
class Identity(Principal):
    """An authenticated caller: the registry's Principal plus the caller's rights."""

    access: Access = field(default_factory=lambda: Access("unknown"), compare=False)

    def for_model(self, model: str) -> Identity:
        """The principal as registry governance sees it on one model: admins of the model
        hold the registry-admin role (locks, rules)."""
        if ADMIN_ROLE in self.roles or not self.access.allows("model", model, "admin"):
            return self
        return Identity(self.name, self.roles | {ADMIN_ROLE}, self.access)


def local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


class AuthenticationFailed(Exception):
    """No identity, or a wrong one: HTTP 401. The message never repeats the secret."""


class Authenticator:
    """Turns request headers into an Identity, per the configured mode."""

    def __init__(self, mode: str, store: SecurityStore | None, *,
                 proxy_header: str = "x-forwarded-user"):
        if mode not in MODES:
            raise ValueError(f"MODELDB_AUTH must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.store = store
        self.proxy_header = proxy_header.lower()
        self._tokens: dict[str, tuple[float, TokenInfo | None]] = {}
        self._grants: dict[str, tuple[float, dict[tuple[str, str], str]]] = {}

    def forget(self) -> None:
        """Drop cached tokens and grants (after this process changed them)."""
        self._tokens.clear()
        self._grants.clear()

    async def identify(self, headers: Mapping[str, str]) -> Identity:
        if self.mode == "local":
            return self._local(headers)
        if self.mode == "proxy":
            user = (headers.get(self.proxy_header) or "").strip()
            if not user or len(user) > 250:
                raise AuthenticationFailed(f"no user in the {self.proxy_header} header")
            return await self._identity(user, admin=False, token_id=None)
        scheme, _, secret = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthenticationFailed("send a token: Authorization: Bearer <token>")
        token = await self._token(secret.strip())
        if token is None:
            raise AuthenticationFailed("invalid or revoked token")
        return await self._identity(token.user, admin=token.admin, token_id=token.id)

    def _local(self, headers: Mapping[str, str]) -> Identity:
        user = (headers.get(USER_HEADER) or "").strip()
        if not user:
            return Identity(local_user(), frozenset({ADMIN_ROLE}),
                            Access(local_user(), admin=True, unrestricted=True))
        roles = frozenset(r.strip() for r in (headers.get(ROLES_HEADER) or "").split(",")
                          if r.strip())
        return Identity(user[:250], roles, Access(user[:250], unrestricted=True))

    async def _token(self, secret: str) -> TokenInfo | None:
        key = hash_secret(secret)
        cached = self._tokens.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        assert self.store is not None
        found = await self.store.lookup(secret)
        if len(self._tokens) > 10_000:  # a flood of made-up tokens must not grow memory
            self._tokens.clear()
        self._tokens[key] = (time.monotonic() + CACHE_SECONDS, found)
        return found

    async def _identity(self, user: str, *, admin: bool, token_id: str | None) -> Identity:
        cached = self._grants.get(user)
        if cached and cached[0] > time.monotonic():
            held = cached[1]
        else:
            assert self.store is not None
            held = {(g.scope, g.name): g.role for g in await self.store.grants_of(user)}
            self._grants[user] = (time.monotonic() + CACHE_SECONDS, held)
        access = Access(user, admin=admin, grants=held, token_id=token_id)
        roles = frozenset({ADMIN_ROLE}) if access.is_admin else frozenset()
        return Identity(user, roles, access)
