"""Registry commands: one path from every caller (HTTP, GraphQL mutations, the embedded SDK)
to the log.

    read the aggregate's events → fold them into its state → decide (validate, make events)
    → stamp them like any ingested event → append only if the aggregate is still at the
    version it was read at

The version of an aggregate is its number of events. A caller may pass the version it
based its decision on (`expected_revision`): if the aggregate moved on, the command is
refused with a conflict. Without it the service re-reads and decides again when another
writer got in first, so a command is always judged against the state it lands on — two
concurrent registrations get different version numbers, two racing moves of one version
cannot both succeed.

Where the log cannot append conditionally (Kafka), `ProjectedAggregateStore` reads an
aggregate from a projection that has caught up with the log and serialises appends per
aggregate inside this process: correct as long as registry commands reach one writer
process (the SQLite log needs no such care: its check and append share a transaction).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from modeldb.event_schema import Aggregate, Event, RecordedEvent, decode, new_event, to_wire
from modeldb.writer import deployments as dep
from modeldb.writer import redaction
from modeldb.writer import registry as reg
from modeldb.writer.log import AggregateStore, ConcurrencyConflict, EventLog
from modeldb.writer.registry import CommandRefused, Conflict, Decision, Principal
from modeldb.writer.service import Writer

FOLDS: dict[str, Callable[[str, list[Event]], Any]] = {
    "model": reg.ModelAggregate.fold,
    "run": reg.RunFacts.fold,
    "environment": dep.EnvironmentState.fold,
    "deployment": dep.DeploymentState.fold,
    "webhook": dep.WebhookState.fold,
}
Reads = dict[Aggregate, Any]  # the folded states of the aggregates a command looks at


@dataclass(frozen=True)
class Command:
    name: str
    args: type[reg.Args]
    kind: str  # the kind of the aggregate it writes
    target: Callable[[Any], str]  # its id, from the arguments
    decide: Callable[[Any, Any, Principal, Reads, CommandService], Decision]
    reads: Callable[[Any], list[Aggregate]] = field(default=lambda _a: [])
    help: str = ""
    # What must happen once the command's events are in the log (or were already there):
    # its answer is merged into the result.
    after: Callable[[Any, CommandService], Awaitable[dict[str, Any]]] | None = None


def _by_name(a: Any) -> str:
    return str(a.name)


def _plain(fn: Callable[[Any, Any, Principal], Decision]) -> Callable[..., Decision]:
    return lambda state, a, who, _reads, _service: fn(state, a, who)


def _run_of(a: reg.CreateVersion) -> list[Aggregate]:
    return [Aggregate("run", a.run_id)] if a.run_id else []


def _deployment_reads(a: dep.RecordDeployment) -> list[Aggregate]:
    return [Aggregate("model", a.model), Aggregate("environment", a.environment)]


def _record_deployment(d: Any, a: dep.RecordDeployment, who: Principal, reads: Reads,
                       _s: CommandService) -> Decision:
    model = reads[Aggregate("model", a.model)]
    return dep.record_deployment(d, a, who, reg.version_facts(model, a.version),
                                 reads[Aggregate("environment", a.environment)])


def _register_webhook(w: Any, a: dep.RegisterWebhook, who: Principal, _r: Reads,
                      service: CommandService) -> Decision:
    if service.secret_for is None:
        raise CommandRefused("webhooks are delivered by a ModelDB server: register them there")
    return dep.register_webhook(w, a, who, service.secret_for)


COMMANDS: dict[str, Command] = {c.name: c for c in [
    Command("create_model", reg.CreateModel, "model", _by_name, _plain(reg.create_model),
            help="register a model name, with a description and tags"),
    Command("update_model", reg.UpdateModel, "model", _by_name, _plain(reg.update_model),
            help="change a model's description or tags"),
    Command("delete_model", reg.ModelArgs, "model", _by_name, _plain(reg.delete_model),
            help="delete a model (soft; its name is not reused)"),
    Command("create_version", reg.CreateVersion, "model", _by_name,
            lambda m, a, who, reads, _s: reg.create_version(
                m, a, who, reads.get(Aggregate("run", a.run_id or ""))),
            reads=_run_of, help="a new version from a run's artifact or from a source_uri"),
    Command("delete_version", reg.VersionArgs, "model", _by_name, _plain(reg.delete_version),
            help="delete a version (and the aliases pointing at it)"),
    Command("set_stage", reg.SetStage, "model", _by_name, _plain(reg.set_stage),
            help="move a version to a stage directly"),
    Command("request_transition", reg.RequestTransition, "model", _by_name,
            _plain(reg.request_transition), help="ask for a version to move to a stage"),
    Command("approve_transition", reg.DecideTransition, "model", _by_name,
            _plain(reg.approve_transition),
            help="approve someone else's request; the version moves in the same command"),
    Command("reject_transition", reg.DecideTransition, "model", _by_name,
            _plain(reg.reject_transition), help="reject (or withdraw) a request"),
    Command("set_alias", reg.SetAlias, "model", _by_name, _plain(reg.set_alias),
            help="point an alias (e.g. champion) at a version"),
    Command("delete_alias", reg.DeleteAlias, "model", _by_name, _plain(reg.delete_alias)),
    Command("set_lock", reg.SetLock, "model", _by_name, _plain(reg.set_lock),
            help=f"open, closed or redact (needs the {reg.ADMIN_ROLE} role)"),
    Command("set_rules", reg.SetRules, "model", _by_name, _plain(reg.set_rules),
            help=f"single_production, approval_required (needs the {reg.ADMIN_ROLE} role)"),
    Command("register_environment", dep.RegisterEnvironment, "environment", _by_name,
            _plain(dep.register_environment), help="an environment models are deployed into"),
    Command("record_deployment", dep.RecordDeployment, "deployment",
            lambda a: a.deployment_id, _record_deployment, reads=_deployment_reads,
            help="a deploying system reports a version deployed into an environment"),
    Command("set_deployment_status", dep.SetDeploymentStatus, "deployment",
            lambda a: a.deployment_id, _plain(dep.set_deployment_status),
            help="pending, serving, failed or retired"),
    Command("register_webhook", dep.RegisterWebhook, "webhook", lambda a: a.webhook_id,
            _register_webhook, help="POST registry events to a URL, signed (answers the secret)"),
    Command("delete_webhook", dep.WebhookArgs, "webhook", lambda a: a.webhook_id,
            _plain(dep.delete_webhook)),
    Command("redact_run", redaction.RedactRun, "run", lambda a: a.run_id, redaction.redact_run,
            after=redaction.destroy_keys,
            help=f"erase a run's sensitive values: destroy its data keys (needs {reg.ADMIN_ROLE})"),
]}


def describe_commands() -> dict[str, Any]:
    """Every command with what it does and the JSON Schema of its arguments."""
    return {name: {"help": c.help, "aggregate": c.kind, "args": c.args.model_json_schema()}
            for name, c in COMMANDS.items()}


@dataclass
class CommandResult:
    command: str
    aggregate: Aggregate
    revision: int  # the aggregate's version after the command
    positions: list[int]
    events: list[dict[str, Any]]  # as stored
    result: dict[str, Any]
    state: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command,
                "aggregate": {"kind": self.aggregate.kind, "id": self.aggregate.id},
                "revision": self.revision, "positions": self.positions,
                "events": [{"event_id": e["event_id"], "type": e["type"]} for e in self.events],
                "result": self.result, "state": self.state}


def fold(aggregate: Aggregate, records: Sequence[RecordedEvent]) -> Any:
    return FOLDS[aggregate.kind](aggregate.id, [r.event for r in records])


class CommandService:
    def __init__(self, writer: Writer, store: AggregateStore, *,
                 secret_for: Callable[[str], str] | None = None, max_attempts: int = 200):
        self.writer = writer
        self.store = store
        self.secret_for = secret_for
        self.max_attempts = max_attempts

    async def execute(
        self,
        command: str,
        args: Mapping[str, Any],
        principal: Principal,
        *,
        expected_revision: int | None = None,
        source: str = "api",
    ) -> CommandResult:
        spec = COMMANDS.get(command)
        if spec is None:
            raise CommandRefused(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
        try:
            parsed = spec.args.model_validate(dict(args))
        except ValidationError as exc:
            raise CommandRefused(f"{command}: {_errors(exc)}") from None
        aggregate = Aggregate(spec.kind, spec.target(parsed))
        for attempt in range(self.max_attempts):
            records = await self.store.read_aggregate(aggregate)
            revision = len(records)
            if expected_revision is not None and expected_revision != revision:
                raise Conflict(f"{aggregate.kind} {aggregate.id!r} is at revision {revision}, "
                               f"not {expected_revision}: read it again and retry")
            state = fold(aggregate, records)
            reads = {a: fold(a, await self.store.read_aggregate(a)) for a in spec.reads(parsed)}
            decision = spec.decide(state, parsed, principal, reads, self)
            if not decision.events:  # already so: nothing to append
                return CommandResult(command, aggregate, revision, [], [],
                                     await self._after(spec, parsed, decision.result),
                                     state.to_dict() if hasattr(state, "to_dict") else {})
            try:
                wire = [to_wire(new_event(type_, aggregate.id, payload, source=source))
                        for type_, payload in decision.events]
            except ValidationError as exc:
                raise CommandRefused(f"{command}: {_errors(exc)}") from None
            stored = self.writer.prepare(wire, principal.name)
            try:
                positions = await self.store.append_if(aggregate, revision, stored)
            except ConcurrencyConflict:
                if expected_revision is not None:
                    raise Conflict(f"{aggregate.kind} {aggregate.id!r} changed while the command "
                                   "ran: read it again and retry") from None
                await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 25)))
                continue  # someone else got in first: judge the command again on the new state
            state = FOLDS[aggregate.kind](aggregate.id, [r.event for r in records]
                                          + [decode(raw) for raw in stored])
            return CommandResult(command, aggregate, revision + len(stored), positions, stored,
                                 await self._after(spec, parsed, decision.result),
                                 state.to_dict() if hasattr(state, "to_dict") else {})
        raise Conflict(f"{aggregate.kind} {aggregate.id!r} is changing too fast: gave up after "
                       f"{self.max_attempts} attempts")


    async def _after(self, spec: Command, args: Any, result: dict[str, Any]) -> dict[str, Any]:
        return {**result, **await spec.after(args, self)} if spec.after is not None else result


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


class ProjectedAggregateStore(AggregateStore):
    """An aggregate store for logs without conditional appends (Kafka).

    `read` must answer from a projection that has applied everything in the log (the audit
    store, after waiting for it to reach the log's head), so it includes this process's own
    appends. Appends are serialised per aggregate in this process; see the module docstring.
    """

    def __init__(self, log: EventLog,
                 read: Callable[[Aggregate], Awaitable[list[RecordedEvent]]]):
        self._log = log
        self._read = read
        self._locks: dict[Aggregate, asyncio.Lock] = {}

    async def read_aggregate(self, aggregate: Aggregate) -> list[RecordedEvent]:
        return await self._read(aggregate)

    async def append_if(self, aggregate: Aggregate, expected_version: int,
                        events: Sequence[Mapping[str, Any]]) -> list[int]:
        lock = self._locks.setdefault(aggregate, asyncio.Lock())
        async with lock:
            actual = len(await self._read(aggregate))
            if actual != expected_version:
                raise ConcurrencyConflict(aggregate, expected_version, actual)
            return await self._log.append(events)
