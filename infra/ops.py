"""Operating a server: /metrics (Prometheus text format), /livez, /readyz, request metrics,
and structured JSON logs.

- /livez: the process answers (restart it if not);
- /readyz: the log is reachable and every projection this process runs trails the log
  by at most `Settings.ready_lag` events (send it traffic only then);
- /metrics: ingest counters, projection lag per projection, in-flight requests (the
  queue in front of the log), HTTP request latency histograms per route (GraphQL = query).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modeldb.writer.log import Checkpoint


class Metrics:
    """One registry per app, so several apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("modeldb_ingested_events", "events appended to the log by ingest",
                              registry=r)
        self.batches = Counter("modeldb_ingested_batches", "ingest batches appended", registry=r)
        self.requests = Counter("modeldb_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("modeldb_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=r,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.in_flight = Gauge("modeldb_http_in_flight", "requests being handled (ingest "
                               "requests waiting on the log among them)", ["route"], registry=r)
        self.lag = Gauge("modeldb_projection_lag_events",
                         "events appended to the log and not yet applied", ["projection"], registry=r)
        self.log_up = Gauge("modeldb_event_log_up", "1 if the event log answered", registry=r)


def lag(head: Checkpoint, checkpoint: Checkpoint | None) -> int:
    done = checkpoint or {}
    return sum(max(0, position - done.get(part, 0)) for part, position in head.items())


class CountingWriter:
    """The writer, counting what ingest appends."""

    def __init__(self, inner: Any, metrics: Metrics):
        self._inner = inner
        self._metrics = metrics

    async def ingest(self, items: Any, actor: str, **kw: Any) -> list[int]:
        positions = await self._inner.ingest(items, actor, **kw)
        self._metrics.events.inc(len(positions))
        self._metrics.batches.inc()
        return positions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: Callable[[], Iterable[BaseRoute]]):
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from modeldb.infra.guard import match_route

        entry = match_route(self.routes(), scope)
        route = entry.path if entry else "unmatched"  # a template: bounded label values
        method = scope.get("method", "GET")
        status = {"code": 500}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        gauge = self.metrics.in_flight.labels(route)
        gauge.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, sending)
        finally:
            gauge.dec()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)
            self.metrics.requests.labels(method, route, str(status["code"])).inc()


def ops_router(metrics: Metrics, get_system: Callable[[], Any | None],
               projections: tuple[str, ...], ready_lag: int) -> APIRouter:
    router = APIRouter()

    async def observe() -> tuple[bool, dict[str, int]]:
        system = get_system()
        if system is None:
            return False, {}
        try:
            head = await asyncio.wait_for(system.log.head(), 5.0)
            metrics.log_up.set(1)
        except Exception:  # any failure to reach the log means "not ready"
            metrics.log_up.set(0)
            return False, {}
        lags = {}
        for name in projections:
            lags[name] = lag(head, system.runtimes[name].checkpoint)
            metrics.lag.labels(name).set(lags[name])
        return True, lags

    @router.get("/livez")
    async def livez() -> JSONResponse:
        return JSONResponse({"status": "alive"})

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        reachable, lags = await observe()
        behind = {n: v for n, v in lags.items() if v > ready_lag}
        ready = reachable and not behind
        body = {"ready": ready, "log": "reachable" if reachable else "unreachable",
                "projection_lag": lags}
        return JSONResponse(body, 200 if ready else 503)

    @router.get("/metrics")
    async def prometheus() -> Response:
        await observe()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (+ exception type, not its
    traceback text, which can carry request data)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                               "level": record.levelname.lower(), "logger": record.name,
                               "message": record.getMessage()}
        if record.exc_info and record.exc_info[0] is not None:
            doc["exception"] = record.exc_info[0].__name__
        return json.dumps(doc, default=str)


def log_config(log_format: str, level: str) -> dict[str, Any] | None:
    """uvicorn's log_config for MODELDB_LOG_FORMAT=json (None: uvicorn's own text logs)."""
    if log_format != "json":
        return None
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    loggers = {name: {"handlers": ["default"], "level": level.upper(), "propagate": False}
               for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "modeldb")}
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
            "handlers": {"default": handler}, "loggers": loggers}


def freeze_startup_heap() -> None:
    """Exclude everything alive now (modules, the GraphQL schema, compiled statements: a
    long-running process's startup heap, ~150,000 objects) from the cyclic garbage
    collector's passes. Never garbage, they made each full pass cost 30-65 ms on the 2-core
    development machine, every few requests of a busy server; frozen, a pass after a
    request costs ~1 ms. Call once the process has started."""
    gc.collect()
    gc.freeze()


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# Fixed where glibc's dynamic threshold starts (128 KiB) measured as small a peak, but the
# benchmark's million logged points took up to a fifth longer to ingest (a map per block).
_MALLOC_THRESHOLD = 1024 * 1024


def bound_malloc_heap() -> bool:
    """Keep a long-running process's C heap from holding on to what it freed (glibc only;
    returns whether it applied).

    glibc serves a block of 128 KiB or more with its own memory map, returned to the OS
    when freed, but it then raises that threshold (up to 32 MiB) to the size of the block
    freed. A server that decodes request bodies and log batches of megabytes moves them
    into the heap that way, where a few small live objects keep the freed space from ever
    going back. Under the benchmark's load (a million logged points, ten searches at
    100,000 runs, a 1M-point series, three ingests; bench/mlflow_compare.py scenario 7),
    `modeldb serve` peaked at 512-646 MiB private and held 448-558 MiB afterwards; with
    both thresholds fixed at 1 MiB, 336-378 and 234-287 MiB, ingesting as fast."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no mallopt (macOS); musl's does nothing, returns 0
        return False
    return all(mallopt(option, _MALLOC_THRESHOLD) == 1
               for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD))
