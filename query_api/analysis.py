"""Analysis queries: comparing runs side by side, and lineage questions asked by name —
the provenance of a model version, the impact of a dataset version — plus the node-kind
filter every lineage answer shares.

`compareRuns` loads runs, params and latest metrics through the request's dataloaders (one
query per table for all runs), the short histories in one query, and each long history
downsampled by the database (`modeldb.query_api.downsample`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import strawberry
from graphql import GraphQLError
from sqlalchemy import select
from strawberry.types import Info

from modeldb.event_schema.nodes import EDGE_KINDS, NODE_KINDS, node_id, parse_node_id
from modeldb.projectors import lineage as ln
from modeldb.projectors import read_model as rm
from modeldb.projectors.db import in_keys
from modeldb.query_api.downsample import DownsampleError, Point, check_max_points, downsample
from modeldb.query_api.loaders import Loaders
from modeldb.query_api.schema import (
    ExperimentRun,
    LineageEdge,
    LineageGraph,
    LineageNode,
    MetricPoint,
    _finite,
)

MAX_COMPARED_RUNS = 50
MAX_COMPARED_SERIES = 1000
DEFAULT_PROVENANCE_DEPTH = 20


# -- lineage helpers -------------------------------------------------------------------------


def check_kinds(node_kinds: Sequence[str] | None, edge_kinds: Sequence[str] | None) -> None:
    """Unknown kinds are a mistake worth naming, not an empty answer."""
    for given, known, what in ((node_kinds, NODE_KINDS, "node"), (edge_kinds, EDGE_KINDS, "edge")):
        unknown = sorted(set(given or ()) - set(known))
        if unknown:
            raise GraphQLError(f"unknown {what} kind(s) {', '.join(unknown)}; "
                               f"known: {', '.join(known)}")


def only_kinds(graph: ln.LineageGraph, node_kinds: Sequence[str] | None) -> ln.LineageGraph:
    """The nodes of the asked kinds, and the stored edges between two of them.

    The traversal itself walks through nodes of every kind (so a model version's datasets
    are found through its run even when runs are filtered out); only the answer is narrowed.
    Applied to either store's traversal, which already agree, so the stores agree here too."""
    if not node_kinds:
        return graph
    wanted = set(node_kinds)
    nodes = [n for n in graph.nodes if n.kind in wanted]
    kept = {n.id for n in nodes}
    return ln.LineageGraph(nodes, [e for e in graph.edges if e.source in kept and e.target in kept],
                           graph.truncated)


def as_graphql(graph: ln.LineageGraph) -> LineageGraph:
    return LineageGraph(
        nodes=[LineageNode(id=n.id, kind=n.kind, name=n.name) for n in graph.nodes],
        edges=[LineageEdge(source=e.source, target=e.target, kind=e.kind) for e in graph.edges],
        truncated=graph.truncated)


def clamp_depth(depth: int) -> int:
    return max(0, min(depth, ln.MAX_DEPTH))


def clamp_limit(limit: int) -> int:
    """At least one node (the start); at most `MAX_LIMIT`, which `truncated` then reports."""
    if limit < 1:
        raise GraphQLError(f"limit must be at least 1, not {limit}")
    return min(limit, ln.MAX_LIMIT)


# -- run comparison --------------------------------------------------------------------------


@strawberry.type
class ParamComparison:
    key: str
    values: list[str | None] = strawberry.field(description="aligned with runs; null where absent")
    differs: bool


@strawberry.type
class MetricComparison:
    key: str
    values: list[float | None] = strawberry.field(
        description="each run's latest value, aligned with runs; null where absent or not finite")
    differs: bool


@strawberry.type
class MetricSeries:
    run_id: strawberry.ID
    key: str
    points: list[MetricPoint]


@strawberry.type
class RunComparison:
    runs: list[ExperimentRun]
    params: list[ParamComparison]
    metrics: list[MetricComparison]
    histories: list[MetricSeries]


def _differs(values: Sequence[Any]) -> bool:
    return len({repr(v) for v in values}) > 1  # repr: None, and NaN equal to itself


async def _short_histories(loaders: Loaders,
                           pairs: list[tuple[str, str]]) -> dict[tuple[str, str], list[Point]]:
    """Whole histories of short series, all in one query."""
    t = rm.metric_points
    found: dict[tuple[str, str], list[Point]] = defaultdict(list)
    async with loaders.queries.engine.connect() as conn:
        for start in range(0, len(pairs), 200):
            rows = await conn.execute(
                select(t.c.run_id, t.c.key, t.c.step, t.c.timestamp, t.c.value)
                .where(in_keys((t.c.run_id, t.c.key), pairs[start : start + 200]))
                .order_by(t.c.run_id, t.c.key, t.c.step, t.c.timestamp))
            for r in rows:
                found[(r.run_id, r.key)].append(Point(r.step, r.timestamp, r.value))
    return found


async def compare(loaders: Loaders, ids: list[str], metric_keys: list[str] | None,
                  max_points: int) -> RunComparison:
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise GraphQLError("compareRuns needs at least one run id")
    if len(ids) > MAX_COMPARED_RUNS:
        raise GraphQLError(f"compareRuns takes at most {MAX_COMPARED_RUNS} runs, not {len(ids)}")
    try:
        check_max_points(max_points)
    except DownsampleError as exc:
        raise GraphQLError(str(exc)) from None
    rows = await loaders.run.load_many(ids)
    missing = [i for i, row in zip(ids, rows, strict=True) if row is None]
    if missing:
        raise GraphQLError(f"unknown run id(s): {', '.join(missing)}")
    params = await loaders.params.load_many(ids)
    metrics = await loaders.metrics.load_many(ids)
    wanted = set(metric_keys) if metric_keys is not None else None
    param_by = [{p.key: p.value for p in ps} for ps in params]
    metric_by = [{m.key: m for m in ms if wanted is None or m.key in wanted} for ms in metrics]
    param_keys = sorted({k for d in param_by for k in d})
    keys = sorted({k for d in metric_by for k in d})
    compared_params = []
    for key in param_keys:
        values = [d.get(key) for d in param_by]
        compared_params.append(ParamComparison(key=key, values=values, differs=_differs(values)))
    compared_metrics = []
    for key in keys:
        values = [_finite(d[key].value) if key in d else None for d in metric_by]
        compared_metrics.append(MetricComparison(key=key, values=values, differs=_differs(values)))
    series = [(run_id, key, d[key]) for run_id, d in zip(ids, metric_by, strict=True) for key in keys
              if key in d]
    if len(series) > MAX_COMPARED_SERIES:
        raise GraphQLError(f"{len(series)} metric histories asked, at most {MAX_COMPARED_SERIES}: "
                           "name fewer metricKeys")
    short = await _short_histories(loaders, [(r, k) for r, k, s in series if s.count <= max_points])
    histories = []
    for run_id, key, summary in series:
        points = short.get((run_id, key), [])
        if summary.count > max_points:
            points = await downsample(loaders.queries.engine, run_id, key, max_points, summary) or []
        histories.append(MetricSeries(run_id=strawberry.ID(run_id), key=key, points=[
            MetricPoint(step=p.step, timestamp=p.timestamp, value=_finite(p.value)) for p in points]))
    return RunComparison(runs=[ExperimentRun.of(r, loaders) for r in rows], params=compared_params,
                         metrics=compared_metrics, histories=histories)


# -- the queries -----------------------------------------------------------------------------


@strawberry.type
class ImpactReport:
    graph: LineageGraph
    runs: list[LineageNode] = strawberry.field(description="every run downstream (of the graph's nodes)")
    model_versions: list[LineageNode] = strawberry.field(
        description="every model version downstream (of the graph's nodes: see graph.truncated)")


@strawberry.type
class AnalysisQuery:
    @strawberry.field(description="runs side by side: params, latest metrics, downsampled histories")
    async def compare_runs(self, info: Info, ids: list[strawberry.ID],
                           metric_keys: list[str] | None = None, max_points: int = 500) -> RunComparison:
        return await compare(info.context["loaders"], [str(i) for i in ids], metric_keys, max_points)

    @strawberry.field(description="everything a model version depends on, upstream: its run, "
                                  "the run's data, code, artifacts and parents")
    async def provenance(self, info: Info, name: str, version: str, depth: int = DEFAULT_PROVENANCE_DEPTH,
                         limit: int = ln.DEFAULT_LIMIT) -> LineageGraph:
        from modeldb.query_api.registry import Ctx, _version

        found = await _version(Ctx.of(info), name, version)
        if found is None:
            raise GraphQLError(f"no model version {name}/{version}")
        if found.redacted:  # as ModelVersion.provenance: a redact lock hides the lineage too
            return LineageGraph(nodes=[], edges=[])
        start = node_id("ModelVersion", f"{found.name}/{found.version}")
        return as_graphql(await info.context["graph"].lineage(start, "UPSTREAM", clamp_depth(depth),
                                                              limit=clamp_limit(limit)))

    @strawberry.field(description="everything built on a node (typically a dataset version), "
                                  "downstream: runs that used it and model versions they made")
    async def impact(self, info: Info, id: strawberry.ID, depth: int = DEFAULT_PROVENANCE_DEPTH,
                     limit: int = ln.DEFAULT_LIMIT) -> ImpactReport:
        kind, ident = parse_node_id(str(id))
        start = node_id(kind, ident)
        graph = await info.context["graph"].lineage(start, "DOWNSTREAM", clamp_depth(depth),
                                                    limit=clamp_limit(limit))
        if not graph.nodes:
            raise GraphQLError(f"no lineage node {start}")
        answer = as_graphql(graph)
        access = getattr(info.context.get("principal"), "access", None)
        if access is not None:  # what the caller may not read stays a redacted placeholder
            from modeldb.query_api.authz import redact_lineage

            answer = await redact_lineage(info, access, answer)
        hidden = {n.id for n in answer.nodes if n.id.startswith("redacted:")}
        return ImpactReport(
            graph=answer,
            runs=[n for n in answer.nodes if n.kind == "Run" and n.id not in hidden | {start}],
            model_versions=[n for n in answer.nodes
                            if n.kind == "ModelVersion" and n.id not in hidden | {start}])
