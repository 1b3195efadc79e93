"""The GraphQL schema (strawberry). Field names follow the public contract in DESIGN.md.

Runs, lineage, history and time travel live here; the registry (models, versions,
deployments, webhooks, mutations) in query_api/registry.py; app.py merges them."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info
from strawberry.types.nodes import SelectedField

from modeldb.event_schema.nodes import aggregate_of, node_id, parse_node_id
from modeldb.projectors.lineage import DEFAULT_LIMIT, MAX_DEPTH
from modeldb.query_api.filters import FilterError
from modeldb.query_api.loaders import Loaders
from modeldb.query_api.plain_objects import prefetched


def _time(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None


def _finite(value: float | None) -> float | None:
    # GraphQL floats cannot carry NaN or infinity; null says "not a finite number".
    return value if value is not None and math.isfinite(value) else None


@strawberry.type
class KeyValue:
    key: str
    value: str


@strawberry.type
class Metric:
    key: str
    value: float | None
    step: int
    timestamp: float = strawberry.field(description="epoch milliseconds")
    min: float | None
    max: float | None
    count: int


@strawberry.type
class MetricPoint:
    step: int
    timestamp: float = strawberry.field(description="epoch milliseconds")
    value: float | None


@strawberry.type
class Artifact:
    name: str
    digest: str
    uri: str
    kind: str
    size: float


@strawberry.type
class LinkedEntity:
    id: str
    kind: str
    name: str | None


@strawberry.type
class CodeVersion:
    commit: str
    repository: str | None
    branch: str | None
    dirty: bool


@strawberry.type
class NamedRef:
    name: str


@strawberry.type
class ExperimentRun:
    id: strawberry.ID
    name: str | None
    status: str
    start_time: datetime | None
    end_time: datetime | None
    _row: strawberry.Private[Any]
    _loaders: strawberry.Private[Loaders]
    # Answers of the @prefetched fields, loaded for a whole page (query_api/plain_objects.py)
    _prefetched: strawberry.Private[dict[str, Any] | None] = None

    @classmethod
    def of(cls, row: Any, loaders: Loaders, prefetched: dict[str, Any] | None = None) -> ExperimentRun:
        return cls(id=strawberry.ID(row.id), name=row.name, status=row.status,
                   start_time=_time(row.start_time), end_time=_time(row.end_time),
                   _row=row, _loaders=loaders, _prefetched=prefetched)

    @strawberry.field
    def project(self) -> NamedRef | None:
        return NamedRef(name=self._row.project) if self._row.project else None

    @strawberry.field
    def experiment(self) -> NamedRef | None:
        return NamedRef(name=self._row.experiment) if self._row.experiment else None

    @strawberry.field
    @prefetched("params")
    async def params(self) -> list[KeyValue]:
        return _key_values(await self._loaders.params.load(self.id))

    @strawberry.field
    @prefetched("metrics")
    async def metrics(self) -> list[Metric]:
        return _metrics(await self._loaders.metrics.load(self.id))

    @strawberry.field
    @prefetched("tags")
    async def tags(self) -> list[KeyValue]:
        return _key_values(await self._loaders.tags.load(self.id))

    @strawberry.field(description="custom attributes: set by the training code, or derived "
                      "by enrichers (anomaly, anomaly.<metric>, framework, model_type …)")
    async def attributes(self) -> list[KeyValue]:
        return [KeyValue(key=k, value=v) for k, v in await self._loaders.attributes.load(self.id)]

    @strawberry.field
    async def metric_history(self, key: str, max_points: int | None = None) -> list[MetricPoint]:
        if max_points is not None:  # min/max buckets computed by the database
            from modeldb.query_api.downsample import downsample

            sampled = await downsample(self._loaders.queries.engine, self.id, key, max_points)
            if sampled is not None:
                return [MetricPoint(step=p.step, timestamp=p.timestamp, value=_finite(p.value))
                        for p in sampled]
        rows = await self._loaders.queries.metric_history(self.id, key)
        return [MetricPoint(step=r.step, timestamp=r.timestamp, value=_finite(r.value)) for r in rows]

    @strawberry.field(description="metricHistory as columns, the fast way to read a long series: "
                      "{key, count, sampled, steps, timestamps (epoch ms), values (null where not "
                      "finite)}; maxPoints downsamples as in metricHistory")
    async def metric_series(self, info: Info, key: str, max_points: int | None = None) -> JSON:
        from modeldb.query_api.series import series_answer  # query_api/series.py

        # Over HTTP (the router puts the request in the context) as pre-encoded JSON.
        return await series_answer(self._loaders.queries.engine, self.id, key, max_points,
                                   over_http="request" in info.context)

    @strawberry.field
    async def artifacts(self) -> list[Artifact]:
        return [Artifact(name=r.name, digest=r.digest, uri=r.uri, kind=r.kind, size=r.size)
                for r in await self._loaders.artifacts.load(self.id)]

    async def _links(self, direction: str) -> list[LinkedEntity]:
        return [LinkedEntity(id=r.entity_id, kind=r.kind, name=r.name)
                for r in await self._loaders.links.load(self.id) if r.direction == direction]

    @strawberry.field
    async def inputs(self) -> list[LinkedEntity]:
        return await self._links("input")

    @strawberry.field
    async def outputs(self) -> list[LinkedEntity]:
        return await self._links("output")

    @strawberry.field
    async def parent(self) -> ExperimentRun | None:
        if not self._row.parent_id:
            return None
        row = await self._loaders.run.load(self._row.parent_id)
        return ExperimentRun.of(row, self._loaders) if row else None

    @strawberry.field
    async def code_version(self) -> CodeVersion | None:
        rows = await self._loaders.code.load(self.id)
        if not rows:
            return None
        r = rows[0]
        return CodeVersion(commit=r.commit, repository=r.repository, branch=r.branch, dirty=r.dirty)

    @strawberry.field
    async def environment(self) -> JSON | None:
        rows = await self._loaders.environment.load(self.id)
        if not rows:
            return None
        import orjson

        return {"python": rows[0].python, "platform": rows[0].platform,
                "packages": orjson.loads(rows[0].packages)}


def _key_values(rows: list[Any]) -> list[KeyValue]:
    return [KeyValue(key=r.key, value=r.value) for r in rows]


def _metrics(rows: list[Any]) -> list[Metric]:
    return [Metric(key=r.key, value=_finite(r.value), step=r.step, timestamp=r.timestamp,
                   min=_finite(r.min_value), max=_finite(r.max_value), count=r.count)
            for r in rows]


# The @prefetched lists of ExperimentRun: the loader of their rows, and the answer made of them.
CHILDREN: dict[str, tuple[Callable[[Loaders], Any], Callable[[list[Any]], list[Any]]]] = {
    "params": (lambda loaders: loaders.params, _key_values),
    "metrics": (lambda loaders: loaders.metrics, _metrics),
    "tags": (lambda loaders: loaders.tags, _key_values),
}


async def prefetch_children(loaders: Loaders, names: set[str], ids: list[str]) -> list[dict[str, Any]]:
    """For each run of a page, the answers of its selected @prefetched lists, each list
    loaded for the whole page in one query (and primed in its loader, for the full path)."""
    answers: list[dict[str, Any]] = [{} for _ in ids]
    for name in sorted(names & CHILDREN.keys()):
        loader_of, answer = CHILDREN[name]
        loader = loader_of(loaders)
        grouped = await loader.load_fn(ids)
        loader.prime_many(dict(zip(ids, grouped, strict=True)))
        for per_run, rows in zip(answers, grouped, strict=True):
            per_run[name] = answer(rows)
    return answers


def selected(selections: list[Any], *path: str) -> set[str]:
    """The names of the fields selected at `path` below `selections` (strawberry's
    `info.selected_fields`), through fragments."""
    names: set[str] = set()
    for selection in selections:
        if not isinstance(selection, SelectedField):  # a fragment: its selections, same level
            names |= selected(selection.selections, *path)
        elif not path:
            names.add(selection.name)
        elif selection.name == path[0]:
            names |= selected(selection.selections, *path[1:])
    return names


@strawberry.type
class RunEdge:
    cursor: str
    node: ExperimentRun


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class RunConnection:
    edges: list[RunEdge]
    page_info: PageInfo
    _total: strawberry.Private[int | None]  # None: not selected, so not counted

    @strawberry.field
    def total_count(self) -> int:
        if self._total is None:  # pragma: no cover - counted whenever a query selects it
            raise RuntimeError("totalCount was not counted")
        return self._total


@strawberry.type
class Experiment:
    name: str
    description: str


@strawberry.type
class Project:
    name: str
    description: str
    _loaders: strawberry.Private[Loaders]

    @strawberry.field
    async def experiments(self) -> list[Experiment]:
        return [Experiment(name=r.name, description=r.description)
                for r in await self._loaders.experiments.load(self.name)]


@strawberry.enum
class Direction(Enum):
    UPSTREAM = "UPSTREAM"
    DOWNSTREAM = "DOWNSTREAM"


@strawberry.type
class LineageNode:
    id: str
    kind: str
    name: str | None  # null on a node redacted for the caller (query_api/authz.py)


@strawberry.type
class LineageEdge:
    source: str
    target: str
    kind: str


@strawberry.type
class LineageGraph:
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    truncated: bool = strawberry.field(
        default=False, description="the node limit left out nodes within reach (the nearest are kept)")


@strawberry.type(name="Event")
class EventRecord:
    event_id: str
    type: str
    occurred_at: datetime
    recorded_at: datetime
    actor: str | None
    source: str
    schema_version: int
    payload: JSON

    @classmethod
    def of(cls, raw: dict[str, Any]) -> EventRecord:
        return cls(event_id=raw["event_id"], type=raw["type"],
                   occurred_at=datetime.fromisoformat(raw["occurred_at"]),
                   recorded_at=datetime.fromisoformat(raw["recorded_at"]),
                   actor=raw.get("actor"), source=raw.get("source", "sdk"),
                   schema_version=raw.get("schema_version", 1), payload=raw["payload"])


def _loaders(info: Info) -> Loaders:
    return info.context["loaders"]


@strawberry.type
class Query:
    @strawberry.field
    async def projects(self, info: Info) -> list[Project]:
        rows = await _loaders(info).queries.projects()
        return [Project(name=r.name, description=r.description, _loaders=_loaders(info))
                for r in rows]

    @strawberry.field
    async def run(self, info: Info, id: strawberry.ID) -> ExperimentRun | None:
        row = await _loaders(info).run.load(str(id))
        return ExperimentRun.of(row, _loaders(info)) if row else None

    @strawberry.field
    async def runs(
        self,
        info: Info,
        filter: str | None = None,
        order_by: list[str] | None = None,
        first: int = 100,
        after: str | None = None,
        project: str | None = None,
        experiment: str | None = None,
    ) -> RunConnection:
        loaders = _loaders(info)
        counted = "totalCount" in selected(info.selected_fields, "runs")
        try:
            page = await loaders.queries.search(filter, order_by, first, after, project, experiment,
                                                counted)
        except FilterError as exc:
            raise ValueError(f"invalid filter: {exc}") from None
        children = await prefetch_children(loaders, selected(info.selected_fields, "runs", "edges", "node"),
                                           [r.id for r in page.rows])
        edges = [RunEdge(cursor=c, node=ExperimentRun.of(r, loaders, prefetched))
                 for r, c, prefetched in zip(page.rows, page.cursors, children, strict=True)]
        return RunConnection(
            _total=page.total,
            edges=edges,
            page_info=PageInfo(has_next_page=page.has_next,
                               end_cursor=page.cursors[-1] if page.cursors else None),
        )

    @strawberry.field
    async def lineage(
        self,
        info: Info,
        id: strawberry.ID,
        direction: Direction = Direction.UPSTREAM,
        depth: int = 5,
        edge_kinds: list[str] | None = None,
        node_kinds: list[str] | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> LineageGraph:
        from modeldb.query_api.analysis import as_graphql, check_kinds, clamp_limit, only_kinds

        check_kinds(node_kinds, edge_kinds)
        kind, ident = parse_node_id(str(id))
        start = node_id(kind, ident)
        graph = await info.context["graph"].lineage(start, direction.value, max(0, min(depth, MAX_DEPTH)),
                                                    edge_kinds, clamp_limit(limit))
        return as_graphql(only_kinds(graph, node_kinds))

    @strawberry.field
    async def history(
        self,
        info: Info,
        id: strawberry.ID,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[EventRecord]:
        from modeldb.query_api.registry import redact_history

        events = await info.context["audit"].readable_history(aggregate_of(str(id)), actor=actor,
                                                     since=since, until=until)
        return [EventRecord.of(e) for e in await redact_history(info, events)]

    @strawberry.field
    async def run_as_of(self, info: Info, id: strawberry.ID, at: datetime) -> ExperimentRun | None:
        from modeldb.query_api.time_travel import run_as_of

        return await run_as_of(info.context["audit"], str(id), at, ExperimentRun.of)


schema = strawberry.Schema(query=Query)
