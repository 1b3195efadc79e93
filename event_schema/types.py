"""Every event type: its payload model, the aggregate it belongs to, and its version.

Names are past tense. A payload never changes shape in place: a new shape is a new
`version` plus an upcaster (see upcasters.py) from the one before.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

# Limits keep one event small enough to index and display; MLflow uses similar ones.
Key = Annotated[str, Field(min_length=1, max_length=250)]
Name = Annotated[str, Field(min_length=1, max_length=500)]
EntityId = Annotated[str, Field(min_length=1, max_length=700)]  # as long as an aggregate id
Text = Annotated[str, Field(max_length=8000)]
# The log's JSON encoder (orjson) and the databases hold 64-bit integers: larger ones are refused here.
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
Scalar = str | Int64 | float | bool
Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
RunStatus = Literal["FINISHED", "FAILED", "KILLED"]
Stage = Literal["None", "Staging", "Production", "Archived"]
LockLevel = Literal["open", "closed", "redact"]
DeploymentStatus = Literal["pending", "serving", "failed", "retired"]
TransitionCause = Literal["direct", "approval", "rule"]
Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")]
NodeKind = Literal["DatasetVersion", "Artifact", "ModelVersion", "CodeVersion", "Run"]


class Payload(BaseModel):
    """Strict about unknown fields: a typo in a producer is an error, not silent data loss."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Empty(Payload):
    pass


# -- projects and experiments -----------------------------------------------------------


class ProjectCreated(Payload):
    name: Name
    description: Text = ""


class ExperimentCreated(Payload):
    project: Name
    name: Name
    description: Text = ""


# -- runs ---------------------------------------------------------------------------------


class RunStarted(Payload):
    project: Name
    experiment: Name
    name: Name | None = None
    parent_run_id: EntityId | None = None
    start_time: datetime


class RunFinished(Payload):
    status: RunStatus = "FINISHED"
    end_time: datetime


class ParamsLogged(Payload):
    params: Annotated[dict[Key, Scalar], Field(max_length=1000)]


class MetricPoint(Payload):
    key: Key
    value: float
    step: Int64 = 0
    timestamp: Int64  # epoch milliseconds, as training code and MLflow report them

    @field_serializer("value")
    def _finite_or_name(self, value: float) -> float | str:
        # JSON has no NaN or infinity; keep them as the names float() reads back.
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


class MetricsLoggedV1(Payload):
    """The first, one-point-per-event shape; kept so the oldest logs still replay."""

    key: Key
    value: float
    step: Int64 = 0
    timestamp: Int64


class MetricsLogged(Payload):
    points: Annotated[list[MetricPoint], Field(min_length=1, max_length=10_000)]


class TagsSet(Payload):
    tags: Annotated[dict[Key, Text], Field(max_length=1000)]


class KeysDeleted(Payload):
    keys: Annotated[list[Key], Field(min_length=1, max_length=1000)]


class AttributesSet(Payload):
    attributes: Annotated[dict[Key, Scalar | None], Field(max_length=1000)]


class ValuesRedacted(Payload):
    """A redaction: the run's data keys were destroyed, so its sealed values are gone.
    `redacted` maps each path ("params.email") to the digest of the token the log keeps."""

    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    redacted: dict[str, Digest]
    key_ids: list[Annotated[str, Field(max_length=64)]]


class CodeVersionRecorded(Payload):
    commit: Annotated[str, Field(min_length=4, max_length=64)]
    repository: Text | None = None
    branch: Text | None = None
    dirty: bool = False
    diff_digest: Digest | None = None


class EnvironmentRecorded(Payload):
    python: Annotated[str, Field(max_length=100)]
    platform: Annotated[str, Field(max_length=200)] = ""
    packages: Annotated[dict[Key, Annotated[str, Field(max_length=100)]], Field(max_length=5000)]


class ArtifactLogged(Payload):
    name: Name
    digest: Digest
    size: Annotated[int, Field(ge=0)]
    uri: Text
    kind: Key = "artifact"
    media_type: Key | None = None


class RunLinked(Payload):
    """A run's input (it USED the entity) or output (the entity was GENERATED_BY it)."""

    kind: NodeKind
    id: Annotated[str, Field(min_length=1, max_length=700)]
    name: Name | None = None


# -- datasets -------------------------------------------------------------------------------


class DatasetCreated(Payload):
    name: Name
    description: Text = ""


class DatasetVersionCreated(Payload):
    digest: Digest
    uri: Text | None = None
    data_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    row_count: Annotated[int, Field(ge=0)] | None = None
    derived_from: Annotated[list[EntityId], Field(max_length=100)] = []

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- registry -------------------------------------------------------------------------------


class RegisteredModelCreated(Payload):
    name: Name
    description: Text = ""
    tags: dict[Key, Text] = {}


class ModelVersionCreated(Payload):
    version: Annotated[int, Field(ge=1)]
    run_id: EntityId | None = None
    artifact_name: Name | None = None
    artifact_digest: Digest | None = None
    source_uri: Text | None = None
    description: Text = ""


class ModelVersionDeleted(Payload):
    version: Annotated[int, Field(ge=1)]


class RegisteredModelUpdated(Payload):
    """None leaves a field as it was; `tags` is the model's whole new tag set."""

    description: Text | None = None
    tags: dict[Key, Text] | None = None


class ModelVersionStageChangedV1(Payload):
    """The first shape: no record of where the version came from or why it moved."""

    version: Annotated[int, Field(ge=1)]
    stage: Stage
    comment: Text = ""


class ModelVersionStageChanged(Payload):
    version: Annotated[int, Field(ge=1)]
    stage: Stage
    comment: Text = ""
    from_stage: Stage | None = None  # None only in events older than version 2
    cause: TransitionCause = "direct"  # a direct change, an approved request, or a model rule
    request_id: Identifier | None = None  # the approved request, when cause is "approval"


class StageTransitionRequested(Payload):
    request_id: Identifier
    version: Annotated[int, Field(ge=1)]
    from_stage: Stage
    to_stage: Stage
    comment: Text = ""


class StageTransitionDecided(Payload):
    """Approved or rejected; the decider is the event's actor."""

    request_id: Identifier
    version: Annotated[int, Field(ge=1)]
    comment: Text = ""


class ModelLockChanged(Payload):
    """open: changes allowed; closed: no further changes; redact: closed, and content hidden
    from readers without `role`."""

    level: LockLevel
    role: Key | None = None
    comment: Text = ""


class ModelRuleSet(Payload):
    single_production: bool = False  # promoting a version archives the previous Production one
    approval_required: Annotated[list[Stage], Field(max_length=4)] = []  # stages entered only by approval


class ModelAliasSet(Payload):
    alias: Key
    version: Annotated[int, Field(ge=1)]


class ModelAliasDeleted(Payload):
    alias: Key


# -- deployments and webhooks -----------------------------------------------------------------


class EnvironmentRegistered(Payload):
    """An environment models are deployed into; registering it again updates it."""

    name: Name
    stage: Key  # staging, production, …
    location: Text = ""
    description: Text = ""


class DeploymentRecorded(Payload):
    """A deploying system reports that it put a model version into an environment."""

    model: Name
    version: Annotated[int, Field(ge=1)]
    environment: Name
    status: DeploymentStatus = "pending"
    endpoint: Text | None = None
    message: Text = ""


class DeploymentStatusChanged(Payload):
    status: DeploymentStatus
    message: Text = ""


class WebhookRegistered(Payload):
    url: Annotated[str, Field(max_length=2000, pattern=r"^https?://[^\s]+$")]
    events: Annotated[list[Key], Field(min_length=1, max_length=50)] = ["ModelVersionStageChanged"]
    models: Annotated[list[Name], Field(max_length=1000)] = []  # empty: every model
    description: Text = ""


# -- the registry of types -----------------------------------------------------------------

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class EventType:
    name: str
    aggregate_kind: str
    payload: type[Payload]
    version: int = 1
    # upcasters[v] turns a payload of version v into version v + 1.
    upcasters: dict[int, Upcaster] = field(default_factory=dict)
    old_payloads: dict[int, type[Payload]] = field(default_factory=dict)


def _types() -> dict[str, EventType]:
    from modeldb.event_schema.upcasters import metrics_logged_v1_to_v2, stage_changed_v1_to_v2

    specs = [
        EventType("ProjectCreated", "project", ProjectCreated),
        EventType("ProjectDeleted", "project", Empty),
        EventType("ExperimentCreated", "experiment", ExperimentCreated),
        EventType("ExperimentDeleted", "experiment", Empty),
        EventType("RunStarted", "run", RunStarted),
        EventType("RunFinished", "run", RunFinished),
        EventType("RunDeleted", "run", Empty),
        EventType("ParamsLogged", "run", ParamsLogged),
        EventType(
            "MetricsLogged",
            "run",
            MetricsLogged,
            version=2,
            upcasters={1: metrics_logged_v1_to_v2},
            old_payloads={1: MetricsLoggedV1},
        ),
        EventType("TagsSet", "run", TagsSet),
        EventType("TagsDeleted", "run", KeysDeleted),
        EventType("AttributesSet", "run", AttributesSet),
        EventType("AttributesDeleted", "run", KeysDeleted),
        EventType("ValuesRedacted", "run", ValuesRedacted),
        EventType("CodeVersionRecorded", "run", CodeVersionRecorded),
        EventType("EnvironmentRecorded", "run", EnvironmentRecorded),
        EventType("ArtifactLogged", "run", ArtifactLogged),
        EventType("RunInputLogged", "run", RunLinked),
        EventType("RunOutputLogged", "run", RunLinked),
        EventType("DatasetCreated", "dataset", DatasetCreated),
        EventType("DatasetVersionCreated", "dataset", DatasetVersionCreated),
        EventType("DatasetDeleted", "dataset", Empty),
        EventType("RegisteredModelCreated", "model", RegisteredModelCreated),
        EventType("RegisteredModelDeleted", "model", Empty),
        EventType("ModelVersionCreated", "model", ModelVersionCreated),
        EventType("ModelVersionDeleted", "model", ModelVersionDeleted),
        EventType(
            "ModelVersionStageChanged",
            "model",
            ModelVersionStageChanged,
            version=2,
            upcasters={1: stage_changed_v1_to_v2},
            old_payloads={1: ModelVersionStageChangedV1},
        ),
        EventType("ModelAliasSet", "model", ModelAliasSet),
        EventType("ModelAliasDeleted", "model", ModelAliasDeleted),
        EventType("RegisteredModelUpdated", "model", RegisteredModelUpdated),
        EventType("StageTransitionRequested", "model", StageTransitionRequested),
        EventType("StageTransitionApproved", "model", StageTransitionDecided),
        EventType("StageTransitionRejected", "model", StageTransitionDecided),
        EventType("ModelLockChanged", "model", ModelLockChanged),
        EventType("ModelRuleSet", "model", ModelRuleSet),
        EventType("EnvironmentRegistered", "environment", EnvironmentRegistered),
        EventType("DeploymentRecorded", "deployment", DeploymentRecorded),
        EventType("DeploymentStatusChanged", "deployment", DeploymentStatusChanged),
        EventType("WebhookRegistered", "webhook", WebhookRegistered),
        EventType("WebhookDeleted", "webhook", Empty),
    ]
    return {spec.name: spec for spec in specs}


EVENT_TYPES: dict[str, EventType] = _types()
AGGREGATE_KINDS = frozenset(spec.aggregate_kind for spec in EVENT_TYPES.values())
# Aggregates written only through registry commands (validated against their state), never as
# raw events over HTTP ingest: see modeldb.writer.commands.
GOVERNED_KINDS = frozenset({"model", "environment", "deployment", "webhook"})
# Events of other aggregates that also only a command may write (`redact_run` destroys keys).
GOVERNED_TYPES = frozenset({"ValuesRedacted"})


def event_type(name: str) -> EventType:
    try:
        return EVENT_TYPES[name]
    except KeyError:
        raise KeyError(f"unknown event type {name!r}") from None
