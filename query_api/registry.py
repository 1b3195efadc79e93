"""The registry in GraphQL: registered models, versions with stage, aliases, transitions,
requests, deployments and provenance; time travel of a version; and a mutation for every
registry command.

Mutations go through the writer's command service (the same path as
POST /api/v1/registry/commands), wait until the projections show their effect, and answer
the resulting state. The caller is `info.context["principal"]`: redact-locked models show
their content only to holders of the lock's role.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import strawberry
from graphql import GraphQLError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import StaticPool
from strawberry.scalars import JSON
from strawberry.types import Info

from modeldb.event_schema import RecordedEvent
from modeldb.event_schema.nodes import node_id
from modeldb.projectors.audit import AuditStore
from modeldb.projectors.lineage import DEFAULT_LIMIT, MAX_DEPTH, GraphStore
from modeldb.projectors.sql_projection import SqlReadModel
from modeldb.query_api.loaders import Loaders
from modeldb.query_api.registry_queries import RegistryLoaders, RegistryQueries
from modeldb.query_api.runs import RunQueries
from modeldb.query_api.schema import KeyValue, LineageEdge, LineageGraph, LineageNode, _time
from modeldb.writer.log import Batch
from modeldb.writer.registry import ADMIN_ROLE, CommandRefused

REDACTED = "[redacted]"


@dataclass
class Ctx:
    """Where a registry type reads from: the data (live, or a scratch replay for time
    travel), the live governance (redaction always follows today's lock) and the caller."""

    loaders: Loaders
    reg: RegistryLoaders
    live: RegistryLoaders
    runs: RunQueries
    principal: Any
    graph: GraphStore | None

    @classmethod
    def of(cls, info: Info) -> Ctx:
        c = info.context
        return cls(c["loaders"], c["registry"], c["registry"], c["loaders"].queries,
                   c.get("principal"), c.get("graph"))

    async def redacted(self, model: str) -> bool:
        governance = await self.live.governance.load(model)
        if governance is None or governance.lock_level != "redact":
            return False
        # No role named: only administrators read it.
        role = governance.lock_role or ADMIN_ROLE
        return self.principal is None or not self.principal.has(role)


@strawberry.type
class VersionRef:
    version: str
    stage: str


@strawberry.type
class AliasRef:
    alias: str
    version: str


@strawberry.type
class ArtifactRef:
    name: str | None
    digest: str
    uri: str | None


@strawberry.type
class RunRef:
    id: strawberry.ID


@strawberry.type
class ModelLock:
    level: str
    role: str | None
    comment: str | None
    locked_by: str | None
    locked_at: datetime | None


@strawberry.type
class ModelRules:
    single_production: bool
    approval_required: list[str]


@strawberry.type
class StageTransition:
    version: str
    from_stage: str | None
    to_stage: str
    actor: str | None
    comment: str
    cause: str = strawberry.field(description="direct, approval (of a request), or rule")
    request_id: str | None
    requested_by: str | None
    approved_by: str | None
    at: datetime

    @classmethod
    def of(cls, r: Any, redacted: bool) -> StageTransition:
        return cls(version=str(r.version), from_stage=r.from_stage, to_stage=r.to_stage,
                   actor=r.actor, comment=REDACTED if redacted and r.comment else r.comment,
                   cause=r.cause, request_id=r.request_id, requested_by=r.requested_by,
                   approved_by=r.actor if r.cause == "approval" else None,
                   at=_time(r.at))  # type: ignore[arg-type]


@strawberry.type
class TransitionRequest:
    id: str
    model: str
    version: str
    from_stage: str | None
    to_stage: str | None
    status: str
    requested_by: str | None
    requested_at: datetime | None
    comment: str
    decided_by: str | None
    decided_at: datetime | None
    decision_comment: str | None

    @classmethod
    def of(cls, r: Any, redacted: bool) -> TransitionRequest:
        def hide(text: str | None) -> str | None:
            return REDACTED if redacted and text else text

        return cls(id=r.request_id, model=r.model, version=str(r.version),
                   from_stage=r.from_stage, to_stage=r.to_stage, status=r.status,
                   requested_by=r.requested_by, requested_at=_time(r.requested_at),
                   comment=hide(r.comment) or "", decided_by=r.decided_by,
                   decided_at=_time(r.decided_at), decision_comment=hide(r.decision_comment))


@strawberry.type
class DeploymentStatusChange:
    status: str
    message: str
    actor: str | None
    at: datetime


@strawberry.type
class DeploymentEnvironment:
    name: str
    stage: str
    location: str
    description: str
    _ctx: strawberry.Private[Ctx]

    @classmethod
    def of(cls, r: Any, ctx: Ctx) -> DeploymentEnvironment:
        return cls(name=r.name, stage=r.stage, location=r.location, description=r.description,
                   _ctx=ctx)

    @strawberry.field
    async def deployments(self) -> list[Deployment]:
        return [Deployment.of(r, self._ctx) for r in await self._ctx.reg.deployments_in.load(self.name)]


@strawberry.type
class Deployment:
    id: str
    model: str | None
    version: str | None
    status: str
    message: str
    endpoint: str | None
    created_by: str | None
    created_at: datetime | None
    updated_at: datetime | None
    _ctx: strawberry.Private[Ctx]
    _row: strawberry.Private[Any]

    @classmethod
    def of(cls, r: Any, ctx: Ctx) -> Deployment:
        return cls(id=r.id, model=r.model, version=None if r.version is None else str(r.version),
                   status=r.status, message=r.message, endpoint=r.endpoint,
                   created_by=r.created_by, created_at=_time(r.created_at),
                   updated_at=_time(r.updated_at), _ctx=ctx, _row=r)

    @strawberry.field
    async def environment(self) -> DeploymentEnvironment | None:
        if not self._row.environment:
            return None
        row = await self._ctx.reg.environment.load(self._row.environment)
        return DeploymentEnvironment.of(row, self._ctx) if row else None

    @strawberry.field
    async def history(self) -> list[DeploymentStatusChange]:
        return [DeploymentStatusChange(status=r.status, message=r.message, actor=r.actor,
                                       at=_time(r.at))  # type: ignore[arg-type]
                for r in await self._ctx.reg.deployment_history.load(self.id)]

    @strawberry.field(description="when it last started serving, while it serves")
    async def since(self) -> datetime | None:
        since = None
        for r in await self._ctx.reg.deployment_history.load(self.id):
            if r.status != "serving":
                since = None
            elif since is None:
                since = r.at
        return _time(since) if self.status == "serving" else None

    @strawberry.field
    async def model_version(self) -> ModelVersion | None:
        if self._row.model is None or self._row.version is None:
            return None
        return await _version(self._ctx, self._row.model, self._row.version)


@strawberry.type
class ModelVersion:
    name: str
    version: str
    stage: str
    aliases: list[str]
    description: str
    created_at: datetime | None
    run: RunRef | None
    artifact: ArtifactRef | None
    source_uri: str | None
    redacted: bool
    _ctx: strawberry.Private[Ctx]

    @classmethod
    async def build(cls, r: Any, ctx: Ctx) -> ModelVersion:
        hidden = await ctx.redacted(r.model)
        aliases = [a.alias for a in await ctx.loaders.aliases.load(r.model) if a.version == r.version]
        artifact = None
        if r.artifact_digest and not hidden:
            found = await ctx.runs.artifact(r.run_id, r.artifact_digest)
            artifact = ArtifactRef(name=r.artifact_name, digest=r.artifact_digest,
                                   uri=found.uri if found else None)
        return cls(
            name=r.model, version=str(r.version), stage=r.stage, aliases=aliases,
            description=REDACTED if hidden and r.description else r.description,
            created_at=_time(r.created_at),
            run=RunRef(id=strawberry.ID(r.run_id)) if r.run_id and not hidden else None,
            artifact=artifact, source_uri=None if hidden else r.source_uri, redacted=hidden,
            _ctx=ctx)

    @strawberry.field
    async def transitions(self) -> list[StageTransition]:
        return [StageTransition.of(r, self.redacted)
                for r in await self._ctx.reg.transitions.load(self.name)
                if str(r.version) == self.version]

    @strawberry.field
    async def requests(self) -> list[TransitionRequest]:
        return [TransitionRequest.of(r, self.redacted)
                for r in await self._ctx.reg.requests.load(self.name)
                if str(r.version) == self.version]

    @strawberry.field(description="where this version is deployed, and since when")
    async def deployments(self) -> list[Deployment]:
        rows = await self._ctx.reg.deployments_of.load((self.name, int(self.version)))
        return [Deployment.of(r, self._ctx) for r in rows]

    @strawberry.field(description="upstream lineage: the run, its data, code and artifacts")
    async def provenance(self, depth: int = 5, limit: int = DEFAULT_LIMIT) -> LineageGraph:
        from modeldb.query_api.analysis import clamp_limit

        if self.redacted or self._ctx.graph is None:
            return LineageGraph(nodes=[], edges=[])
        graph = await self._ctx.graph.lineage(node_id("ModelVersion", f"{self.name}/{self.version}"),
                                              "UPSTREAM", max(0, min(depth, MAX_DEPTH)),
                                              limit=clamp_limit(limit))
        return LineageGraph(
            nodes=[LineageNode(id=n.id, kind=n.kind, name=n.name) for n in graph.nodes],
            edges=[LineageEdge(source=e.source, target=e.target, kind=e.kind) for e in graph.edges],
            truncated=graph.truncated)


async def _version(ctx: Ctx, model: str, version: str | int) -> ModelVersion | None:
    rows = await ctx.loaders.versions.load(model)
    wanted = str(version)
    if not wanted.isdigit():  # an alias
        alias = [a.version for a in await ctx.loaders.aliases.load(model) if a.alias == wanted]
        wanted = str(alias[0]) if alias else ""
    found = [r for r in rows if str(r.version) == wanted]
    return await ModelVersion.build(found[0], ctx) if found else None


@strawberry.type
class RegisteredModel:
    name: str
    description: str
    tags: list[KeyValue]
    created_at: datetime | None
    redacted: bool
    _ctx: strawberry.Private[Ctx]

    @classmethod
    async def build(cls, r: Any, ctx: Ctx) -> RegisteredModel:
        hidden = await ctx.redacted(r.name)
        tags = [] if hidden else [KeyValue(key=k, value=v)
                                  for k, v in sorted(orjson.loads(r.tags or "{}").items())]
        return cls(name=r.name, description=REDACTED if hidden and r.description else r.description,
                   tags=tags, created_at=_time(r.created_at), redacted=hidden, _ctx=ctx)

    @strawberry.field
    async def versions(self) -> list[VersionRef]:
        return [VersionRef(version=str(r.version), stage=r.stage)
                for r in await self._ctx.loaders.versions.load(self.name)]

    @strawberry.field
    async def aliases(self) -> list[AliasRef]:
        return [AliasRef(alias=r.alias, version=str(r.version))
                for r in await self._ctx.loaders.aliases.load(self.name)]

    @strawberry.field
    async def model_versions(self) -> list[ModelVersion]:
        return [await ModelVersion.build(r, self._ctx)
                for r in await self._ctx.loaders.versions.load(self.name)]

    @strawberry.field(description="the model's number of events: pass it as expectedRevision")
    async def revision(self) -> int:
        return await self._ctx.reg.revisions.load(self.name)

    @strawberry.field
    async def lock(self) -> ModelLock:
        g = await self._ctx.reg.governance.load(self.name)
        if g is None:
            return ModelLock(level="open", role=None, comment=None, locked_by=None, locked_at=None)
        return ModelLock(level=g.lock_level, role=g.lock_role, comment=g.lock_comment,
                         locked_by=g.locked_by, locked_at=_time(g.locked_at))

    @strawberry.field
    async def rules(self) -> ModelRules:
        g = await self._ctx.reg.governance.load(self.name)
        if g is None:
            return ModelRules(single_production=False, approval_required=[])
        return ModelRules(single_production=g.single_production,
                          approval_required=orjson.loads(g.approval_required))

    @strawberry.field
    async def transitions(self) -> list[StageTransition]:
        return [StageTransition.of(r, self.redacted)
                for r in await self._ctx.reg.transitions.load(self.name)]

    @strawberry.field
    async def pending_requests(self) -> list[TransitionRequest]:
        return [TransitionRequest.of(r, self.redacted)
                for r in await self._ctx.reg.requests.load(self.name) if r.status == "pending"]


@strawberry.type
class WebhookDelivery:
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@strawberry.type
class Webhook:
    id: str
    url: str
    events: list[str]
    models: list[str]
    description: str
    active: bool
    registered_by: str | None
    registered_at: datetime | None
    _ctx: strawberry.Private[Ctx]

    @strawberry.field
    async def deliveries(self, status: str | None = None, last: int = 50) -> list[WebhookDelivery]:
        rows = [r for r in await self._ctx.reg.deliveries.load(self.id)
                if status is None or r.status == status][-max(0, min(last, 1000)):]
        return [WebhookDelivery(event_id=r.event_id, event_type=r.event_type, status=r.status,
                                attempts=r.attempts, last_status=r.last_status,
                                last_error=r.last_error, created_at=_time(r.created_at),  # type: ignore[arg-type]
                                delivered_at=_time(r.delivered_at)) for r in rows]


def _webhook(r: Any, ctx: Ctx) -> Webhook:
    return Webhook(id=r.id, url=r.url, events=orjson.loads(r.events), models=orjson.loads(r.models),
                   description=r.description, active=r.active, registered_by=r.registered_by,
                   registered_at=_time(r.registered_at), _ctx=ctx)


async def model_version_as_of(info: Info, name: str, version: str, at: datetime) -> ModelVersion | None:
    """The version as it was at `at`: the model's events up to then, replayed through the
    sql projection into a scratch database (never from the current row)."""
    audit: AuditStore = info.context["audit"]
    events = await audit.history(name, kind="model", until=at)
    if not events:
        return None
    engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
    batch = Batch([RecordedEvent(i + 1, raw) for i, raw in enumerate(events)],
                  {"position": len(events)})
    for projection in (SqlReadModel(engine), AuditStore(engine)):
        await projection.setup()
        await projection.apply(batch)
    live = Ctx.of(info)
    scratch = RegistryLoaders(RegistryQueries(engine))
    ctx = Ctx(Loaders(RunQueries(engine)), scratch, live.live, live.runs, live.principal, live.graph)
    # The scratch engine lives until the request's nested fields are resolved (StaticPool
    # holds one in-memory connection), then goes with it.
    return await _version(ctx, name, version)


@strawberry.type
class RegistryQuery:
    @strawberry.field
    async def registered_models(self, info: Info) -> list[RegisteredModel]:
        ctx = Ctx.of(info)
        return [await RegisteredModel.build(r, ctx)
                for r in await ctx.loaders.queries.registered_models()]

    @strawberry.field
    async def registered_model(self, info: Info, name: str) -> RegisteredModel | None:
        ctx = Ctx.of(info)
        row = await ctx.reg.queries.model(name)
        return await RegisteredModel.build(row, ctx) if row else None

    @strawberry.field(description="a version by number, or by alias (e.g. champion)")
    async def model_version(self, info: Info, name: str, version: str) -> ModelVersion | None:
        return await _version(Ctx.of(info), name, version)

    @strawberry.field(description="the version as it was at a time, rebuilt from its events")
    async def model_version_as_of(self, info: Info, name: str, version: str,
                                  at: datetime) -> ModelVersion | None:
        return await model_version_as_of(info, name, version, at)

    @strawberry.field
    async def transition_requests(self, info: Info, model: str | None = None,
                                  status: str | None = None) -> list[TransitionRequest]:
        ctx = Ctx.of(info)
        rows = await ctx.reg.queries.all_requests(model, status)
        return [TransitionRequest.of(r, await ctx.redacted(r.model)) for r in rows]

    @strawberry.field
    async def environments(self, info: Info) -> list[DeploymentEnvironment]:
        ctx = Ctx.of(info)
        return [DeploymentEnvironment.of(r, ctx) for r in await ctx.reg.queries.environments()]

    @strawberry.field
    async def deployments(self, info: Info, model: str | None = None, version: str | None = None,
                          environment: str | None = None,
                          status: str | None = None) -> list[Deployment]:
        ctx = Ctx.of(info)
        number = int(version) if version and version.isdigit() else None
        if version and number is None:
            raise ValueError(f"version must be a number, not {version!r}")
        rows = await ctx.reg.queries.deployments(model, number, environment, status)
        return [Deployment.of(r, ctx) for r in rows]

    @strawberry.field
    async def deployment(self, info: Info, id: str) -> Deployment | None:
        ctx = Ctx.of(info)
        row = await ctx.reg.deployment.load(id)
        return Deployment.of(row, ctx) if row else None

    @strawberry.field(description=f"registered webhooks (needs the {ADMIN_ROLE} role)")
    async def webhooks(self, info: Info) -> list[Webhook]:
        ctx = Ctx.of(info)
        if ctx.principal is None or ADMIN_ROLE not in ctx.principal.roles:
            raise GraphQLError(f"listing webhooks needs the {ADMIN_ROLE} role",
                               extensions={"code": "FORBIDDEN"})
        return [_webhook(r, ctx) for r in await ctx.reg.queries.webhooks()]


async def redact_history(info: Info, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events of a redact-locked model lose their payload for readers without the role."""
    ctx = Ctx.of(info)
    out = []
    for e in events:
        if e["aggregate"]["kind"] == "model" and await ctx.redacted(e["aggregate"]["id"]):
            e = {**e, "payload": {"redacted": True}}
        out.append(e)
    return out


# -- mutations --------------------------------------------------------------------------------------


@strawberry.type
class CommandEvent:
    event_id: str
    type: str


@strawberry.type
class RegistryResult:
    """What a registry command did, and the state it left (read after the projections
    caught up with it)."""

    command: str
    aggregate_kind: str
    aggregate_id: str
    revision: int
    events: list[CommandEvent]
    result: JSON
    _ctx: strawberry.Private[Ctx]
    _result: strawberry.Private[dict[str, Any]]

    @strawberry.field
    async def model(self) -> RegisteredModel | None:
        name = self.aggregate_id if self.aggregate_kind == "model" else self._result.get("model")
        row = await self._ctx.reg.queries.model(name) if name else None
        return await RegisteredModel.build(row, self._ctx) if row else None

    @strawberry.field
    async def model_version(self) -> ModelVersion | None:
        version = self._result.get("version")
        if self.aggregate_kind != "model" or version is None:
            return None
        return await _version(self._ctx, self.aggregate_id, version)

    @strawberry.field
    async def request(self) -> TransitionRequest | None:
        request_id = self._result.get("request_id")
        if not request_id:
            return None
        rows = [r for r in await self._ctx.reg.requests.load(self.aggregate_id)
                if r.request_id == request_id]
        return TransitionRequest.of(rows[0], await self._ctx.redacted(self.aggregate_id)) \
            if rows else None

    @strawberry.field
    async def deployment(self) -> Deployment | None:
        if self.aggregate_kind != "deployment":
            return None
        row = await self._ctx.reg.deployment.load(self.aggregate_id)
        return Deployment.of(row, self._ctx) if row else None

    @strawberry.field
    async def environment(self) -> DeploymentEnvironment | None:
        if self.aggregate_kind != "environment":
            return None
        row = await self._ctx.reg.environment.load(self.aggregate_id)
        return DeploymentEnvironment.of(row, self._ctx) if row else None

    @strawberry.field(description="register_webhook only: the signing secret, shown this once")
    def secret(self) -> str | None:
        return self._result.get("secret")


async def _run(info: Info, command: str, args: dict[str, Any],
               expected_revision: int | None = None) -> RegistryResult:
    bus = info.context.get("commands")
    if bus is None:
        raise GraphQLError("registry mutations are not available on this endpoint")
    try:
        done = await bus.execute(command, {k: v for k, v in args.items() if v is not None},
                                 info.context.get("principal"),
                                 expected_revision=expected_revision, source="graphql")
    except CommandRefused as exc:
        raise GraphQLError(exc.message, extensions={"code": exc.code.upper()}) from None
    await bus.settle()
    # Fresh loaders: anything read earlier in this request predates the command.
    queries: RunQueries = info.context["loaders"].queries
    info.context["loaders"] = Loaders(queries)
    info.context["registry"] = RegistryLoaders(RegistryQueries(queries.engine))
    return RegistryResult(command=done.command, aggregate_kind=done.aggregate.kind,
                          aggregate_id=done.aggregate.id, revision=done.revision,
                          events=[CommandEvent(event_id=e["event_id"], type=e["type"])
                                  for e in done.events],
                          result=done.result, _ctx=Ctx.of(info), _result=done.result)


def _number(version: str) -> int:
    if not version.isdigit():
        raise GraphQLError(f"version must be a number, not {version!r}",
                           extensions={"code": "INVALID"})
    return int(version)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Erase a run's sensitive values by destroying its data keys "
                                     "(crypto-shredding); the log and its hashes stay intact.")
    async def redact_run(self, info: Info, run_id: strawberry.ID, reason: str) -> RegistryResult:
        return await _run(info, "redact_run", {"run_id": str(run_id), "reason": reason})

    @strawberry.mutation
    async def create_registered_model(self, info: Info, name: str, description: str = "",
                                      tags: JSON | None = None) -> RegistryResult:
        return await _run(info, "create_model", {"name": name, "description": description,
                                                 "tags": tags})

    @strawberry.mutation
    async def update_registered_model(self, info: Info, name: str, description: str | None = None,
                                      tags: JSON | None = None, remove_tags: list[str] | None = None,
                                      expected_revision: int | None = None) -> RegistryResult:
        return await _run(info, "update_model", {"name": name, "description": description,
                                                 "set_tags": tags, "remove_tags": remove_tags},
                          expected_revision)

    @strawberry.mutation
    async def delete_registered_model(self, info: Info, name: str,
                                      expected_revision: int | None = None) -> RegistryResult:
        return await _run(info, "delete_model", {"name": name}, expected_revision)

    @strawberry.mutation
    async def create_model_version(self, info: Info, name: str, run_id: str | None = None,
                                   artifact: str | None = None, source_uri: str | None = None,
                                   description: str = "", create_model: bool = False,
                                   expected_revision: int | None = None) -> RegistryResult:
        return await _run(info, "create_version", {
            "name": name, "run_id": run_id, "artifact": artifact, "source_uri": source_uri,
            "description": description, "create_model": create_model}, expected_revision)

    @strawberry.mutation
    async def delete_model_version(self, info: Info, name: str, version: str,
                                   expected_revision: int | None = None) -> RegistryResult:
        return await _run(info, "delete_version", {"name": name, "version": _number(version)},
                          expected_revision)

    @strawberry.mutation
    async def set_model_version_stage(self, info: Info, name: str, version: str, stage: str,
                                      comment: str = "",
                                      expected_revision: int | None = None) -> RegistryResult:
        return await _run(info, "set_stage", {"name": name, "version": _number(version),
                                              "stage": stage, "comment": comment},
                          expected_revision)

    @strawberry.mutation
    async def request_stage_transition(self, info: Info, name: str, version: str, stage: str,
                                       comment: str = "",
                                       expected_revision: int | None = None) -> RegistryResult:
        return await _run(info, "request_transition", {
            "name": name, "version": _number(version), "stage": stage, "comment": comment},
            expected_revision)

    @strawberry.mutation
    async def approve_stage_transition(self, info: Info, name: str, request_id: str,
                                       comment: str = "",
                                       expected_revision: int | None = None) -> RegistryResult:
        return await _run(info, "approve_transition", {
            "name": name, "request_id": request_id, "comment": comment}, expected_revision)

    @strawberry.mutation
    async def reject_stage_transition(self, info: Info, name: str, request_id: str,
                                      comment: str = "",
                                      expected_revision: int | None = None) -> RegistryResult:
        return await _run(info, "reject_transition", {
            "name": name, "request_id": request_id, "comment": comment}, expected_revision)

    @strawberry.mutation
    async def set_model_alias(self, info: Info, name: str, alias: str, version: str,
                              expected_revision: int | None = None) -> RegistryResult:
        return await _run(info, "set_alias", {"name": name, "alias": alias,
                                              "version": _number(version)}, expected_revision)

    @strawberry.mutation
    async def delete_model_alias(self, info: Info, name: str, alias: str,
                                 expected_revision: int | None = None) -> RegistryResult:
        return await _run(info, "delete_alias", {"name": name, "alias": alias}, expected_revision)

    @strawberry.mutation
    async def set_model_lock(self, info: Info, name: str, level: str, role: str | None = None,
                             comment: str = "",
                             expected_revision: int | None = None) -> RegistryResult:
        return await _run(info, "set_lock", {"name": name, "level": level, "role": role,
                                             "comment": comment}, expected_revision)

    @strawberry.mutation
    async def set_model_rules(self, info: Info, name: str, single_production: bool = False,
                              approval_required: list[str] | None = None,
                              expected_revision: int | None = None) -> RegistryResult:
        return await _run(info, "set_rules", {"name": name, "single_production": single_production,
                                              "approval_required": approval_required or []},
                          expected_revision)

    @strawberry.mutation
    async def register_environment(self, info: Info, name: str, stage: str, location: str = "",
                                   description: str = "") -> RegistryResult:
        return await _run(info, "register_environment", {
            "name": name, "stage": stage, "location": location, "description": description})

    @strawberry.mutation
    async def record_deployment(self, info: Info, model: str, version: str, environment: str,
                                status: str = "pending", endpoint: str | None = None,
                                message: str = "",
                                deployment_id: str | None = None) -> RegistryResult:
        return await _run(info, "record_deployment", {
            "deployment_id": deployment_id, "model": model, "version": _number(version),
            "environment": environment, "status": status, "endpoint": endpoint,
            "message": message})

    @strawberry.mutation
    async def set_deployment_status(self, info: Info, deployment_id: str, status: str,
                                    message: str = "",
                                    expected_revision: int | None = None) -> RegistryResult:
        return await _run(info, "set_deployment_status", {
            "deployment_id": deployment_id, "status": status, "message": message},
            expected_revision)

    @strawberry.mutation
    async def register_webhook(self, info: Info, url: str, events: list[str] | None = None,
                               models: list[str] | None = None,
                               description: str = "") -> RegistryResult:
        return await _run(info, "register_webhook", {"url": url, "events": events,
                                                     "models": models, "description": description})

    @strawberry.mutation
    async def delete_webhook(self, info: Info, webhook_id: str) -> RegistryResult:
        return await _run(info, "delete_webhook", {"webhook_id": webhook_id})
