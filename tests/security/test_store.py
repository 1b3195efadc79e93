"""Tokens and grants in the read database (SQLite embedded, PostgreSQL on the engines),
what a set of grants allows, and that a replay of the projections keeps them."""

from __future__ import annotations

import pytest

from modeldb.infra.security import Access, AuthenticationFailed, Authenticator, SecurityStore
from modeldb.infra.settings import Settings
from modeldb.infra.system import System
from modeldb.writer.registry import ADMIN_ROLE


async def test_tokens_are_stored_hashed_found_and_revoked(system: System) -> None:
    store = SecurityStore(system.engine)
    await store.setup()
    info, secret = await store.create_token("alice", created_by="ops")
    assert secret.startswith(f"mdb_{info.id}_") and len(secret) > 40
    found = await store.lookup(secret)
    assert found is not None and found.user == "alice" and not found.admin
    assert await store.lookup(secret + "x") is None
    from sqlalchemy import select

    from modeldb.infra.security import tokens

    async with system.engine.connect() as conn:
        stored = (await conn.execute(select(tokens.c.hash))).scalars().all()
    assert secret not in stored and all(len(h) == 64 for h in stored)  # only SHA-256 hex
    assert await store.revoke_token(info.id) and not await store.revoke_token(info.id)
    assert await store.lookup(secret) is None
    assert [t.to_dict()["revoked"] for t in await store.list_tokens()] == [True]

    # Replaying every projection resets their tables, not these.
    _info2, secret2 = await store.create_token("bob")
    await store.grant("bob", "writer", "project", "p")
    for runtime in system.runtimes.values():
        await runtime.rebuild()
    assert (await store.lookup(secret2)) is not None
    assert [g.role for g in await store.grants_of("bob")] == ["writer"]


async def test_authenticator_turns_tokens_and_grants_into_access(system: System) -> None:
    store = SecurityStore(system.engine)
    _i, admin = await store.create_token("root", admin=True)
    _i, reader = await store.create_token("rita")
    await store.grant("rita", "reader", "project", "p")
    await store.grant("rita", "writer", "model", "*")
    await store.grant("rita", "admin", "model", "m")
    auth = Authenticator("token", store)
    with pytest.raises(AuthenticationFailed):
        await auth.identify({})
    with pytest.raises(AuthenticationFailed):
        await auth.identify({"authorization": "Basic abc"})
    root = await auth.identify({"authorization": f"Bearer {admin}"})
    assert root.name == "root" and root.access.is_admin and ADMIN_ROLE in root.roles
    rita = await auth.identify({"authorization": f"bearer {reader}"})
    access = rita.access
    assert access.allows("project", "p", "reader") and not access.allows("project", "p", "writer")
    assert not access.allows("project", "q", "reader")
    assert access.readable("project") == frozenset({"p"}) and access.readable("model") is None
    assert access.allows("model", "anything", "writer") and not access.allows("model", "x", "admin")
    assert ADMIN_ROLE not in rita.roles and ADMIN_ROLE in rita.for_model("m").roles
    assert ADMIN_ROLE not in rita.for_model("x").roles
    # proxy mode: the header names the user; local mode: everyone may do everything
    proxied = await Authenticator("proxy", store, proxy_header="X-User").identify({"x-user": "rita"})
    assert proxied.access.readable("project") == frozenset({"p"})
    local = await Authenticator("local", None).identify({"x-modeldb-user": "bob"})
    assert local.name == "bob" and local.access.unrestricted and not local.roles


def test_access_with_global_grants() -> None:
    reader_everywhere = Access("u", grants={("global", "*"): "reader"})
    assert reader_everywhere.allows("project", "any", "reader")
    assert not reader_everywhere.allows("project", "any", "writer")
    assert reader_everywhere.readable("project") is None
    assert Access("u", grants={("global", "*"): "admin"}).is_admin


def test_unknown_mode_is_refused(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="MODELDB_AUTH"):
        Authenticator("ldap", None)
    assert Settings.load().auth == "local"
