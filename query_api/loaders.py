"""Per-request dataloaders: each nested field gathers the run ids of a whole page and
loads them in one query."""

from __future__ import annotations

from typing import Any

from strawberry.dataloader import DataLoader

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
        self.attributes = DataLoader(self._attributes)

    async def _attributes(self, ids: list[str]) -> list[list[tuple[str, str]]]:
        from modeldb.query_api.attributes import run_attributes

        return await run_attributes(self.queries.engine, ids)

    def _grouped(self, table: Any, *order: Any) -> DataLoader[str, list[Any]]:
        async def load(ids: list[str]) -> list[list[Any]]:
            return await self.queries.grouped(table, ids, *order)

        return DataLoader(load)
