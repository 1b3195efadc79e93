"""Access control of the HTTP surface: ONE rule per route, one middleware that applies it,
and the checks behind the routes whose rule depends on the data (ingest, artifacts,
registry commands).

- `ROUTE_RULES` names what each route needs; a route without a rule is refused to all but
  administrators (and tests/security fails for it).
- `GuardMiddleware` authenticates every request (modeldb.infra.security), rate-limits per
  caller, applies the route's rule and leaves the identity in `request.state.identity`.
- `IngestGuard` finds the project of every event of a batch (from the event, or from the
  run it belongs to) and refuses a batch that writes where the caller may not.
- `COMMAND_RULES` / `GuardedCommands`: the role each registry command needs on its model.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from modeldb.event_schema.types import EVENT_TYPES
from modeldb.infra.security import AuthenticationFailed, Authenticator, Identity
from modeldb.writer.registry import Forbidden, NotFound, Principal

# What a route needs:
#   public   nothing (health, metrics, the UI's static files, the API docs)
#   user     any authenticated caller; the data it answers is filtered per caller
#   ingest   an authenticated caller; each event's project is checked (IngestGuard)
#   upload   writer on at least one project
#   download readable only through a run or model the caller may read (else 404)
#   command  an authenticated caller; the command table decides (COMMAND_RULES)
#   admin    administrators only
ROUTE_RULES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "public",
    ("GET", "/livez"): "public",
    ("GET", "/readyz"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/"): "public",
    ("GET", "/ui/{name}"): "public",
    ("GET", "/api/docs"): "public",
    ("GET", "/docs/oauth2-redirect"): "public",
    ("GET", "/redoc"): "public",
    ("GET", "/openapi.json"): "public",
    ("GET", "/graphql"): "user",
    ("POST", "/graphql"): "user",
    ("WS", "/graphql"): "user",
    ("GET", "/api/v1/projections"): "user",
    ("GET", "/api/v1/audit/checkpoint"): "admin",
    ("POST", "/api/v1/demo"): "admin",
    ("POST", "/api/v1/events"): "ingest",
    ("POST", "/api/v1/lineage"): "ingest",
    ("POST", "/api/v1/artifacts"): "upload",
    ("GET", "/api/v1/artifacts/{digest}"): "download",
    # Resumable uploads (writer/uploads.py): writers only. An upload id names its content (digest
    # and size), so any writer holding the digest may resume it; the final sha256 check keeps it honest.
    ("POST", "/api/v1/uploads"): "upload",
    ("HEAD", "/api/v1/uploads/{upload_id}"): "upload",
    ("GET", "/api/v1/uploads/{upload_id}"): "upload",
    ("PATCH", "/api/v1/uploads/{upload_id}"): "upload",
    ("POST", "/api/v1/uploads/{upload_id}/complete"): "upload",
    ("DELETE", "/api/v1/uploads/{upload_id}"): "upload",
    ("GET", "/api/v1/registry/commands"): "user",
    ("POST", "/api/v1/registry/commands"): "command",
}
RULE_KINDS = frozenset({"public", "user", "ingest", "upload", "download", "command", "admin"})

# command → (what it acts on, the argument naming it, the role needed). "model": a role on
# the named registered model; "models": that role on any model; "global": an administrator.
COMMAND_RULES: dict[str, tuple[str, str | None, str]] = {
    "create_model": ("model", "name", "writer"),
    "update_model": ("model", "name", "writer"),
    "delete_model": ("model", "name", "admin"),
    "create_version": ("model", "name", "writer"),
    "delete_version": ("model", "name", "admin"),
    "set_stage": ("model", "name", "writer"),
    "request_transition": ("model", "name", "writer"),
    # Who may approve (or reject) a transition: the model's admins (never the requester;
    # modeldb.writer.registry refuses that whatever the role).
    "approve_transition": ("model", "name", "admin"),
    "reject_transition": ("model", "name", "admin"),
    "set_alias": ("model", "name", "writer"),
    "delete_alias": ("model", "name", "writer"),
    "set_lock": ("model", "name", "admin"),
    "set_rules": ("model", "name", "admin"),
    "register_environment": ("global", None, "admin"),
    "record_deployment": ("model", "model", "writer"),
    "set_deployment_status": ("models", None, "writer"),
    "register_webhook": ("global", None, "admin"),
    "delete_webhook": ("global", None, "admin"),
    "redact_run": ("global", None, "admin"),  # destroys data keys: administrators only
}


@dataclass(frozen=True)
class RouteEntry:
    method: str  # GET, POST … or WS
    path: str
    route: Any  # has .matches(scope)


def flat_routes(routes: Iterable[Any]) -> list[RouteEntry]:
    """Every route of an app as (method, path), also inside included routers (which recent
    FastAPI versions keep as lazily expanded `_IncludedRouter` entries)."""
    out: list[RouteEntry] = []
    for route in routes:
        expand = getattr(route, "effective_route_contexts", None)
        if expand is not None:
            for ctx in expand():
                inner = getattr(ctx, "starlette_route", None) or getattr(ctx, "original_route", None)
                path = ctx.path or getattr(inner, "path", "")
                methods = ctx.methods or getattr(inner, "methods", None)
                out += _entries(methods, path, ctx)
            continue
        out += _entries(getattr(route, "methods", None), getattr(route, "path", ""), route)
    return out


def _entries(methods: Iterable[str] | None, path: str, route: Any) -> list[RouteEntry]:
    if not methods:  # a websocket route
        return [RouteEntry("WS", path, route)]
    return [RouteEntry(m, path, route) for m in sorted(methods)]


# The routes are kept in the value so their ids cannot be reused while cached.
_FLAT: dict[tuple[int, ...], tuple[list[Any], list[RouteEntry]]] = {}


def _flat_cached(routes: Iterable[Any]) -> list[RouteEntry]:
    # Every request matches its route twice (access, metrics): expand the app's routes once
    # per set of routes rather than per request.
    routes = list(routes)
    key = tuple(map(id, routes))
    if key not in _FLAT:
        if len(_FLAT) > 64:
            _FLAT.clear()
        _FLAT[key] = (routes, flat_routes(routes))
    return _FLAT[key][1]


def match_route(routes: Iterable[Any], scope: Scope) -> RouteEntry | None:
    method = "WS" if scope["type"] == "websocket" else scope.get("method", "GET")
    for entry in _flat_cached(routes):
        if entry.method != method and not (method == "HEAD" and entry.method == "GET"):
            continue
        if entry.route.matches(scope)[0] == Match.FULL:
            return entry
    return None


def rule_for(entry: RouteEntry | None) -> str | None:
    """The rule of a route; HEAD of a GET route follows the GET's."""
    if entry is None:
        return "user"  # no such route: 404, after authentication
    found = ROUTE_RULES.get((entry.method, entry.path))
    if found is None and entry.method == "HEAD":
        found = ROUTE_RULES.get(("GET", entry.path))
    return found


class RateLimiter:
    """At most `per_second` requests per caller in any one-second window (0: no limit)."""

    def __init__(self, per_second: float):
        self.per_second = per_second
        self._windows: dict[str, tuple[int, int]] = {}

    def allow(self, who: str) -> bool:
        if self.per_second <= 0:
            return True
        now = int(time.monotonic())
        second, count = self._windows.get(who, (now, 0))
        if second != now:
            second, count = now, 0
        if len(self._windows) > 100_000:
            self._windows.clear()
        self._windows[who] = (second, count + 1)
        return count + 1 <= self.per_second


class GuardMiddleware:
    def __init__(self, app: ASGIApp, *, authenticator: Authenticator,
                 routes: Callable[[], Iterable[BaseRoute]], rate_limit: float = 0.0):
        self.app = app
        self.authenticator = authenticator
        self.routes = routes
        self.limiter = RateLimiter(rate_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        entry = match_route(self.routes(), scope)
        rule = rule_for(entry)
        if rule == "public":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            identity = await self.authenticator.identify(headers)
        except AuthenticationFailed as exc:
            await _refuse(scope, receive, send, 401, str(exc),
                          {"www-authenticate": 'Bearer realm="modeldb"'})
            return
        access = identity.access
        if not self.limiter.allow(access.token_id or identity.name):
            await _refuse(scope, receive, send, 429, "too many requests: slow down",
                          {"retry-after": "1"})
            return
        allowed = (rule in ("user", "ingest", "download", "command")
                   or (rule == "upload" and access.allows("project", None, "writer"))
                   or access.is_admin)
        if not allowed:
            what = f"{entry.method} {entry.path}" if entry else "this route"
            await _refuse(scope, receive, send, 403,
                          f"{identity.name} may not call {what}" if rule else
                          f"{what} has no access rule: refused")
            return
        scope.setdefault("state", {})["identity"] = identity
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str,
                  headers: Mapping[str, str] | None = None) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4401 if status == 401 else 4403})
        return
    body = orjson.dumps({"error": message})
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def identity_of(request: Any) -> Identity | None:
    found = getattr(request.state, "identity", None)
    return found if isinstance(found, Identity) else None


# -- ingest: whose project an event writes to ------------------------------------------------


DELETIONS = frozenset({"RunDeleted", "ProjectDeleted", "ExperimentDeleted"})
RANK_OF = {"writer": 1, "admin": 2}


class IngestRefused(PermissionError):
    """The caller may not write some event of the batch (HTTP 403)."""


class IngestGuard:
    """Checks that every event of a batch goes to a project the caller may write."""

    def __init__(self, engine: Callable[[], AsyncEngine], *, wait: float = 5.0):
        self._engine = engine
        self.wait = wait
        self._run_projects: OrderedDict[str, str] = OrderedDict()  # recently started runs

    async def check(self, identity: Identity | None, items: Sequence[Any]) -> None:
        if identity is None or identity.access.unrestricted or identity.access.is_admin:
            return
        access = identity.access
        started: dict[str, str] = {}
        runs: dict[str, str] = {}  # run → the role its events need
        projects: dict[str, str] = {}  # project → the role the batch needs there
        datasets = False

        def need(where: dict[str, str], key: str, type_: Any) -> None:
            # Deleting a project, an experiment or a run takes a project admin.
            role = "admin" if type_ in DELETIONS else "writer"
            if RANK_OF[role] > RANK_OF.get(where.get(key, ""), 0):
                where[key] = role

        for item in items:
            kind, ident, payload = _parts(item)
            type_ = item.get("type") if isinstance(item, dict) else None
            if kind == "run":
                need(runs, ident, type_)
                if isinstance(payload.get("project"), str) and type_ == "RunStarted":
                    started[ident] = payload["project"]
                    need(projects, payload["project"], type_)
            elif kind == "project":
                need(projects, ident, type_)
            elif kind == "experiment":
                project = payload.get("project")
                need(projects, project if isinstance(project, str) else ident.split("/", 1)[0], type_)
            elif kind == "dataset":
                datasets = True
        known = await self._projects_of(set(runs), wait_for=set(runs) - set(started))
        for run, role in runs.items():
            project = known.get(run) or started.get(run)
            if project is None:
                raise IngestRefused(f"run {run!r} is not known (yet): start it with RunStarted")
            need(projects, project, "RunDeleted" if role == "admin" else None)
        if datasets and not access.allows("project", None, "writer"):
            raise IngestRefused(f"{identity.name} may not write datasets (needs writer on a project)")
        for project, role in sorted(projects.items()):
            if not access.allows("project", project, role):
                verb = "write to" if role == "writer" else "delete in"
                raise IngestRefused(f"{identity.name} may not {verb} project {project!r}")
        for run, project in started.items():
            self._remember(run, project)

    def _remember(self, run: str, project: str) -> None:
        self._run_projects[run] = project
        self._run_projects.move_to_end(run)
        while len(self._run_projects) > 100_000:
            self._run_projects.popitem(last=False)

    async def _projects_of(self, runs: set[str], wait_for: set[str]) -> dict[str, str]:
        """run → project for the runs already known (this process, or the read model);
        runs in `wait_for` are waited for a little while the projection catches up."""
        found = {r: self._run_projects[r] for r in runs if r in self._run_projects}
        deadline = time.monotonic() + self.wait
        while True:
            missing = runs - set(found)
            if missing:
                found.update(await run_projects(self._engine(), missing))
            if not (wait_for - set(found)) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)


def _parts(item: Any) -> tuple[str, str, dict[str, Any]]:
    # Items the writer will refuse anyway (not objects, unknown types) are not ours to judge.
    if not isinstance(item, dict):
        return "", "", {}
    aggregate, payload = item.get("aggregate"), item.get("payload")
    spec = EVENT_TYPES.get(item.get("type")) if isinstance(item.get("type"), str) else None
    if spec is None or not isinstance(aggregate, dict) or not isinstance(aggregate.get("id"), str):
        return "", "", {}
    return spec.aggregate_kind, aggregate["id"], payload if isinstance(payload, dict) else {}


async def run_projects(engine: AsyncEngine, runs: Iterable[str]) -> dict[str, str]:
    from modeldb.projectors import read_model as rm

    wanted = sorted(runs)
    found: dict[str, str] = {}
    async with engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            rows = await conn.execute(select(rm.runs.c.id, rm.runs.c.project)
                                      .where(rm.runs.c.id.in_(wanted[start:start + 500])))
            found.update({r.id: r.project for r in rows if r.project is not None})
    return found


async def may_download(engine: AsyncEngine, identity: Identity | None, digest: str) -> bool:
    """An artifact is readable through a run or a model version the caller may read."""
    if identity is None or identity.access.unrestricted or identity.access.is_admin:
        return True
    from modeldb.projectors import read_model as rm

    access = identity.access
    async with engine.connect() as conn:
        projects = await conn.execute(
            select(rm.runs.c.project).join(rm.artifacts, rm.artifacts.c.run_id == rm.runs.c.id)
            .where(rm.artifacts.c.digest == digest).distinct())
        if any(access.allows("project", p, "reader") for (p,) in projects if p):
            return True
        models = await conn.execute(select(rm.model_versions.c.model).where(
            rm.model_versions.c.artifact_digest == digest).distinct())
        return any(access.allows("model", m, "reader") for (m,) in models)


# -- registry commands ----------------------------------------------------------------------


def authorize_command(principal: Principal | None, command: str, args: Mapping[str, Any]) -> Principal | None:
    """The principal the command runs as, or Forbidden. Unknown commands pass through (the
    command service refuses them with its own message)."""
    if not isinstance(principal, Identity) or principal.access.unrestricted:
        return principal
    rule = COMMAND_RULES.get(command)
    if rule is None:
        if command in _known_commands() and not principal.access.is_admin:
            raise Forbidden(f"{command} has no access rule: refused")
        return principal
    scope, arg, role = rule
    access = principal.access
    name = args.get(arg) if arg else None
    if scope == "global":
        ok = access.is_admin
    elif scope == "models" or not isinstance(name, str):
        ok = access.allows("model", None, role)
    else:
        ok = access.allows("model", name, role)
    if not ok:
        target = f" on model {name!r}" if isinstance(name, str) else ""
        raise Forbidden(f"{principal.name} needs the {role} role{target} for {command}")
    return principal.for_model(name) if isinstance(name, str) else principal


def _known_commands() -> frozenset[str]:
    from modeldb.writer.commands import COMMANDS

    return frozenset(COMMANDS)


class GuardedCommands:
    """A command service (or System) whose commands first pass COMMAND_RULES, and whose
    `create_version` needs read access to the run it names."""

    def __init__(self, inner: Any, engine: Callable[[], AsyncEngine]):
        self._inner = inner
        self._engine = engine

    async def execute(self, command: str, args: Mapping[str, Any], principal: Principal, **kw: Any) -> Any:
        who = authorize_command(principal, command, args)
        run_id = args.get("run_id")
        if isinstance(who, Identity) and command == "create_version" and isinstance(run_id, str) \
                and not who.access.is_admin:
            project = (await run_projects(self._engine(), [run_id])).get(run_id)
            if project is not None and not who.access.allows("project", project, "reader"):
                raise NotFound(f"no run {run_id!r}")  # the same answer as a missing run
        return await self._inner.execute(command, args, who, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)



def install(app: Any, settings: Any, get_system: Callable[[], Any | None],
            projections: tuple[str, ...]) -> tuple[Authenticator, Any]:
    """Authentication, access rules, rate limits, metrics and the health routes on `app`;
    the authenticator (its store is set once the system is open) and the metrics."""
    from modeldb.infra.ops import Metrics, MetricsMiddleware, ops_router

    authenticator = Authenticator(settings.auth, None, proxy_header=settings.auth_proxy_header)
    metrics = Metrics()
    app.include_router(ops_router(metrics, get_system, projections, settings.ready_lag))
    app.add_middleware(GuardMiddleware, authenticator=authenticator,
                       routes=lambda: app.router.routes, rate_limit=settings.rate_limit)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: app.router.routes)
    return authenticator, metrics
