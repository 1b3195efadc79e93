"""The FastAPI application: ingest, GraphQL and UI in one process (`modeldb serve`), or
any part alone (`modeldb writer`, `modeldb api`)."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from modeldb.infra.guard import GuardedCommands, IngestGuard, identity_of, install, may_download
from modeldb.infra.ops import CountingWriter, bound_malloc_heap, freeze_startup_heap
from modeldb.infra.security import SecurityStore
from modeldb.infra.settings import Settings
from modeldb.infra.system import PROJECTIONS, System
from modeldb.query_api.app import query_router
from modeldb.query_api.runs import RunQueries
from modeldb.writer.http import ingest_router, registry_router
from modeldb.writer.registry import ADMIN_ROLE, Principal
from modeldb.writer.uploads import uploads_router

# The `local` auth mode's development headers (modeldb.infra.security): a caller names itself
# (and its roles, comma-separated). Without them the caller is the local user who runs the
# server, who owns the installation (all roles). In `token` and `proxy` mode the guard
# middleware (modeldb.infra.guard) authenticates every request and these are ignored.
USER_HEADER = "x-modeldb-user"
ROLES_HEADER = "x-modeldb-roles"


def local_principal() -> Principal:
    """The user who runs ModelDB, owner of the installation (every role)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        name = f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return Principal(name, frozenset({ADMIN_ROLE}))


def principal_of(request: Request) -> Principal:
    identity = identity_of(request)  # authenticated by modeldb.infra.guard (any mode)
    if identity is not None:
        return identity
    user = (request.headers.get(USER_HEADER) or "").strip()
    if not user:
        return local_principal()
    roles = request.headers.get(ROLES_HEADER) or ""
    return Principal(user[:250], frozenset(r.strip() for r in roles.split(",") if r.strip()))


def local_actor(request: Request) -> str:
    # The embedded default has one user: whoever runs the server (see principal_of).
    return principal_of(request).name


def _start_demo(url: str, authorization: str) -> subprocess.Popen[bytes]:
    """`modeldb demo` as a child process (the SDK's client is process-global state), acting
    with the token of whoever pressed the button, so it works in token mode too."""
    env = dict(os.environ)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        env["MODELDB_TOKEN"] = token.strip()
    return subprocess.Popen([sys.executable, "-m", "modeldb.infra.cli", "demo", "--url", url], env=env)


def create_app(
    settings: Settings,
    *,
    ingest: bool = True,
    query: bool = True,
    projections: tuple[str, ...] = PROJECTIONS,
    webhooks: bool = False,
) -> FastAPI:
    state: dict[str, System] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        bound_malloc_heap()
        system = await System.open(settings)
        system.start_projectors(projections + (("webhooks",) if webhooks else ()))
        authenticator.store = SecurityStore(system.engine)
        await authenticator.store.setup()
        state["system"] = system
        freeze_startup_heap()
        try:
            yield
        finally:
            await system.close()

    app = FastAPI(title="ModelDB", lifespan=lifespan, docs_url="/api/docs")

    def system() -> System:
        return state["system"]

    authenticator, metrics = install(app, settings, lambda: state.get("system"), projections)
    ingest_guard = IngestGuard(lambda: system().engine)

    async def authorize_ingest(request: Request, items: list) -> None:
        await ingest_guard.check(identity_of(request), items)

    async def may_read(request: Request, digest: str) -> bool:
        return await may_download(system().engine, identity_of(request), digest)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        ready = "system" in state
        return JSONResponse({"status": "ok" if ready else "starting"}, 200 if ready else 503)

    @app.get("/api/v1/projections")
    async def projection_status(wait: bool = False, timeout: float = 10.0) -> JSONResponse:
        """Where each projection is; with ?wait=true, first wait until the projections this
        process runs have applied everything appended so far (read-your-writes)."""
        s = system()
        done = await s.wait_projected(min(timeout, 60.0), projections) if wait else True
        body = {"caught_up": done, "log_head": await s.log.head(),
                "projections": {n: s.runtimes[n].checkpoint for n in projections}}
        return JSONResponse(body, 200 if done else 504)

    @app.get("/api/v1/audit/checkpoint")
    async def audit_checkpoint() -> JSONResponse:
        """A signed checkpoint of the audit chain as this server sees it now."""
        from modeldb.projectors.checkpoints import make_checkpoint

        s = system()
        return JSONResponse(await make_checkpoint(s.audit, s.key))

    if ingest:
        demo_runs: list[subprocess.Popen[bytes]] = []

        @app.post("/api/v1/demo", status_code=202)
        async def load_demo(request: Request) -> JSONResponse:
            """Train the demo models into this server (the UI's "Load demo data" button)."""
            if demo_runs and demo_runs[-1].poll() is None:
                return JSONResponse({"status": "already running"}, 409)
            demo_runs.append(_start_demo(str(request.base_url).rstrip("/"),
                                         request.headers.get("authorization", "")))
            return JSONResponse({"status": "started"}, 202)

        app.include_router(ingest_router(
            lambda: CountingWriter(system().writer, metrics), lambda: system().artifacts,
            local_actor, max_body=settings.max_body, authorize=authorize_ingest,
            may_download=may_read))
        app.include_router(registry_router(
            lambda: GuardedCommands(system().commands, lambda: system().engine), principal_of))
        app.include_router(uploads_router(lambda: system().artifacts))  # resumable uploads
    if query:
        queries: dict[str, RunQueries] = {}

        def parts() -> tuple:
            s = system()
            if "q" not in queries:
                queries["q"] = RunQueries(s.engine)
            return queries["q"], s.graph, s.audit

        app.include_router(query_router(
            parts, principal_of, lambda: GuardedCommands(system(), lambda: system().engine),
            extra_context=lambda: {"authenticator": authenticator}))
    return app
