"""Deployments and webhooks, the registry's other aggregates: their states folded from
events and the decisions of their commands.

Deployments are a passive record: the systems that deploy push what they did (an
environment exists; a version went into it; its status changed), and ModelDB keeps the
history and the lineage from each deployment to its model version. It never deploys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import Field

from modeldb.event_schema import EVENT_TYPES, Event, uuid7
from modeldb.event_schema import types as t
from modeldb.writer.registry import Args, CommandRefused, Conflict, Decision, NotFound, Principal

# What a webhook can subscribe to: the registry's own events.
WEBHOOK_EVENTS = frozenset(name for name, spec in EVENT_TYPES.items()
                           if spec.aggregate_kind in ("model", "deployment"))


@dataclass
class EnvironmentState:
    name: str
    revision: int = 0
    exists: bool = False
    stage: str = ""
    location: str = ""
    description: str = ""

    @classmethod
    def fold(cls, name: str, events: Iterable[Event]) -> EnvironmentState:
        state = cls(name)
        for e in events:
            state.revision += 1
            if e.type == "EnvironmentRegistered":
                p: Any = e.payload
                state.exists = True
                state.stage, state.location, state.description = p.stage, p.location, p.description
        return state

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DeploymentState:
    deployment_id: str
    revision: int = 0
    exists: bool = False
    model: str = ""
    version: int = 0
    environment: str = ""
    status: str = ""
    endpoint: str | None = None
    message: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def fold(cls, deployment_id: str, events: Iterable[Event]) -> DeploymentState:
        state = cls(deployment_id)
        for e in events:
            state.revision += 1
            p: Any = e.payload
            if e.type == "DeploymentRecorded":
                state.exists = True
                state.model, state.version, state.environment = p.model, p.version, p.environment
                state.endpoint = p.endpoint
            if e.type in ("DeploymentRecorded", "DeploymentStatusChanged"):
                state.status, state.message = p.status, p.message
                state.history.append({"status": p.status, "message": p.message, "actor": e.actor,
                                      "at": e.recorded_at.isoformat() if e.recorded_at else None})
        return state

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WebhookState:
    webhook_id: str
    revision: int = 0
    exists: bool = False
    deleted: bool = False
    url: str = ""
    events: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)

    @classmethod
    def fold(cls, webhook_id: str, events: Iterable[Event]) -> WebhookState:
        state = cls(webhook_id)
        for e in events:
            state.revision += 1
            p: Any = e.payload
            if e.type == "WebhookRegistered":
                state.exists, state.url = True, p.url
                state.events, state.models = list(p.events), list(p.models)
            elif e.type == "WebhookDeleted":
                state.deleted = True
        return state

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- arguments ------------------------------------------------------------------------------------


class RegisterEnvironment(Args):
    name: t.Name
    stage: t.Key
    location: t.Text = ""
    description: t.Text = ""


class RecordDeployment(Args):
    deployment_id: t.Identifier = Field(default_factory=uuid7)
    model: t.Name
    version: int = Field(ge=1)
    environment: t.Name
    status: t.DeploymentStatus = "pending"
    endpoint: t.Text | None = None
    message: t.Text = ""


class SetDeploymentStatus(Args):
    deployment_id: t.Identifier
    status: t.DeploymentStatus
    message: t.Text = ""


class RegisterWebhook(Args):
    webhook_id: t.Identifier = Field(default_factory=uuid7)
    url: t.Text
    events: list[t.Key] = ["ModelVersionStageChanged"]
    models: list[t.Name] = []
    description: t.Text = ""


class WebhookArgs(Args):
    webhook_id: t.Identifier


# -- decisions ------------------------------------------------------------------------------------


def register_environment(env: EnvironmentState, a: RegisterEnvironment, who: Principal) -> Decision:
    if env.exists and (env.stage, env.location, env.description) == (a.stage, a.location,
                                                                       a.description):
        return Decision([], {"environment": a.name})
    return Decision([("EnvironmentRegistered", a.model_dump())], {"environment": a.name})


def record_deployment(d: DeploymentState, a: RecordDeployment, who: Principal,
                      version: Mapping[str, Any] | None, env: EnvironmentState) -> Decision:
    if d.exists:
        raise Conflict(f"deployment {a.deployment_id!r} is already recorded: update its status")
    if version is None:
        raise NotFound(f"registered model {a.model!r} has no version {a.version}")
    if not env.exists:
        raise NotFound(f"no environment {a.environment!r}: register it first")
    payload = a.model_dump(exclude={"deployment_id"})
    return Decision([("DeploymentRecorded", payload)], {"deployment_id": a.deployment_id})


def set_deployment_status(d: DeploymentState, a: SetDeploymentStatus, who: Principal) -> Decision:
    if not d.exists:
        raise NotFound(f"no deployment {a.deployment_id!r}")
    if d.status == "retired":
        raise Conflict(f"deployment {a.deployment_id!r} is retired; record a new deployment")
    if (d.status, d.message) == (a.status, a.message):
        return Decision([], {"deployment_id": a.deployment_id, "status": a.status})
    return Decision([("DeploymentStatusChanged", {"status": a.status, "message": a.message})],
                    {"deployment_id": a.deployment_id, "status": a.status})


def register_webhook(w: WebhookState, a: RegisterWebhook, who: Principal,
                     secret_for: Callable[[str], str]) -> Decision:
    if w.exists:
        raise Conflict(f"webhook {a.webhook_id!r} already exists")
    unknown = sorted(set(a.events) - WEBHOOK_EVENTS)
    if unknown:
        raise CommandRefused(f"a webhook cannot subscribe to {', '.join(unknown)}; "
                       f"known: {', '.join(sorted(WEBHOOK_EVENTS))}")
    payload = a.model_dump(exclude={"webhook_id"})
    # The signing secret is derived from the server key, never stored in the log: it is
    # handed out once, here.
    return Decision([("WebhookRegistered", payload)],
                    {"webhook_id": a.webhook_id, "secret": secret_for(a.webhook_id)})


def delete_webhook(w: WebhookState, a: WebhookArgs, who: Principal) -> Decision:
    if not w.exists or w.deleted:
        raise NotFound(f"no webhook {a.webhook_id!r}")
    return Decision([("WebhookDeleted", {})])
