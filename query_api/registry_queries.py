"""Registry reads over the read model: governance, transitions, requests, deployments,
environments, webhooks — each as a batched loader, so no GraphQL field issues one query per
row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.dataloader import DataLoader

from modeldb.projectors import read_model as rm
from modeldb.projectors import webhooks as wh
from modeldb.projectors.audit import audit_events


class RegistryQueries:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def _all(self, query: Any) -> list[Row[Any]]:
        async with self.engine.connect() as conn:
            return list(await conn.execute(query))

    async def _grouped(self, query: Any, keys: Sequence[Hashable],
                       key_of: Any) -> list[list[Row[Any]]]:
        groups: dict[Hashable, list[Row[Any]]] = defaultdict(list)
        for row in await self._all(query):
            groups[key_of(row)].append(row)
        return [groups.get(k, []) for k in keys]

    async def model(self, name: str) -> Row[Any] | None:
        t = rm.registered_models
        rows = await self._all(select(t).where(t.c.name == name, t.c.deleted.is_(False)))
        return rows[0] if rows else None

    async def governance(self, models: Sequence[str]) -> list[Row[Any] | None]:
        t = rm.model_governance
        rows = {r.model: r for r in await self._all(select(t).where(t.c.model.in_(list(models))))}
        return [rows.get(m) for m in models]

    async def revisions(self, models: Sequence[str]) -> list[int]:
        """How many events each model has (the revision commands expect), from the audit."""
        a = audit_events
        rows = dict(await self._all(
            select(a.c.aggregate_id, func.count())
            .where(a.c.aggregate_kind == "model", a.c.aggregate_id.in_(list(models)),
                   a.c.duplicate.is_(False))
            .group_by(a.c.aggregate_id)))
        return [int(rows.get(m, 0)) for m in models]

    async def transitions(self, models: Sequence[str]) -> list[list[Row[Any]]]:
        t, r = rm.model_transitions, rm.transition_requests
        query = (select(t, r.c.requested_by, r.c.comment.label("request_comment"))
                 .outerjoin(r, and_(r.c.model == t.c.model, r.c.request_id == t.c.request_id))
                 .where(t.c.model.in_(list(models))).order_by(t.c.at, t.c.event_id))
        return await self._grouped(query, models, lambda row: row.model)

    async def requests(self, models: Sequence[str]) -> list[list[Row[Any]]]:
        t = rm.transition_requests
        query = (select(t).where(t.c.model.in_(list(models)))
                 .order_by(t.c.requested_at, t.c.request_id))
        return await self._grouped(query, models, lambda row: row.model)

    async def all_requests(self, model: str | None, status: str | None) -> list[Row[Any]]:
        t = rm.transition_requests
        query = select(t).order_by(t.c.requested_at, t.c.request_id)
        if model:
            query = query.where(t.c.model == model)
        if status:
            query = query.where(t.c.status == status)
        return await self._all(query)

    async def deployments_of(self, versions: Sequence[tuple[str, int]]) -> list[list[Row[Any]]]:
        t = rm.deployments
        models = list({m for m, _ in versions})
        query = (select(t).where(t.c.model.in_(models))
                 .order_by(t.c.created_at, t.c.id))
        return await self._grouped(query, versions, lambda row: (row.model, row.version))

    async def deployments(self, model: str | None = None, version: int | None = None,
                          environment: str | None = None,
                          status: str | None = None) -> list[Row[Any]]:
        t = rm.deployments
        query = select(t).order_by(t.c.created_at, t.c.id)
        for column, value in ((t.c.model, model), (t.c.version, version),
                              (t.c.environment, environment), (t.c.status, status)):
            if value is not None:
                query = query.where(column == value)
        return await self._all(query)

    async def deployments_by_id(self, ids: Sequence[str]) -> list[Row[Any] | None]:
        t = rm.deployments
        rows = {r.id: r for r in await self._all(select(t).where(t.c.id.in_(list(ids))))}
        return [rows.get(i) for i in ids]

    async def deployments_in(self, environments: Sequence[str]) -> list[list[Row[Any]]]:
        t = rm.deployments
        query = (select(t).where(t.c.environment.in_(list(environments)))
                 .order_by(t.c.created_at, t.c.id))
        return await self._grouped(query, environments, lambda row: row.environment)

    async def deployment_history(self, ids: Sequence[str]) -> list[list[Row[Any]]]:
        t = rm.deployment_history
        query = (select(t).where(t.c.deployment_id.in_(list(ids)))
                 .order_by(t.c.at, t.c.event_id))
        return await self._grouped(query, ids, lambda row: row.deployment_id)

    async def environments(self, names: Sequence[str] | None = None) -> list[Row[Any]]:
        t = rm.deploy_environments
        query = select(t).order_by(t.c.name)
        if names is not None:
            query = query.where(t.c.name.in_(list(names)))
        return await self._all(query)

    async def environments_by_name(self, names: Sequence[str]) -> list[Row[Any] | None]:
        rows = {r.name: r for r in await self.environments(names)}
        return [rows.get(n) for n in names]

    async def webhooks(self) -> list[Row[Any]]:
        return await self._all(select(wh.webhooks).order_by(wh.webhooks.c.registered_at,
                                                            wh.webhooks.c.id))

    async def deliveries(self, webhook_ids: Sequence[str]) -> list[list[Row[Any]]]:
        t = wh.webhook_deliveries
        query = (select(t).where(t.c.webhook_id.in_(list(webhook_ids)))
                 .order_by(t.c.created_at, t.c.event_id))
        return await self._grouped(query, webhook_ids, lambda row: row.webhook_id)


class RegistryLoaders:
    def __init__(self, queries: RegistryQueries):
        self.queries = queries
        self.governance = DataLoader(queries.governance)
        self.revisions = DataLoader(queries.revisions)
        self.transitions = DataLoader(queries.transitions)
        self.requests = DataLoader(queries.requests)
        self.deployments_of = DataLoader(queries.deployments_of)
        self.deployment = DataLoader(queries.deployments_by_id)
        self.deployments_in = DataLoader(queries.deployments_in)
        self.deployment_history = DataLoader(queries.deployment_history)
        self.environment = DataLoader(queries.environments_by_name)
        self.deliveries = DataLoader(queries.deliveries)
