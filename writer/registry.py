"""The model registry's command side: a registered model's state folded from its events, and
the decisions of every model command, checked against that state.

A decision is pure: given the aggregate's state (and the states of the few aggregates it
reads, such as the run that trained a version), the command's arguments and who asks, it
returns the events to append, or raises a `CommandRefused`. Appending them, conditional on
the aggregate not having moved meanwhile, is `modeldb.writer.commands`' job.

Governance, all decided here:
- stages `None → Staging → Production → Archived` (any move is allowed unless refused below);
- a move is a direct change, or a request that someone other than the requester approves
  or rejects; a model's rules can require approval to enter given stages;
- a model's rules can keep at most one version in Production: promoting one archives the
  others in the same command;
- lock levels: `open`; `closed` refuses every change except to the lock; `redact` is
  closed and hides content from readers without the lock's role (the read side does that).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modeldb.event_schema import Event, uuid7
from modeldb.event_schema import types as t

ADMIN_ROLE = "registry-admin"  # may change locks and rules
STAGES = ("None", "Staging", "Production", "Archived")
Payloads = list[tuple[str, dict[str, Any]]]


# -- who asks, and how a command is refused ---------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who issues a command or reads: a user name and the roles they hold."""

    name: str
    roles: frozenset[str] = frozenset()

    def has(self, role: str | None) -> bool:
        return role is None or role in self.roles or ADMIN_ROLE in self.roles


class CommandRefused(Exception):
    """A command that cannot be carried out; nothing was appended. `code` is for programs."""

    status = 422
    code = "invalid"

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class NotFound(CommandRefused):
    status, code = 404, "not_found"


class Conflict(CommandRefused):
    """The state does not allow it now (already exists, already decided, raced and lost …)."""

    status, code = 409, "conflict"


class Locked(Conflict):
    code = "locked"


class Forbidden(CommandRefused):
    status, code = 403, "forbidden"


# -- the state of one registered model ----------------------------------------------------------


@dataclass
class VersionState:
    version: int
    stage: str = "None"
    run_id: str | None = None
    artifact_name: str | None = None
    artifact_digest: str | None = None
    source_uri: str | None = None
    description: str = ""
    deleted: bool = False


@dataclass
class RequestState:
    request_id: str
    version: int
    from_stage: str
    to_stage: str
    requested_by: str | None
    requested_at: str | None
    comment: str
    status: Literal["pending", "approved", "rejected"] = "pending"
    decided_by: str | None = None
    decided_at: str | None = None
    decision_comment: str = ""


@dataclass
class Transition:
    """One stage change, as the audit report shows it."""

    at: str | None
    version: int
    from_stage: str | None
    to_stage: str
    actor: str | None
    comment: str
    cause: str
    request_id: str | None = None
    requested_by: str | None = None
    request_comment: str = ""


def _when(event: Event) -> str | None:
    return event.recorded_at.isoformat() if event.recorded_at else None


@dataclass
class ModelAggregate:
    name: str
    revision: int = 0  # how many events the model has: the version commands expect
    exists: bool = False
    deleted: bool = False
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    versions: dict[int, VersionState] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    requests: dict[str, RequestState] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    lock: str = "open"
    lock_role: str | None = None
    single_production: bool = False
    approval_required: tuple[str, ...] = ()
    last_version: int = 0  # never reused, even after a version is deleted

    @classmethod
    def fold(cls, name: str, events: Iterable[Event]) -> ModelAggregate:
        state = cls(name)
        for event in events:
            state.apply(event)
        return state

    def apply(self, e: Event) -> None:
        self.revision += 1
        p: Any = e.payload
        if e.type == "RegisteredModelCreated":
            self.exists, self.deleted = True, False
            self.description, self.tags = p.description, dict(p.tags)
        elif e.type == "RegisteredModelDeleted":
            self.deleted = True
        elif e.type == "RegisteredModelUpdated":
            if p.description is not None:
                self.description = p.description
            if p.tags is not None:
                self.tags = dict(p.tags)
        elif e.type == "ModelVersionCreated":
            self.exists = True  # a version implies its model, even in a log written by hand
            self.versions[p.version] = VersionState(
                p.version, run_id=p.run_id, artifact_name=p.artifact_name,
                artifact_digest=p.artifact_digest, source_uri=p.source_uri,
                description=p.description)
            self.last_version = max(self.last_version, p.version)
        elif e.type == "ModelVersionDeleted":
            if p.version in self.versions:
                self.versions[p.version].deleted = True
        elif e.type == "ModelVersionStageChanged":
            self._stage_changed(e, p)
        elif e.type == "StageTransitionRequested":
            self.requests[p.request_id] = RequestState(
                p.request_id, p.version, p.from_stage, p.to_stage, e.actor, _when(e), p.comment)
        elif e.type in ("StageTransitionApproved", "StageTransitionRejected"):
            request = self.requests.get(p.request_id)
            if request is not None:
                request.status = "approved" if e.type == "StageTransitionApproved" else "rejected"
                request.decided_by, request.decided_at = e.actor, _when(e)
                request.decision_comment = p.comment
        elif e.type == "ModelAliasSet":
            self.aliases[p.alias] = p.version
        elif e.type == "ModelAliasDeleted":
            self.aliases.pop(p.alias, None)
        elif e.type == "ModelLockChanged":
            self.lock, self.lock_role = p.level, p.role
        elif e.type == "ModelRuleSet":
            self.single_production = p.single_production
            self.approval_required = tuple(p.approval_required)

    def _stage_changed(self, e: Event, p: t.ModelVersionStageChanged) -> None:
        version = self.versions.get(p.version)
        before = p.from_stage or (version.stage if version else None)
        if version is not None:
            version.stage = p.stage
        request = self.requests.get(p.request_id) if p.request_id else None
        self.transitions.append(Transition(
            _when(e), p.version, before, p.stage, e.actor, p.comment, p.cause, p.request_id,
            request.requested_by if request else None, request.comment if request else ""))

    # -- what the commands check -------------------------------------------------------------

    @property
    def live(self) -> bool:
        return self.exists and not self.deleted

    def require_live(self) -> None:
        if not self.exists:
            raise NotFound(f"no registered model {self.name!r}")
        if self.deleted:
            raise NotFound(f"registered model {self.name!r} was deleted")

    def require_open(self) -> None:
        self.require_live()
        if self.lock != "open":
            raise Locked(f"registered model {self.name!r} is locked ({self.lock}): "
                         "no further changes until it is unlocked")

    def version(self, number: int) -> VersionState:
        found = self.versions.get(number)
        if found is None or found.deleted:
            raise NotFound(f"registered model {self.name!r} has no version {number}")
        return found

    def to_dict(self) -> dict[str, Any]:
        """The state as the command API answers it."""
        return {
            "name": self.name, "revision": self.revision, "exists": self.exists,
            "deleted": self.deleted, "description": self.description, "tags": self.tags,
            "lock": {"level": self.lock, "role": self.lock_role},
            "rules": {"single_production": self.single_production,
                      "approval_required": list(self.approval_required)},
            "versions": [{**asdict(v), "aliases": sorted(a for a, n in self.aliases.items()
                                                         if n == v.version)}
                         for v in sorted(self.versions.values(), key=lambda v: v.version)],
            "aliases": dict(sorted(self.aliases.items())),
            "pending_requests": [asdict(r) for r in self.requests.values()
                                 if r.status == "pending"],
        }


@dataclass
class RunFacts:
    """What a model version needs to know about the run that trained it."""

    run_id: str
    exists: bool = False
    artifacts: dict[str, tuple[str, str]] = field(default_factory=dict)  # name → (digest, uri)
    # For a redaction: every sealed value the run's events hold (path → token), and the
    # data keys already declared destroyed.
    sealed: dict[str, list[str]] = field(default_factory=dict)
    redacted_keys: set[str] = field(default_factory=set)

    @classmethod
    def fold(cls, run_id: str, events: Iterable[Event]) -> RunFacts:
        facts = cls(run_id)
        for e in events:
            p: Any = e.payload
            if e.type == "RunStarted":
                facts.exists = True
            elif e.type == "ArtifactLogged":
                facts.artifacts[p.name] = (p.digest, p.uri)
            elif e.type == "ValuesRedacted":
                facts.redacted_keys.update(p.key_ids)
            for path in e.sensitive:
                container, key = path.split(".", 1)
                facts.sealed.setdefault(path, []).append(getattr(p, container)[key])
        return facts


# -- command arguments ----------------------------------------------------------------------------


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelArgs(Args):
    name: t.Name


class CreateModel(ModelArgs):
    description: t.Text = ""
    tags: dict[t.Key, t.Text] = {}


class UpdateModel(ModelArgs):
    description: t.Text | None = None
    tags: dict[t.Key, t.Text] | None = None  # the whole new set, or None to keep it
    set_tags: dict[t.Key, t.Text] = {}
    remove_tags: list[t.Key] = []


class CreateVersion(ModelArgs):
    run_id: str | None = Field(default=None, min_length=1, max_length=700)
    artifact: t.Name | None = None  # the run's artifact, by name or by sha256 digest
    source_uri: t.Text | None = None  # a model stored outside ModelDB
    description: t.Text = ""
    create_model: bool = False  # register the model too if it does not exist yet

    @model_validator(mode="after")
    def _a_source(self) -> CreateVersion:
        if not self.run_id and not self.source_uri:
            raise ValueError("a model version comes from a run (run_id, artifact) or a source_uri")
        if self.artifact and not self.run_id:
            raise ValueError("artifact names an artifact of a run: give run_id too")
        return self


class VersionArgs(ModelArgs):
    version: int = Field(ge=1)


class SetStage(VersionArgs):
    stage: t.Stage
    comment: t.Text = ""


class RequestTransition(SetStage):
    pass


class DecideTransition(ModelArgs):
    request_id: t.Identifier
    comment: t.Text = ""


_DIGITS = re.compile(r"^\d+$")


class SetAlias(VersionArgs):
    alias: t.Key


class DeleteAlias(ModelArgs):
    alias: t.Key


class SetLock(ModelArgs):
    level: t.LockLevel
    role: t.Key | None = None
    comment: t.Text = ""


class SetRules(ModelArgs):
    single_production: bool = False
    approval_required: list[t.Stage] = []


# -- decisions ------------------------------------------------------------------------------------


@dataclass
class Decision:
    events: Payloads
    result: dict[str, Any] = field(default_factory=dict)


def create_model(m: ModelAggregate, a: CreateModel, who: Principal) -> Decision:
    if m.exists and not m.deleted:
        raise Conflict(f"registered model {a.name!r} already exists")
    if m.deleted:
        raise Conflict(f"registered model {a.name!r} was deleted; a name is not reused")
    return Decision([("RegisteredModelCreated",
                      {"name": a.name, "description": a.description, "tags": a.tags})])


def update_model(m: ModelAggregate, a: UpdateModel, who: Principal) -> Decision:
    m.require_open()
    tags = dict(m.tags if a.tags is None else a.tags)
    tags.update(a.set_tags)
    for key in a.remove_tags:
        tags.pop(key, None)
    payload: dict[str, Any] = {}
    if a.description is not None and a.description != m.description:
        payload["description"] = a.description
    if tags != m.tags:
        payload["tags"] = tags
    return Decision([("RegisteredModelUpdated", payload)] if payload else [])


def delete_model(m: ModelAggregate, a: ModelArgs, who: Principal) -> Decision:
    m.require_open()
    serving = [v.version for v in m.versions.values() if v.stage == "Production" and not v.deleted]
    if serving:
        raise Conflict(f"registered model {a.name!r} has version(s) {serving} in Production: "
                       "archive them first")
    return Decision([("RegisteredModelDeleted", {})])


def create_version(m: ModelAggregate, a: CreateVersion, who: Principal,
                   run: RunFacts | None) -> Decision:
    events: Payloads = []
    if not m.exists and a.create_model:
        events.append(("RegisteredModelCreated", {"name": a.name}))
    else:
        m.require_open()
    payload: dict[str, Any] = {"version": m.last_version + 1, "description": a.description,
                               "source_uri": a.source_uri}
    if a.run_id:
        if run is None or not run.exists:
            raise NotFound(f"no run {a.run_id!r}: log the run (and flush) before registering it")
        payload["run_id"] = a.run_id
        if a.artifact:
            name, digest = _artifact_of(run, a.artifact)
            payload.update(artifact_name=name, artifact_digest=digest)
    events.append(("ModelVersionCreated", payload))
    return Decision(events, {"version": payload["version"]})


def _artifact_of(run: RunFacts, wanted: str) -> tuple[str, str]:
    for name, (digest, _uri) in run.artifacts.items():
        if wanted in (name, digest):
            return name, digest
    known = ", ".join(sorted(run.artifacts)) or "none"
    raise NotFound(f"run {run.run_id!r} logged no artifact {wanted!r} (it logged: {known})")


def delete_version(m: ModelAggregate, a: VersionArgs, who: Principal) -> Decision:
    m.require_open()
    version = m.version(a.version)
    if version.stage == "Production":
        raise Conflict(f"version {a.version} of {a.name!r} is in Production: archive it first")
    events: Payloads = [("ModelAliasDeleted", {"alias": alias})
                        for alias, n in sorted(m.aliases.items()) if n == a.version]
    events.append(("ModelVersionDeleted", {"version": a.version}))
    return Decision(events)


def _move(m: ModelAggregate, version: VersionState, stage: str, comment: str, cause: str,
          request_id: str | None = None) -> Payloads:
    """The stage change, plus what the model's rules make of it."""
    events: Payloads = [("ModelVersionStageChanged", {
        "version": version.version, "stage": stage, "from_stage": version.stage,
        "comment": comment, "cause": cause, "request_id": request_id})]
    if stage == "Production" and m.single_production:
        for other in sorted(m.versions.values(), key=lambda v: v.version):
            if other.version != version.version and other.stage == "Production" and not other.deleted:
                events.append(("ModelVersionStageChanged", {
                    "version": other.version, "stage": "Archived", "from_stage": "Production",
                    "cause": "rule",
                    "comment": f"archived: version {version.version} moved to Production "
                               "(at most one Production version)"}))
    return events


def set_stage(m: ModelAggregate, a: SetStage, who: Principal) -> Decision:
    m.require_open()
    version = m.version(a.version)
    if version.stage == a.stage:
        return Decision([], {"version": a.version, "stage": a.stage})  # already there: a no-op
    if a.stage in m.approval_required:
        raise Forbidden(f"moving a version of {a.name!r} to {a.stage} needs an approved request: "
                        "request the transition and have someone else approve it")
    return Decision(_move(m, version, a.stage, a.comment, "direct"),
                    {"version": a.version, "stage": a.stage})


def request_transition(m: ModelAggregate, a: RequestTransition, who: Principal) -> Decision:
    m.require_open()
    version = m.version(a.version)
    if version.stage == a.stage:
        raise Conflict(f"version {a.version} of {a.name!r} is already in {a.stage}")
    pending = [r for r in m.requests.values() if r.version == a.version and r.status == "pending"]
    if pending:
        raise Conflict(f"version {a.version} of {a.name!r} already has a pending request "
                       f"({pending[0].request_id} to {pending[0].to_stage}): decide it first")
    request_id = uuid7()
    return Decision([("StageTransitionRequested", {
        "request_id": request_id, "version": a.version, "from_stage": version.stage,
        "to_stage": a.stage, "comment": a.comment})], {"request_id": request_id})


def _pending(m: ModelAggregate, request_id: str) -> RequestState:
    request = m.requests.get(request_id)
    if request is None:
        raise NotFound(f"registered model {m.name!r} has no transition request {request_id!r}")
    if request.status != "pending":
        raise Conflict(f"request {request_id} was already {request.status} by {request.decided_by}")
    return request


def approve_transition(m: ModelAggregate, a: DecideTransition, who: Principal) -> Decision:
    m.require_open()
    request = _pending(m, a.request_id)
    if request.requested_by == who.name:
        raise Forbidden(f"{who.name} requested this transition and cannot approve it: "
                        "someone else must")
    version = m.version(request.version)
    if version.stage == request.to_stage:
        raise Conflict(f"version {request.version} is already in {request.to_stage}")
    events: Payloads = [("StageTransitionApproved", {
        "request_id": request.request_id, "version": request.version, "comment": a.comment})]
    events += _move(m, version, request.to_stage, a.comment or request.comment, "approval",
                    request.request_id)
    return Decision(events, {"request_id": request.request_id, "version": request.version,
                             "stage": request.to_stage})


def reject_transition(m: ModelAggregate, a: DecideTransition, who: Principal) -> Decision:
    m.require_open()
    request = _pending(m, a.request_id)  # the requester may reject (withdraw) their own
    return Decision([("StageTransitionRejected", {
        "request_id": request.request_id, "version": request.version, "comment": a.comment})],
        {"request_id": request.request_id, "version": request.version})


def set_alias(m: ModelAggregate, a: SetAlias, who: Principal) -> Decision:
    m.require_open()
    m.version(a.version)
    if _DIGITS.match(a.alias):
        raise CommandRefused(f"alias {a.alias!r} would read as a version number")
    if m.aliases.get(a.alias) == a.version:
        return Decision([], {"alias": a.alias, "version": a.version})
    return Decision([("ModelAliasSet", {"alias": a.alias, "version": a.version})],
                    {"alias": a.alias, "version": a.version})


def delete_alias(m: ModelAggregate, a: DeleteAlias, who: Principal) -> Decision:
    m.require_open()
    if a.alias not in m.aliases:
        raise NotFound(f"registered model {a.name!r} has no alias {a.alias!r}")
    return Decision([("ModelAliasDeleted", {"alias": a.alias})])


def set_lock(m: ModelAggregate, a: SetLock, who: Principal) -> Decision:
    m.require_live()  # the one change a closed model accepts
    if ADMIN_ROLE not in who.roles:
        raise Forbidden(f"changing a model's lock needs the {ADMIN_ROLE} role")
    if (m.lock, m.lock_role) == (a.level, a.role):
        return Decision([])
    return Decision([("ModelLockChanged", {"level": a.level, "role": a.role,
                                           "comment": a.comment})])


def set_rules(m: ModelAggregate, a: SetRules, who: Principal) -> Decision:
    m.require_open()
    if ADMIN_ROLE not in who.roles:
        raise Forbidden(f"changing a model's rules needs the {ADMIN_ROLE} role")
    wanted = tuple(dict.fromkeys(a.approval_required))
    if (m.single_production, m.approval_required) == (a.single_production, wanted):
        return Decision([])
    return Decision([("ModelRuleSet", {"single_production": a.single_production,
                                       "approval_required": list(wanted)})])


def version_facts(m: ModelAggregate, number: int) -> Mapping[str, Any] | None:
    """One live version as a plain mapping (for commands on other aggregates)."""
    v = m.versions.get(number)
    return None if v is None or v.deleted or not m.live else asdict(v)
