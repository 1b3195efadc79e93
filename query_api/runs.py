"""Run search: filter, multi-key order (nulls last), keyset cursors, totals — and the
batched loaders the GraphQL fields use so no field issues one query per run."""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from modeldb.projectors import read_model as rm
from modeldb.projectors.db import fetch_rows
from modeldb.query_api.filters import Field, FilterError, OrderKey, parse_filter, parse_order_by

MAX_PAGE = 1000
DEFAULT_ORDER = [OrderKey(Field("attributes", "start_time"), True)]


@dataclass
class RunPage:
    total: int | None  # None: not counted
    rows: list[Row[Any]]
    cursors: list[str]
    has_next: bool


def _encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode()


def _decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, orjson.JSONDecodeError):
        raise FilterError("invalid cursor", 1) from None
    if not isinstance(values, list) or len(values) != size:
        raise FilterError("cursor does not match this orderBy", 1)
    return values


class RunQueries:
    def __init__(self, engine: AsyncEngine, projects: frozenset[str] | None = None):
        self.engine = engine
        # The projects the caller may read (None: all): runs elsewhere do not exist for them.
        self.visible = projects

    def restricted(self, projects: frozenset[str] | None) -> RunQueries:
        """These queries as a caller who may read only `projects` (None: all) sees them."""
        return self if projects is None else type(self)(self.engine, projects)

    def _visible(self, column: Any) -> list[Any]:
        return [] if self.visible is None else [column.in_(sorted(self.visible))]

    async def search(
        self,
        filter: str | None = None,
        order_by: list[str] | None = None,
        first: int = 100,
        after: str | None = None,
        project: str | None = None,
        experiment: str | None = None,
        count: bool = True,
    ) -> RunPage:
        """A page of runs; `count`: also count every match (a query without totalCount
        skips it, which at 100k runs is most of a filtered query's time)."""
        first = max(0, min(first, MAX_PAGE))
        from modeldb.query_api.run_search import search  # the SQL: counts, pages at scale

        scope = [rm.runs.c.deleted.is_(False), *self._visible(rm.runs.c.project)]
        if project:
            scope.append(rm.runs.c.project == project)
        if experiment:
            scope.append(rm.runs.c.experiment == experiment)
        found = await search(self.engine, parse_filter(filter), scope,
                             parse_order_by(order_by) or DEFAULT_ORDER, first,
                             after or None, lambda width: _decode_cursor(after or "", width), count)
        total, rows = found.total, found.rows
        has_next = len(rows) > first
        rows = rows[:first]
        width = len(rm.runs.columns)
        cursors = [_encode_cursor(list(r[width:])) for r in rows]
        return RunPage(total, rows, cursors, has_next)

    async def runs_by_id(self, ids: Sequence[str]) -> list[Row[Any] | None]:
        rows = await self._rows(rm.runs, rm.runs.c.id, ids)
        by_id = {r.id: r for r in rows if self.visible is None or r.project in self.visible}
        return [by_id.get(i) for i in ids]

    async def _rows(self, table: Any, column: Any, ids: Sequence[str], *order: Any) -> list[Row[Any]]:
        async with self.engine.connect() as conn:
            result = []
            unique = list(dict.fromkeys(ids))
            for start in range(0, len(unique), 500):
                query = select(table).where(column.in_(unique[start : start + 500]))
                if order:
                    query = query.order_by(*order)
                result.extend(await fetch_rows(conn, query))
            return result

    async def grouped(self, table: Any, ids: Sequence[str], *order: Any) -> list[list[Row[Any]]]:
        """Rows of `table` for each run id, in the order of `ids` (one query per 500 ids)."""
        groups: dict[str, list[Row[Any]]] = defaultdict(list)
        for row in await self._rows(table, table.c.run_id, ids, *order):
            groups[row.run_id].append(row)
        return [groups.get(i, []) for i in ids]

    async def metric_history(self, run_id: str, key: str) -> list[Row[Any]]:
        t = rm.metric_points
        async with self.engine.connect() as conn:
            return list(await conn.execute(
                select(t.c.step, t.c.timestamp, t.c.value)
                .where(t.c.run_id == run_id, t.c.key == key)
                .order_by(t.c.step, t.c.timestamp)
            ))

    async def projects(self) -> list[Row[Any]]:
        async with self.engine.connect() as conn:
            return list(await conn.execute(
                select(rm.projects).where(rm.projects.c.deleted.is_(False),
                                          *self._visible(rm.projects.c.name))
                .order_by(rm.projects.c.name)))

    async def experiments(self, projects: Sequence[str]) -> list[list[Row[Any]]]:
        groups: dict[str, list[Row[Any]]] = defaultdict(list)
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(rm.experiments).where(rm.experiments.c.project.in_(list(projects)),
                                             rm.experiments.c.deleted.is_(False))
                .order_by(rm.experiments.c.name))
            for row in rows:
                groups[row.project].append(row)
        return [groups.get(p, []) for p in projects]

    async def registered_models(self) -> list[Row[Any]]:
        async with self.engine.connect() as conn:
            return list(await conn.execute(
                select(rm.registered_models).where(rm.registered_models.c.deleted.is_(False))
                .order_by(rm.registered_models.c.name)))

    async def model_versions(self, models: Sequence[str]) -> list[list[Row[Any]]]:
        t = rm.model_versions
        groups: dict[str, list[Row[Any]]] = defaultdict(list)
        async with self.engine.connect() as conn:
            for row in await conn.execute(select(t).where(t.c.model.in_(list(models)),
                                                          t.c.deleted.is_(False))
                                          .order_by(t.c.version)):
                groups[row.model].append(row)
        return [groups.get(m, []) for m in models]

    async def aliases(self, models: Sequence[str]) -> list[list[Row[Any]]]:
        t = rm.model_aliases
        groups: dict[str, list[Row[Any]]] = defaultdict(list)
        async with self.engine.connect() as conn:
            for row in await conn.execute(select(t).where(t.c.model.in_(list(models)))
                                          .order_by(t.c.alias)):
                groups[row.model].append(row)
        return [groups.get(m, []) for m in models]

    async def artifact(self, run_id: str | None, digest: str | None) -> Row[Any] | None:
        if not digest:
            return None
        t = rm.artifacts
        query = select(t).where(t.c.digest == digest)
        if run_id:
            query = query.where(t.c.run_id == run_id)
        async with self.engine.connect() as conn:
            return (await conn.execute(query.limit(1))).first()

