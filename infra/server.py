"""The FastAPI application: ingest, GraphQL and UI in one process (`modeldb serve`), or
any part alone (`modeldb writer`, `modeldb api`)."""

from __future__ import annotations

import getpass
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from modeldb.infra.settings import Settings
from modeldb.infra.system import PROJECTIONS, System
from modeldb.query_api.app import query_router
from modeldb.query_api.runs import RunQueries
from modeldb.writer.http import ingest_router


def local_actor(_request: Request) -> str:
    # The embedded default has one user: whoever runs the server (auth arrives later).
    return getpass.getuser()


def create_app(
    settings: Settings,
    *,
    ingest: bool = True,
    query: bool = True,
    projections: tuple[str, ...] = PROJECTIONS,
) -> FastAPI:
    state: dict[str, System] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        system = await System.open(settings)
        system.start_projectors(projections)
        state["system"] = system
        try:
            yield
        finally:
            await system.close()

    app = FastAPI(title="ModelDB", lifespan=lifespan, docs_url="/api/docs")

    def system() -> System:
        return state["system"]

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

    if ingest:
        demo_runs: list[threading.Thread] = []

        @app.post("/api/v1/demo", status_code=202)
        async def load_demo(request: Request) -> JSONResponse:
            """Train the demo models into this server (the UI's "Load demo data" button)."""
            if demo_runs and demo_runs[-1].is_alive():
                return JSONResponse({"status": "already running"}, 409)
            from modeldb.infra.demo import run_demo

            url = str(request.base_url).rstrip("/")
            demo_runs.append(threading.Thread(target=run_demo, args=(url,), daemon=True))
            demo_runs[-1].start()
            return JSONResponse({"status": "started"}, 202)

        app.include_router(ingest_router(lambda: system().writer, lambda: system().artifacts,
                                         local_actor, max_body=settings.max_body))
    if query:
        queries: dict[str, RunQueries] = {}

        def parts() -> tuple:
            s = system()
            if "q" not in queries:
                queries["q"] = RunQueries(s.engine)
            return queries["q"], s.graph, s.audit

        app.include_router(query_router(parts))
    return app
