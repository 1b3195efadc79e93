"""Assembling ModelDB from settings: the log, the writer and its registry commands, the
artifact store, the read database, the projections (sql, graph, audit, search, one per
enricher) with their runtimes, and the webhook outbox with its deliverer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from modeldb.event_schema import Aggregate, RecordedEvent
from modeldb.infra.settings import Settings
from modeldb.projectors.audit import AuditStore
from modeldb.projectors.base import Projection
from modeldb.projectors.db import create_engine
from modeldb.projectors.enrichment import PROJECTION_PREFIX, EnrichmentProjection, discover_enrichers
from modeldb.projectors.graph_sql import SqlGraph
from modeldb.projectors.lineage import GraphStore
from modeldb.projectors.runtime import ProjectorRuntime, rebuild_together
from modeldb.projectors.search import SearchProjection
from modeldb.projectors.sql_projection import SqlReadModel
from modeldb.projectors.webhooks import WebhookDeliverer, WebhookOutbox
from modeldb.writer import ArtifactStore, EventLog, Writer, open_event_log
from modeldb.writer.artifacts import open_artifact_store
from modeldb.writer.commands import CommandResult, CommandService, ProjectedAggregateStore
from modeldb.writer.keys import webhook_secret
from modeldb.writer.log import AggregateLog, Checkpoint, reached
from modeldb.writer.registry import Principal

# The enrichers (plug-ins, found through entry points) each run as a projection of their own.
ENRICHERS = {PROJECTION_PREFIX + e.name: e for e in discover_enrichers()}
PROJECTIONS = ("sql", "graph", "audit", "search", *ENRICHERS)
# What `modeldb serve` and `modeldb project --projection all` run: the projections and the
# webhook outbox (which is not replayed: rebuilding it would send every webhook again).
CONSUMERS = (*PROJECTIONS, "webhooks")


def open_graph(settings: Settings, engine: AsyncEngine) -> Projection:
    if settings.graph == "sql":
        return SqlGraph(engine)
    if settings.graph.startswith(("bolt://", "neo4j://")):
        from modeldb.projectors.graph_neo4j import Neo4jGraph

        return Neo4jGraph(settings.graph)
    raise ValueError(f"MODELDB_GRAPH must be 'sql' or a bolt:// URL, not {settings.graph!r}")


@dataclass
class System:
    settings: Settings
    log: EventLog
    writer: Writer
    artifacts: ArtifactStore
    engine: AsyncEngine
    projections: dict[str, Projection]
    runtimes: dict[str, ProjectorRuntime] = field(default_factory=dict)
    outbox_runtime: ProjectorRuntime | None = None
    key: bytes = b""
    commands: CommandService | None = None
    outbox: WebhookOutbox | None = None
    # True when this process owns the projections (an embedded one-shot), so waiting for
    # them means applying the log here; else they run in some process and are waited for.
    self_projecting: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _running: set[str] = field(default_factory=set)
    _catch_up_lock: asyncio.Lock | None = None

    @classmethod
    async def open(cls, settings: Settings) -> System:
        settings.home.mkdir(parents=True, exist_ok=True)
        log = open_event_log(settings.event_log)
        engine = create_engine(settings.read_db)
        projections: dict[str, Projection] = {
            "sql": SqlReadModel(engine),
            "graph": open_graph(settings, engine),
            "audit": AuditStore(engine),
            "search": SearchProjection(engine),
            **{name: EnrichmentProjection(engine, e) for name, e in ENRICHERS.items()},
        }
        for projection in projections.values():
            await projection.setup()
        system = cls(
            settings=settings,
            log=log,
            writer=Writer(log, max_batch=settings.max_batch, vault=settings.vault()),
            artifacts=open_artifact_store(settings.artifact_store, settings.artifacts,
                                          s3_endpoint_url=settings.s3_endpoint_url),
            engine=engine,
            projections=projections,
        )
        system.runtimes = {name: ProjectorRuntime(log, p, reveal=system.writer.vault)
                           for name, p in projections.items()}
        system.key = settings.key()
        system.audit.vault = system.writer.vault
        store = log if isinstance(log, AggregateLog) else ProjectedAggregateStore(
            log, system._read_projected)
        system.commands = CommandService(system.writer, store, secret_for=system.webhook_secret)
        system.outbox = WebhookOutbox(engine)
        await system.outbox.setup()
        system.outbox_runtime = ProjectorRuntime(log, system.outbox)
        return system

    def webhook_secret(self, webhook_id: str) -> str:
        return webhook_secret(self.key, webhook_id)

    @property
    def read_model(self) -> SqlReadModel:
        return self.projections["sql"]  # type: ignore[return-value]

    @property
    def graph(self) -> GraphStore:
        return self.projections["graph"]  # type: ignore[return-value]

    @property
    def audit(self) -> AuditStore:
        return self.projections["audit"]  # type: ignore[return-value]

    def start_projectors(self, names: Iterable[str] = PROJECTIONS) -> None:
        for name in names:
            if name == "webhooks":
                deliverer = WebhookDeliverer(self.engine, self.webhook_secret)
                self._tasks.append(asyncio.create_task(deliverer.run(self._stop)))
            runtime = self.outbox_runtime if name == "webhooks" else self.runtimes[name]
            assert runtime is not None
            self._tasks.append(asyncio.create_task(runtime.run(self._stop)))
            self._running.add(name)

    # -- registry commands, and reading their effect ---------------------------------------------

    async def execute(self, command: str, args: Mapping[str, Any], principal: Principal, *,
                      expected_revision: int | None = None, source: str = "api") -> CommandResult:
        assert self.commands is not None
        return await self.commands.execute(command, args, principal,
                                           expected_revision=expected_revision, source=source)

    async def settle(self, timeout: float = 10.0) -> bool:
        """Wait until the projections reflect everything appended so far (read-your-writes
        after a command), wherever they run; False if `timeout` passed first."""
        if self.self_projecting:
            async with self._catching_up():
                await self.catch_up()
            return True
        target = await self.log.head()
        done = await asyncio.gather(*(self._applied(n, target, timeout) for n in PROJECTIONS))
        return all(done)

    async def _applied(self, name: str, target: Checkpoint, timeout: float) -> bool:
        if name in self._running:
            return await self.runtimes[name].wait_until(target, timeout)
        deadline = time.monotonic() + timeout
        projection = self.projections[name]
        while not reached(await projection.load_checkpoint() or {}, target):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def _catching_up(self) -> asyncio.Lock:
        """One catch-up at a time in this process: two would apply the same batch twice."""
        if self._catch_up_lock is None:
            self._catch_up_lock = asyncio.Lock()
        return self._catch_up_lock

    async def _read_projected(self, aggregate: Aggregate) -> list[RecordedEvent]:
        """One aggregate's events from the audit store, once it has the whole log (for logs
        without conditional appends; see ProjectedAggregateStore)."""
        if self.self_projecting:
            async with self._catching_up():
                await self.runtimes["audit"].catch_up()
        elif not await self._applied("audit", await self.log.head(), 30.0):
            raise TimeoutError("the audit projection is behind the log; registry commands wait "
                               "for it (is `modeldb project --projection audit` running?)")
        events = await self.audit.history(aggregate.id, kind=aggregate.kind)
        return [RecordedEvent(i + 1, raw) for i, raw in enumerate(events)]

    async def rebuild(self, names: Iterable[str] = PROJECTIONS,
                      on_progress: Callable[[int], None] | None = None) -> int:
        """Drop the named projections and rebuild them together, in one pass over the log."""
        return await rebuild_together(self.log, [self.runtimes[n] for n in names], on_progress)

    async def catch_up(self, names: Iterable[str] = PROJECTIONS) -> None:
        for name in names:
            await self.runtimes[name].catch_up()

    async def wait_projected(self, timeout: float = 10.0, names: Iterable[str] | None = None) -> bool:
        """Wait until the running projectors have applied everything appended so far."""
        target = await self.log.head()
        runtimes = [self.runtimes[n] for n in (names or self.runtimes)]
        return all(await asyncio.gather(*(r.wait_until(target, timeout) for r in runtimes)))

    async def close(self) -> None:
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for projection in self.projections.values():
            await projection.close()
        await self.log.close()
        await self.engine.dispose()
