"""The sql projection: events → the relational read model.

A batch is first folded in memory into keyed row changes (later events win for the same
key, as they would one by one), then written with one bulk statement per table, so a
batch of 10,000 events costs a handful of round trips instead of 10,000.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Table, case, delete, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from modeldb.event_schema import Event, RecordedEvent
from modeldb.event_schema import types as t
from modeldb.event_schema.sensitive import split_path
from modeldb.projectors import read_model as rm
from modeldb.projectors.base import SqlProjection, metric_points
from modeldb.projectors.db import (
    execute_rows,
    in_keys,
    insert_for,
    is_postgres,
    per_dialect,
    refresh_statistics,
    upsert_rows,
)
from modeldb.projectors.metric_rollups import write_rollups
from modeldb.writer.vault import redacted_marker

_DELETE = object()


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def as_number(value: Any) -> float | None:
    """The numeric reading of a param or attribute, if it has one (bools do not)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else repr(value)


@dataclass
class _Rows:
    """Keyed pending rows of one table: merged column values, or a delete mark."""

    table: Table
    keys: tuple[str, ...]
    rows: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        get = itemgetter(*self.keys)  # a tuple for several keys, the value for one
        self._key: Callable[[dict[str, Any]], tuple[Any, ...]] = (
            get if len(self.keys) > 1 else lambda values: (get(values),))

    def set(self, **values: Any) -> None:
        key = self._key(values)
        current = self.rows.get(key)
        if current is None or current is _DELETE:
            self.rows[key] = values
        else:
            current.update(values)

    def set_once(self, **values: Any) -> None:
        self.rows.setdefault(self._key(values), values)

    def delete(self, *key: Any) -> None:
        self.rows[key] = _DELETE

    async def flush(self, conn: AsyncConnection, *, overwrite: bool = True) -> None:
        deletes = [k for k, v in self.rows.items() if v is _DELETE]
        for start in range(0, len(deletes), 500):
            chunk = deletes[start : start + 500]
            columns = [self.table.c[k] for k in self.keys]
            await conn.execute(delete(self.table).where(in_keys(columns, chunk)))
        # Rows with the same columns (in the same order: set by the same handler) share one
        # bulk statement, executed by the driver with plain tuples.
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = defaultdict(list)
        for value in self.rows.values():
            if value is not _DELETE:
                groups[tuple(value)].append(tuple(value.values()))
        for columns, rows in groups.items():
            update = [c for c in columns if c not in self.keys] if overwrite else None
            await upsert_rows(conn, self.table, columns, rows, self.keys, update or None)


_POINT_COLUMNS = ("run_id", "key", "step", "timestamp", "value")


@dataclass
class _Summary:
    """A batch's fold of one (run, key) series: latest, extremes, first, count."""

    value: float
    step: int
    timestamp: int
    min_value: float | None
    max_value: float | None
    first_value: float
    first_step: int
    first_timestamp: int
    count: int


@dataclass
class _Metrics:
    points: list[tuple[str, str, int, int, float]] = field(default_factory=list)
    summary: dict[tuple[str, str], _Summary] = field(default_factory=dict)

    def add(self, run_id: str, key: str, value: float, step: int, ts: int) -> None:
        # The hottest loop of a replay: plain comparisons, no helper calls per point.
        self.points.append((run_id, key, step, ts, value))
        finite = value if value == value else None  # NaN is the one value unequal to itself
        s = self.summary.get((run_id, key))
        if s is None:
            self.summary[(run_id, key)] = _Summary(value, step, ts, finite, finite, value, step,
                                                   ts, 1)
            return
        s.count += 1
        if finite is not None:
            if s.min_value is None or finite < s.min_value:
                s.min_value = finite
            if s.max_value is None or finite > s.max_value:
                s.max_value = finite
        if (step, ts) >= (s.step, s.timestamp):
            s.value, s.step, s.timestamp = value, step, ts
        if (step, ts) < (s.first_step, s.first_timestamp):
            s.first_value, s.first_step, s.first_timestamp = value, step, ts

    async def flush(self, conn: AsyncConnection) -> None:
        if self.points:
            await _append_points(conn, self.points)
            await write_rollups(conn, await self._to_roll_up(conn))
        if self.summary:
            rows = [(run_id, key, s.value, s.step, s.timestamp, s.min_value, s.max_value,
                     s.first_value, s.first_step, s.first_timestamp, s.count)
                    for (run_id, key), s in self.summary.items()]
            await execute_rows(conn, _merge_latest(conn), _LATEST_COLUMNS, rows)


    async def _to_roll_up(self, conn: AsyncConnection) -> list[tuple[str, str, int, int, float]]:
        """The points that go into the rollups. A series has rollups from its second point on:
        one point is never downsampled, and a log of many short runs is mostly one-point
        series, whose six rollup rows each would be most of what a replay writes. When a
        series grows past one point, its stored point is rolled up with the batch's, so the
        rollups are those of all its points however they were batched (rebuilt == incremental).
        Must run before the batch's summary is merged into latest_metrics."""
        stored = await _stored_counts(conn, list({run_id for run_id, _ in self.summary}))
        skip: set[tuple[str, str]] = set()
        earlier: list[tuple[str, str, int, int, float]] = []
        for series, s in self.summary.items():
            before = stored.get(series)
            count = before[0] if before else 0
            if count + s.count < 2:
                skip.add(series)
            elif count == 1:
                _, value, step, ts = before  # type: ignore[misc]
                # SQLite stores NaN as NULL; either way it is counted, never an extreme.
                earlier.append((*series, step, ts, math.nan if value is None else value))
        if not skip:
            return earlier + self.points if earlier else self.points
        return earlier + [p for p in self.points if (p[0], p[1]) not in skip]


async def _stored_counts(conn: AsyncConnection,
                         run_ids: list[str]) -> dict[tuple[str, str], tuple[int, Any, int, int]]:
    """(run, key) → (count, value, step, timestamp) of the stored series of these runs."""
    lm = rm.latest_metrics
    found: dict[tuple[str, str], tuple[int, Any, int, int]] = {}
    for start in range(0, len(run_ids), 500):
        rows = await conn.execute(
            select(lm.c.run_id, lm.c.key, lm.c.count, lm.c.value, lm.c.step, lm.c.timestamp)
            .where(lm.c.run_id.in_(run_ids[start : start + 500])))
        found.update({(r[0], r[1]): (r[2], r[3], r[4], r[5]) for r in rows})
    return found


async def _append_points(conn: AsyncConnection, points: list[tuple[str, str, int, int, float]]) -> None:
    """Metric points are append-only, so they take each driver's bulk path: COPY on
    PostgreSQL, a plain executemany on SQLite (no per-row statement compilation)."""
    if is_postgres(conn):
        raw = await conn.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            rm.metric_points.name, records=points, columns=list(_POINT_COLUMNS))
        return
    marks = ", ".join("?" * len(_POINT_COLUMNS))
    await conn.exec_driver_sql(
        f"INSERT INTO {rm.metric_points.name} ({', '.join(_POINT_COLUMNS)}) VALUES ({marks})",
        points)  # type: ignore[arg-type]


_LATEST_COLUMNS = ("run_id", "key", "value", "step", "timestamp", "min_value", "max_value",
                   "first_value", "first_step", "first_timestamp", "count")
@per_dialect
def _merge_latest(conn: AsyncConnection) -> Any:
    """Upsert that folds a batch's summary into the stored one (latest, min, max, first)."""
    table, pg = rm.latest_metrics, is_postgres(conn)
    stmt = insert_for(conn, table)
    new, old = stmt.excluded, table.c
    least = func.least if pg else func.min
    greatest = func.greatest if pg else func.max
    newer = tuple_(new.step, new.timestamp) >= tuple_(old.step, old.timestamp)
    older = tuple_(new.first_step, new.first_timestamp) < tuple_(old.first_step, old.first_timestamp)

    def pick(cond: Any, a: Any, b: Any) -> Any:
        return case((cond, a), else_=b)

    return stmt.on_conflict_do_update(
        index_elements=["run_id", "key"],
        set_={
            "value": pick(newer, new.value, old.value),
            "step": pick(newer, new.step, old.step),
            "timestamp": pick(newer, new.timestamp, old.timestamp),
            # NULL (no finite value yet) must not win: coalesce each side with the other.
            "min_value": least(func.coalesce(old.min_value, new.min_value),
                               func.coalesce(new.min_value, old.min_value)),
            "max_value": greatest(func.coalesce(old.max_value, new.max_value),
                                  func.coalesce(new.max_value, old.max_value)),
            "first_value": pick(older, new.first_value, old.first_value),
            "first_step": pick(older, new.first_step, old.first_step),
            "first_timestamp": pick(older, new.first_timestamp, old.first_timestamp),
            "count": old.count + new.count,
        },
    )


class _Changes:
    """Everything one batch changes, folded in memory before one write per table."""

    def __init__(self) -> None:
        self.projects = _Rows(rm.projects, ("name",))
        self.experiments = _Rows(rm.experiments, ("id",))
        self.runs = _Rows(rm.runs, ("id",))
        self.params = _Rows(rm.params, ("run_id", "key"))
        self.redacted_params = _Rows(rm.params, ("run_id", "key"))  # the one overwrite of a param
        self.tags = _Rows(rm.tags, ("run_id", "key"))
        self.attributes = _Rows(rm.attributes, ("run_id", "key"))
        self.artifacts = _Rows(rm.artifacts, ("run_id", "name"))
        self.code_versions = _Rows(rm.code_versions, ("run_id",))
        self.environments = _Rows(rm.environments, ("run_id",))
        self.datasets = _Rows(rm.datasets, ("name",))
        self.dataset_refs = _Rows(rm.datasets, ("name",))  # datasets known only by a version
        self.dataset_versions = _Rows(rm.dataset_versions, ("id",))
        self.run_links = _Rows(rm.run_links, ("run_id", "direction", "kind", "entity_id"))
        self.models = _Rows(rm.registered_models, ("name",))
        self.versions = _Rows(rm.model_versions, ("model", "version"))
        self.aliases = _Rows(rm.model_aliases, ("model", "alias"))
        self.governance = _Rows(rm.model_governance, ("model",))
        self.transitions = _Rows(rm.model_transitions, ("model", "event_id"))
        self.requests = _Rows(rm.transition_requests, ("model", "request_id"))
        self.deploy_environments = _Rows(rm.deploy_environments, ("name",))
        self.deployments = _Rows(rm.deployments, ("id",))
        self.deployment_history = _Rows(rm.deployment_history, ("deployment_id", "event_id"))
        self.metrics = _Metrics()

    async def flush(self, conn: AsyncConnection) -> None:
        await self.params.flush(conn, overwrite=False)  # params are immutable once set
        await self.redacted_params.flush(conn)
        for rows in (self.projects, self.experiments, self.runs, self.tags, self.attributes,
                     self.artifacts, self.code_versions, self.environments, self.datasets,
                     self.dataset_versions, self.run_links, self.models, self.versions,
                     self.aliases, self.governance, self.transitions, self.requests,
                     self.deploy_environments, self.deployments, self.deployment_history):
            await rows.flush(conn)
        await self.dataset_refs.flush(conn, overwrite=False)
        await self.metrics.flush(conn)


Handler = Callable[[_Changes, Event], None]
HANDLERS: dict[str, Handler] = {}


def handles(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = fn
        return fn

    return register


@handles("ProjectCreated")
def _project(c: _Changes, e: Event) -> None:
    p: t.ProjectCreated = e.payload  # type: ignore[assignment]
    c.projects.set(name=p.name, description=p.description, created_at=ms(e.occurred_at),
                   deleted=False)


@handles("ExperimentCreated")
def _experiment(c: _Changes, e: Event) -> None:
    p: t.ExperimentCreated = e.payload  # type: ignore[assignment]
    c.experiments.set(id=e.aggregate.id, project=p.project, name=p.name,
                      description=p.description, created_at=ms(e.occurred_at), deleted=False)


@handles("ProjectDeleted", "DatasetDeleted", "RegisteredModelDeleted")
def _deleted_by_name(c: _Changes, e: Event) -> None:
    rows = {"ProjectDeleted": c.projects, "DatasetDeleted": c.datasets,
            "RegisteredModelDeleted": c.models}[e.type]
    rows.set(name=e.aggregate.id, deleted=True)


@handles("ExperimentDeleted", "RunDeleted")
def _deleted_by_id(c: _Changes, e: Event) -> None:
    (c.experiments if e.type == "ExperimentDeleted" else c.runs).set(id=e.aggregate.id, deleted=True)


@handles("RunStarted")
def _run_started(c: _Changes, e: Event) -> None:
    p: t.RunStarted = e.payload  # type: ignore[assignment]
    # No status or deleted flag here: a new row gets RUNNING and not-deleted by default, and a
    # RunFinished or RunDeleted that arrived first (events of one run may come out of order)
    # must not be undone by the start.
    c.runs.set(id=e.aggregate.id, project=p.project, experiment=p.experiment,
               name=p.name or e.aggregate.id[-12:], start_time=ms(p.start_time),
               parent_id=p.parent_run_id)


@handles("RunFinished")
def _run_finished(c: _Changes, e: Event) -> None:
    p: t.RunFinished = e.payload  # type: ignore[assignment]
    c.runs.set(id=e.aggregate.id, status=p.status, end_time=ms(p.end_time))


@handles("ParamsLogged")
def _params(c: _Changes, e: Event) -> None:
    # set_once, inlined: params are a large share of a replay's rows.
    pending, run_id = c.params.rows, e.aggregate.id
    for key, value in e.payload.params.items():  # type: ignore[attr-defined]
        if (run_id, key) not in pending:
            pending[(run_id, key)] = {"run_id": run_id, "key": key, "value": as_text(value),
                                      "value_num": as_number(value)}


@handles("MetricsLogged")
def _metrics(c: _Changes, e: Event) -> None:
    add, run_id = c.metrics.add, e.aggregate.id
    for p in e.payload.points:  # type: ignore[attr-defined]
        add(run_id, p.key, p.value, p.step, p.timestamp)


@handles("TagsSet")
def _tags(c: _Changes, e: Event) -> None:
    for key, value in e.payload.tags.items():  # type: ignore[attr-defined]
        c.tags.set(run_id=e.aggregate.id, key=key, value=value)


@handles("TagsDeleted")
def _tags_deleted(c: _Changes, e: Event) -> None:
    for key in e.payload.keys:  # type: ignore[attr-defined]
        c.tags.delete(e.aggregate.id, key)


@handles("AttributesSet")
def _attributes(c: _Changes, e: Event) -> None:
    for key, value in e.payload.attributes.items():  # type: ignore[attr-defined]
        c.attributes.set(run_id=e.aggregate.id, key=key,
                         value=None if value is None else as_text(value), value_num=as_number(value))


@handles("ValuesRedacted")
def _redacted(c: _Changes, e: Event) -> None:
    # The keys are destroyed; values already projected in clear are replaced here, so the
    # read model agrees with a rebuild (which can only see the markers).
    for path, digest in e.payload.redacted.items():  # type: ignore[attr-defined]
        container, key = split_path(path)
        marker = redacted_marker(digest)
        if container == "params":
            c.redacted_params.set(run_id=e.aggregate.id, key=key, value=marker, value_num=None)
        elif container == "tags":
            c.tags.set(run_id=e.aggregate.id, key=key, value=marker)
        elif container == "attributes":
            c.attributes.set(run_id=e.aggregate.id, key=key, value=marker, value_num=None)


@handles("AttributesDeleted")
def _attributes_deleted(c: _Changes, e: Event) -> None:
    for key in e.payload.keys:  # type: ignore[attr-defined]
        c.attributes.delete(e.aggregate.id, key)


@handles("CodeVersionRecorded")
def _code(c: _Changes, e: Event) -> None:
    c.code_versions.set(run_id=e.aggregate.id, **e.payload.model_dump())


@handles("EnvironmentRecorded")
def _environment(c: _Changes, e: Event) -> None:
    p: t.EnvironmentRecorded = e.payload  # type: ignore[assignment]
    c.environments.set(run_id=e.aggregate.id, python=p.python, platform=p.platform,
                       packages=orjson.dumps(p.packages, option=orjson.OPT_SORT_KEYS).decode())


@handles("ArtifactLogged")
def _artifact(c: _Changes, e: Event) -> None:
    c.artifacts.set(run_id=e.aggregate.id, **e.payload.model_dump())


@handles("RunInputLogged", "RunOutputLogged")
def _link(c: _Changes, e: Event) -> None:
    p: t.RunLinked = e.payload  # type: ignore[assignment]
    direction = "input" if e.type == "RunInputLogged" else "output"
    c.run_links.set(run_id=e.aggregate.id, direction=direction, kind=p.kind, entity_id=p.id,
                    name=p.name)


@handles("DatasetCreated")
def _dataset(c: _Changes, e: Event) -> None:
    p: t.DatasetCreated = e.payload  # type: ignore[assignment]
    c.datasets.set(name=e.aggregate.id, description=p.description,
                   created_at=ms(e.occurred_at), deleted=False)


@handles("DatasetVersionCreated")
def _dataset_version(c: _Changes, e: Event) -> None:
    p: t.DatasetVersionCreated = e.payload  # type: ignore[assignment]
    c.dataset_refs.set_once(name=e.aggregate.id, created_at=ms(e.occurred_at))
    c.dataset_versions.set(
        id=f"{e.aggregate.id}@{p.digest}", dataset=e.aggregate.id, digest=p.digest, uri=p.uri,
        data_schema=orjson.dumps(p.data_schema).decode() if p.data_schema is not None else None,
        row_count=p.row_count, created_at=ms(e.occurred_at),
    )


@handles("RegisteredModelCreated")
def _model(c: _Changes, e: Event) -> None:
    p: t.RegisteredModelCreated = e.payload  # type: ignore[assignment]
    c.models.set(name=e.aggregate.id, description=p.description,
                 tags=orjson.dumps(p.tags).decode(), created_at=ms(e.occurred_at), deleted=False)


@handles("ModelVersionCreated")
def _model_version(c: _Changes, e: Event) -> None:
    p: t.ModelVersionCreated = e.payload  # type: ignore[assignment]
    c.versions.set(model=e.aggregate.id, version=p.version, run_id=p.run_id,
                   artifact_name=p.artifact_name, artifact_digest=p.artifact_digest,
                   source_uri=p.source_uri, description=p.description, stage="None",
                   created_at=ms(e.occurred_at), deleted=False)


@handles("ModelVersionDeleted")
def _model_version_deleted(c: _Changes, e: Event) -> None:
    c.versions.set(model=e.aggregate.id, version=e.payload.version, deleted=True)  # type: ignore[attr-defined]


@handles("ModelVersionStageChanged")
def _stage(c: _Changes, e: Event) -> None:
    p: t.ModelVersionStageChanged = e.payload  # type: ignore[assignment]
    c.versions.set(model=e.aggregate.id, version=p.version, stage=p.stage)
    c.transitions.set(model=e.aggregate.id, event_id=e.event_id, version=p.version,
                      from_stage=p.from_stage, to_stage=p.stage, actor=e.actor,
                      comment=p.comment, cause=p.cause, request_id=p.request_id, at=_recorded(e))


def _recorded(e: Event) -> int:
    return ms(e.recorded_at or e.occurred_at)


@handles("RegisteredModelUpdated")
def _model_updated(c: _Changes, e: Event) -> None:
    p: t.RegisteredModelUpdated = e.payload  # type: ignore[assignment]
    changes: dict[str, Any] = {}
    if p.description is not None:
        changes["description"] = p.description
    if p.tags is not None:
        changes["tags"] = orjson.dumps(p.tags).decode()
    if changes:
        c.models.set(name=e.aggregate.id, **changes)


@handles("StageTransitionRequested")
def _requested(c: _Changes, e: Event) -> None:
    p: t.StageTransitionRequested = e.payload  # type: ignore[assignment]
    c.requests.set(model=e.aggregate.id, request_id=p.request_id, version=p.version,
                   from_stage=p.from_stage, to_stage=p.to_stage, status="pending",
                   requested_by=e.actor, requested_at=_recorded(e), comment=p.comment)


@handles("StageTransitionApproved", "StageTransitionRejected")
def _decided(c: _Changes, e: Event) -> None:
    p: t.StageTransitionDecided = e.payload  # type: ignore[assignment]
    status = "approved" if e.type == "StageTransitionApproved" else "rejected"
    c.requests.set(model=e.aggregate.id, request_id=p.request_id, status=status,
                   decided_by=e.actor, decided_at=_recorded(e), decision_comment=p.comment)


@handles("ModelLockChanged")
def _lock(c: _Changes, e: Event) -> None:
    p: t.ModelLockChanged = e.payload  # type: ignore[assignment]
    c.governance.set(model=e.aggregate.id, lock_level=p.level, lock_role=p.role,
                     lock_comment=p.comment, locked_by=e.actor, locked_at=_recorded(e))


@handles("ModelRuleSet")
def _rules(c: _Changes, e: Event) -> None:
    p: t.ModelRuleSet = e.payload  # type: ignore[assignment]
    c.governance.set(model=e.aggregate.id, single_production=p.single_production,
                     approval_required=orjson.dumps(p.approval_required).decode())


@handles("EnvironmentRegistered")
def _environment_registered(c: _Changes, e: Event) -> None:
    p: t.EnvironmentRegistered = e.payload  # type: ignore[assignment]
    c.deploy_environments.set(name=e.aggregate.id, stage=p.stage, location=p.location,
                              description=p.description, registered_at=_recorded(e))


@handles("DeploymentRecorded", "DeploymentStatusChanged")
def _deployment(c: _Changes, e: Event) -> None:
    p: Any = e.payload
    at = _recorded(e)
    if e.type == "DeploymentRecorded":
        c.deployments.set(id=e.aggregate.id, model=p.model, version=p.version,
                          environment=p.environment, endpoint=p.endpoint, created_by=e.actor,
                          created_at=at)
    c.deployments.set(id=e.aggregate.id, status=p.status, message=p.message, updated_at=at)
    c.deployment_history.set(deployment_id=e.aggregate.id, event_id=e.event_id, status=p.status,
                             message=p.message, actor=e.actor, at=at)


@handles("ModelAliasSet")
def _alias(c: _Changes, e: Event) -> None:
    p: t.ModelAliasSet = e.payload  # type: ignore[assignment]
    c.aliases.set(model=e.aggregate.id, alias=p.alias, version=p.version)


@handles("ModelAliasDeleted")
def _alias_deleted(c: _Changes, e: Event) -> None:
    c.aliases.delete(e.aggregate.id, e.payload.alias)  # type: ignore[attr-defined]


class SqlReadModel(SqlProjection):
    name = "sql"
    metadata = rm.metadata
    rebuilds_without_indexes = True  # every handler writes and reads rows by their keys
    # Planner statistics are refreshed as the read model grows: after the first 1,000 events
    # this process applies, then whenever that count has doubled (a few times per replay).
    _applied = 0
    _statistics_due = 1000

    async def apply_events(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        await self._apply(conn, events)
        self._applied += len(events)
        if self._applied >= self._statistics_due:
            await refresh_statistics(conn, rm.metadata.sorted_tables)
            self._statistics_due = 2 * self._applied

    async def _apply(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        changes = _Changes()
        for recorded in events:
            if recorded.raw["type"] == "MetricsLogged":  # most of a log: no Event built
                add, run_id = changes.metrics.add, recorded.raw["aggregate"]["id"]
                for key, value, step, ts in metric_points(recorded):
                    add(run_id, key, value, step, ts)
                continue
            event = recorded.event
            handler = HANDLERS.get(event.type)
            if handler is not None:
                handler(changes, event)
        await changes.flush(conn)

