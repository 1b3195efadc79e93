"""Per-request dataloaders: each nested field gathers the run ids of a whole page and
loads them in one query.

graphql-core's execution context is a reference cycle, so whatever it reaches outlives the
request until the cyclic garbage collector runs: a page's ~3,000 loaded rows, freed in
passes of 15-20 ms every few requests. `ReleaseLoaded` empties the loaders when the
operation ends, so the rows go as soon as the answer is made."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.dataloader import DataLoader
from strawberry.extensions import SchemaExtension

from modeldb.projectors import read_model as rm
from modeldb.query_api.runs import RunQueries


class Loaders:
    def __init__(self, queries: RunQueries):
        self.queries = queries
        self.run = DataLoader(queries.runs_by_id)
        self.params = self._grouped(rm.params, rm.params.c.key)
        self.metrics = self._grouped(rm.latest_metrics, rm.latest_metrics.c.key)
        self.tags = self._grouped(rm.tags, rm.tags.c.key)
        self.artifacts = self._grouped(rm.artifacts, rm.artifacts.c.name)
        self.links = self._grouped(rm.run_links, rm.run_links.c.kind, rm.run_links.c.entity_id)
        self.code = self._grouped(rm.code_versions)
        self.environment = self._grouped(rm.environments)
        self.experiments = DataLoader(queries.experiments)
        self.versions = DataLoader(queries.model_versions)
        self.aliases = DataLoader(queries.aliases)
        self.attributes = DataLoader(partial(_attributes, queries.engine))

    def _grouped(self, table: Any, *order: Any) -> DataLoader[str, list[Any]]:
        return DataLoader(partial(_grouped, self.queries, table, order))

    def release(self) -> None:
        """Forget everything loaded (the request is answered)."""
        for loader in vars(self).values():
            if isinstance(loader, DataLoader):
                loader.clear_all()


class ReleaseLoaded(SchemaExtension):
    """Empties the request's loaders when its operation ends (see the module docstring)."""

    def on_operation(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        loaders = context.get("loaders") if isinstance(context, dict) else None
        if isinstance(loaders, Loaders):
            loaders.release()


async def _grouped(queries: RunQueries, table: Any, order: tuple[Any, ...],
                   ids: list[str]) -> list[list[Any]]:
    return await queries.grouped(table, ids, *order)


async def _attributes(engine: AsyncEngine, ids: list[str]) -> list[list[tuple[str, str]]]:
    from modeldb.query_api.attributes import run_attributes

    return await run_attributes(engine, ids)
