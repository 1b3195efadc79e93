"""Assembling ModelDB from settings: the log, the writer, the artifact store, the read
database and the three projections with their runtimes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from modeldb.infra.settings import Settings
from modeldb.projectors.audit import AuditStore
from modeldb.projectors.base import Projection
from modeldb.projectors.db import create_engine
from modeldb.projectors.graph_sql import SqlGraph
from modeldb.projectors.lineage import GraphStore
from modeldb.projectors.runtime import ProjectorRuntime
from modeldb.projectors.sql_projection import SqlReadModel
from modeldb.writer import EventLog, LocalArtifactStore, Writer, open_event_log

PROJECTIONS = ("sql", "graph", "audit")


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
    artifacts: LocalArtifactStore
    engine: AsyncEngine
    projections: dict[str, Projection]
    runtimes: dict[str, ProjectorRuntime] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def open(cls, settings: Settings) -> System:
        settings.home.mkdir(parents=True, exist_ok=True)
        log = open_event_log(settings.event_log)
        engine = create_engine(settings.read_db)
        projections: dict[str, Projection] = {
            "sql": SqlReadModel(engine),
            "graph": open_graph(settings, engine),
            "audit": AuditStore(engine),
        }
        for projection in projections.values():
            await projection.setup()
        system = cls(
            settings=settings,
            log=log,
            writer=Writer(log, max_batch=settings.max_batch),
            artifacts=LocalArtifactStore(settings.artifacts),
            engine=engine,
            projections=projections,
        )
        system.runtimes = {name: ProjectorRuntime(log, p) for name, p in projections.items()}
        return system

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
            self._tasks.append(asyncio.create_task(self.runtimes[name].run(self._stop)))

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
