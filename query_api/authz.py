"""Access control of the GraphQL API: ONE rule per root field, enforced by one extension.

Every field of Query, Mutation and Subscription must have a rule in `RULES`; a field
without one is refused to everyone but administrators (and tests/security fails for it).
The caller is `info.context["principal"]`; when it carries no `access` (an in-process
caller such as the embedded SDK or a test building its own context) nothing is checked.

Reading rules hide rather than refuse: what a caller may not read answers exactly as if it
did not exist (null, an empty list), so nobody learns the name of a project by probing.
Runs and projects are filtered in SQL (RunQueries.restricted); the rest here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import Info

from modeldb.event_schema.nodes import parse_node_id

ROOT_TYPES = frozenset({"Query", "Mutation", "Subscription"})


@dataclass(frozen=True)
class Rule:
    """What a root field needs.

    kind:
    - "any": any authenticated caller; the data is filtered in SQL to what they may read;
    - "admin": administrators only (refused with FORBIDDEN otherwise);
    - "model": `arg` names a registered model the caller must read, else `hidden`;
    - "run": `arg` is a run id the caller must see, else `hidden`;
    - "filter": the answer is filtered item by item (`keep(item, access)`);
    - "lineage": nodes the caller may not read become redacted placeholders; a start node
      (`arg`) the caller may not read answers `hidden` (as an unknown node would);
    - "node": only that start-node check (the resolver redacts the rest itself);
    - "command": a registry mutation; the command table (modeldb.infra.guard) decides.
    """

    kind: str
    arg: str | None = None
    hidden: Any = None  # the answer when hidden; a callable: made from the argument (or raised)
    keep: Callable[[Any, Any], bool] | None = None
    redact: bool = False  # also redact the lineage graph the field answers


def _model_readable(attr: str) -> Callable[[Any, Any], bool]:
    def keep(item: Any, access: Any) -> bool:
        name = getattr(item, attr, None)
        return name is None or access.allows("model", name, "reader")
    return keep


def _aggregate_readable(kind: str, ident: str, access: Any) -> bool:
    if kind == "project":
        return access.allows("project", ident, "reader")
    if kind == "experiment":
        return access.allows("project", ident.split("/", 1)[0], "reader")
    if kind == "model":
        return access.allows("model", ident, "reader")
    if kind == "webhook":
        return access.is_admin
    # Datasets, environments and deployments are shared; runs are checked in the read model.
    return kind in ("dataset", "environment", "deployment")


def _hit_readable(hit: Any, access: Any) -> bool:
    if hit.kind == "RegisteredModel":
        return access.allows("model", str(hit.id), "reader")
    if hit.kind == "ModelVersion":
        return access.allows("model", str(hit.id).rsplit("/", 1)[0], "reader")
    return True


ANY, ADMIN, COMMAND = Rule("any"), Rule("admin"), Rule("command")

# (parent type, GraphQL field name) → rule. New root fields need a line here.
RULES: dict[tuple[str, str], Rule] = {
    ("Query", "projects"): ANY,
    ("Query", "run"): ANY,
    ("Query", "runs"): ANY,
    ("Query", "lineage"): Rule("lineage", "id", hidden=lambda start: _empty_graph()),
    ("Query", "impact"): Rule("node", "id", hidden=lambda start: GraphQLError(
        f"no lineage node {start}")),  # the resolver redacts the rest itself
    ("Query", "provenance"): Rule("model", "name", hidden=lambda _a: GraphQLError(
        "no model version"), redact=True),
    ("Query", "compareRuns"): ANY,  # runs load through the restricted queries
    ("Query", "history"): Rule("history", "id", hidden=[]),
    ("Query", "runAsOf"): Rule("run", "id"),
    ("Query", "registeredModels"): Rule("filter", keep=_model_readable("name")),
    ("Query", "registeredModel"): Rule("model", "name"),
    ("Query", "modelVersion"): Rule("model", "name"),
    ("Query", "modelVersionAsOf"): Rule("model", "name"),
    ("Query", "transitionRequests"): Rule("filter", keep=_model_readable("model")),
    ("Query", "environments"): ANY,
    ("Query", "deployments"): Rule("filter", keep=_model_readable("model")),
    ("Query", "deployment"): Rule("filter", keep=_model_readable("model")),
    ("Query", "webhooks"): ADMIN,
    ("Query", "tokens"): ADMIN,
    ("Query", "search"): Rule("filter", keep=_hit_readable),  # projects and runs: in SQL
    ("Subscription", "runUpdates"): ANY,  # a run the caller cannot see: as if unknown
    **{("Mutation", name): COMMAND for name in (
        "createRegisteredModel", "updateRegisteredModel", "deleteRegisteredModel",
        "createModelVersion", "deleteModelVersion", "setModelVersionStage",
        "requestStageTransition", "approveStageTransition", "rejectStageTransition",
        "setModelAlias", "deleteModelAlias", "setModelLock", "setModelRules",
        "registerEnvironment", "recordDeployment", "setDeploymentStatus",
        "registerWebhook", "deleteWebhook")},
    ("Mutation", "createToken"): ADMIN,
    ("Mutation", "revokeToken"): ADMIN,
    ("Mutation", "redactRun"): COMMAND,
    ("Mutation", "grantRole"): ADMIN,
}


def rule_of(parent: str, field: str) -> Rule | None:
    return RULES.get((parent, field))


class AccessControl(SchemaExtension):
    """Applies RULES to every root field of every operation."""

    # It acts on root fields only: query_api/plain_objects.py may complete leaf fields of
    # plain objects without calling it.
    root_fields_only = True

    def resolve(self, _next: Callable[..., Any], root: Any, info: Info, *args: Any,
                **kwargs: Any) -> Any:
        parent = info.parent_type.name
        access = getattr(info.context.get("principal"), "access", None) \
            if isinstance(info.context, dict) else None
        if parent not in ROOT_TYPES or access is None or info.field_name.startswith("__"):
            return _next(root, info, *args, **kwargs)
        rule = rule_of(parent, info.field_name)
        if rule is None:
            if not access.is_admin:
                raise GraphQLError(f"{parent}.{info.field_name} has no access rule: refused",
                                   extensions={"code": "FORBIDDEN"})
            return _next(root, info, *args, **kwargs)
        if rule.kind == "admin" and not access.is_admin:
            raise GraphQLError(f"{info.field_name} needs an administrator",
                               extensions={"code": "FORBIDDEN"})
        if rule.kind in ("any", "admin", "command"):
            return _next(root, info, *args, **kwargs)
        return _guarded(rule, access, _next, root, info, args, kwargs)


async def _value(result: Any) -> Any:
    return await result if isawaitable(result) else result


async def _guarded(rule: Rule, access: Any, _next: Callable[..., Any], root: Any, info: Info,
                   args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    arg = kwargs.get(rule.arg) if rule.arg else None
    if rule.kind == "model":
        if not access.allows("model", str(arg), "reader"):
            return _hidden(rule, arg)
        result = await _value(_next(root, info, *args, **kwargs))
        return await redact_lineage(info, access, result) if rule.redact else result
    if rule.kind == "run":
        kind, ident = parse_node_id(str(arg))
        if kind != "Run" or not await _runs_visible(info, [ident]):
            return rule.hidden
        return await _value(_next(root, info, *args, **kwargs))
    if rule.kind in ("lineage", "node") and arg is not None:
        kind, ident = parse_node_id(str(arg))
        seen = await _runs_visible(info, [ident]) if kind == "Run" else set()
        if not _node_readable(kind, ident, access, seen):
            from modeldb.event_schema.nodes import node_id

            return _hidden(rule, node_id(kind, ident))  # as an unknown start node answers
    result = await _value(_next(root, info, *args, **kwargs))
    if rule.kind == "filter" and rule.keep is not None:
        if isinstance(result, list):
            return [item for item in result if rule.keep(item, access)]
        return result if result is None or rule.keep(result, access) else None
    if rule.kind == "history":
        return await _history(info, access, str(arg), result)
    if rule.kind == "lineage":
        return await redact_lineage(info, access, result)
    if rule.kind == "node":
        return result
    raise GraphQLError(f"unknown access rule {rule.kind!r}")  # a bug in RULES


def _hidden(rule: Rule, arg: Any) -> Any:
    if not callable(rule.hidden):
        return rule.hidden
    made = rule.hidden(arg)
    if isinstance(made, Exception):
        raise made
    return made


def _empty_graph() -> Any:
    from modeldb.query_api.schema import LineageGraph

    return LineageGraph(nodes=[], edges=[])


async def _runs_visible(info: Info, run_ids: list[str]) -> set[str]:
    """The runs among `run_ids` that the caller sees (the restricted run queries)."""
    if not run_ids:
        return set()
    rows = await info.context["loaders"].queries.runs_by_id(run_ids)
    return {r.id for r in rows if r is not None}


async def _history(info: Info, access: Any, ident: str, events: list[Any]) -> list[Any]:
    """The events of aggregates the caller may read (an id can name several kinds)."""
    from modeldb.event_schema.nodes import aggregate_of
    from modeldb.event_schema.types import EVENT_TYPES

    aggregate = aggregate_of(ident)
    run_seen = bool(await _runs_visible(info, [aggregate]))
    out = []
    for e in events:
        spec = EVENT_TYPES.get(e.type)
        kind = spec.aggregate_kind if spec else "unknown"
        if (run_seen if kind == "run" else _aggregate_readable(kind, aggregate, access)):
            out.append(e)
    return out


async def redact_lineage(info: Info, access: Any, graph: Any) -> Any:
    """Nodes the caller may not read keep their kind and place in the graph, nothing else."""
    from modeldb.query_api.schema import LineageEdge, LineageGraph, LineageNode

    runs = [parse_node_id(n.id)[1] for n in graph.nodes if n.kind == "Run"]
    seen = await _runs_visible(info, runs)
    hidden: dict[str, str] = {}
    nodes = []
    for n in graph.nodes:
        kind, ident = parse_node_id(n.id)
        if _node_readable(kind, ident, access, seen):
            nodes.append(n)
        else:
            hidden[n.id] = f"redacted:{len(hidden) + 1}"
            nodes.append(LineageNode(id=hidden[n.id], kind=n.kind, name=None))
    edges = [LineageEdge(source=hidden.get(e.source, e.source), target=hidden.get(e.target, e.target),
                         kind=e.kind) for e in graph.edges]
    return LineageGraph(nodes=nodes, edges=edges, truncated=graph.truncated)


def _node_readable(kind: str, ident: str, access: Any, seen_runs: set[str]) -> bool:
    if kind == "Run":
        return ident in seen_runs
    if kind == "Project":
        return access.allows("project", ident, "reader")
    if kind == "Experiment":
        return access.allows("project", ident.split("/", 1)[0], "reader")
    if kind == "RegisteredModel":
        return access.allows("model", ident, "reader")
    if kind == "ModelVersion":
        return access.allows("model", ident.rsplit("/", 1)[0], "reader")
    return True  # datasets, artifacts, code versions: shared across projects


# -- token administration in GraphQL ---------------------------------------------------------


@strawberry.type
class ApiToken:
    id: str
    user: str
    admin: bool
    created_by: str | None
    revoked: bool


@strawberry.type
class CreatedToken:
    token: ApiToken
    secret: str = strawberry.field(description="the bearer secret, shown this once")


def _store(info: Info) -> Any:
    authenticator = info.context.get("authenticator")
    if authenticator is None or authenticator.store is None:
        raise GraphQLError("tokens are managed by a ModelDB server in token mode")
    return authenticator


def _token(t: Any) -> ApiToken:
    return ApiToken(id=t.id, user=t.user, admin=t.admin, created_by=t.created_by,
                    revoked=t.revoked_at is not None)


@strawberry.type
class SecurityQuery:
    @strawberry.field(description="API tokens (administrators only; never their secrets)")
    async def tokens(self, info: Info) -> list[ApiToken]:
        return [_token(t) for t in await _store(info).store.list_tokens()]


@strawberry.type
class SecurityMutation:
    @strawberry.mutation(description="a new API token for a user; the secret is shown once")
    async def create_token(self, info: Info, user: str, admin: bool = False) -> CreatedToken:
        from modeldb.infra.security import SecurityError

        auth = _store(info)
        try:
            made, secret = await auth.store.create_token(
                user, admin=admin, created_by=getattr(info.context.get("principal"), "name", None))
        except SecurityError as exc:
            raise GraphQLError(str(exc), extensions={"code": "INVALID"}) from None
        return CreatedToken(token=_token(made), secret=secret)

    @strawberry.mutation(description="revoke a token by id; true if it was live")
    async def revoke_token(self, info: Info, id: str) -> bool:
        auth = _store(info)
        done = await auth.store.revoke_token(id)
        auth.forget()
        return bool(done)

    @strawberry.mutation(description="give a user a role (reader, writer, admin) on a project "
                                     "or a registered model (* for all)")
    async def grant_role(self, info: Info, user: str, role: str, project: str | None = None,
                         model: str | None = None) -> bool:
        from modeldb.infra.security import SecurityError

        auth = _store(info)
        if (project is None) == (model is None):
            raise GraphQLError("name a project or a model", extensions={"code": "INVALID"})
        try:
            await auth.store.grant(user, role, "project" if project else "model",
                                   project or model or "",
                                   granted_by=getattr(info.context.get("principal"), "name", None))
        except SecurityError as exc:
            raise GraphQLError(str(exc), extensions={"code": "INVALID"}) from None
        auth.forget()
        return True

