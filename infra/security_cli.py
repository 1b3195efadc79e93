"""`modeldb token create NAME [--admin] | revoke ID | list` and
`modeldb grant USER ROLE --project P | --model M | --all` (see modeldb.infra.security)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from modeldb.infra.security import ROLES, SecurityError, SecurityStore, local_user
from modeldb.infra.settings import Settings

T = TypeVar("T")


def _with_store(args: argparse.Namespace, work: Callable[[SecurityStore], Awaitable[T]]) -> T:
    from modeldb.projectors.db import create_engine

    async def run() -> T:
        settings = Settings.load(args.data_dir)
        settings.home.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.read_db)
        try:
            return await work(SecurityStore(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def cmd_token(args: argparse.Namespace) -> int:
    if args.action == "create":
        if not args.name:
            raise SystemExit("modeldb token create NAME [--admin]")
        info, secret = _with_store(args, lambda s: s.create_token(
            args.name, admin=args.admin, created_by=local_user()))
        print(f"token {info.id} for {info.user}{' (admin)' if info.admin else ''}; "
              "the secret is shown this once:")
        print(secret)
        return 0
    if args.action == "revoke":
        if not args.name:
            raise SystemExit("modeldb token revoke ID")
        done = _with_store(args, lambda s: s.revoke_token(args.name))
        print(f"token {args.name} revoked" if done else f"no live token {args.name}")
        return 0 if done else 1
    for t in _with_store(args, lambda s: s.list_tokens()):
        state = "revoked" if t.revoked_at else "live"
        print(f"{t.id}  {t.user:<24} {'admin' if t.admin else '':<6} {state:<8} "
              f"{t.created_at:%Y-%m-%d %H:%M}")
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    chosen = [(k, v) for k, v in (("project", args.project), ("model", args.model)) if v]
    if args.all:
        chosen.append(("global", "*"))
    if len(chosen) != 1:
        raise SystemExit("name exactly one of --project P, --model M or --all")
    scope, name = chosen[0]

    async def work(store: SecurityStore) -> Any:
        if args.revoke:
            return await store.revoke_grant(args.user, scope, name)
        return await store.grant(args.user, args.role, scope, name, granted_by=local_user())

    try:
        result = _with_store(args, work)
    except SecurityError as exc:
        raise SystemExit(str(exc)) from None
    where = "everything" if scope == "global" else f"{scope} {name}"
    if args.revoke:
        print(f"{args.user}: grant on {where} revoked" if result else "no such grant")
    else:
        print(f"{args.user} is {args.role} on {where}")
    return 0


def add_parsers(sub: Any, data_dir: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("token", help="API tokens for MODELDB_AUTH=token: create NAME [--admin] "
                       "| revoke ID | list")
    p.add_argument("action", choices=["create", "revoke", "list"])
    p.add_argument("name", nargs="?", help="the user (create) or the token id (revoke)")
    p.add_argument("--admin", action="store_true", help="the token may do everything")
    data_dir(p)
    p.set_defaults(fn=cmd_token)

    p = sub.add_parser("grant", help="give a user a role on a project or registered model")
    p.add_argument("user")
    p.add_argument("role", choices=ROLES)
    p.add_argument("--project", help="a project name, or * for all projects")
    p.add_argument("--model", help="a registered model name, or * for all models")
    p.add_argument("--all", action="store_true", help="the role on everything")
    p.add_argument("--revoke", action="store_true", help="take the grant away instead")
    data_dir(p)
    p.set_defaults(fn=cmd_grant)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_exposure(settings: Settings, host: str, insecure: bool) -> str | None:
    """Why the server must not start (None: it may). Local mode trusts every caller, so
    it listens beyond loopback only when told so explicitly."""
    if settings.auth not in ("local", "token", "proxy"):
        return f"MODELDB_AUTH must be local, token or proxy, not {settings.auth!r}"
    if settings.auth == "local" and not is_loopback(host) and not insecure:
        return (f"refusing to listen on {host} without authentication (MODELDB_AUTH=local): "
                "set MODELDB_AUTH=token (or proxy), or pass --insecure-no-auth")
    return None
