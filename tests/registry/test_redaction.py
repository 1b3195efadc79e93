"""Erasure by crypto-shredding, on both stacks: values marked sensitive never reach the log in
clear; a redaction destroys the run's keys, after which the values appear nowhere (read
model, answers, time travel, a rebuild) while the audit chain still verifies and records
who redacted what, when and why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import inspect, text

from modeldb.event_schema import RecordedEvent, new_event, to_wire, uuid7
from modeldb.infra.report import audit_report
from modeldb.infra.system import System
from modeldb.writer.registry import CommandRefused
from tests.helpers import run_events, wire
from tests.registry.conftest import ADMIN, ALICE, Registry

EMAIL, OWNER, SSN = "alice@example.com", "Alice Smith", 123456789
RUN_FIELDS = "params { key value } tags { key value }"


async def log_records(system: System) -> AsyncIterator[RecordedEvent]:
    if system.settings.embedded:
        position = 0
        while records := await system.log.read(position, 1000):  # type: ignore[attr-defined]
            for record in records:
                yield record
            position = records[-1].position
    else:
        async for record in system.log.records():  # type: ignore[attr-defined]
            yield record


async def log_bytes(system: System) -> bytes:
    return b"\n".join([orjson.dumps(r.raw) async for r in log_records(system)])


async def read_db_dump(system: System) -> str:
    """Every row of every table of the read database, as text."""
    async with system.engine.connect() as conn:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        rows = [str(row) for name in names
                for row in await conn.execute(text(f'SELECT * FROM "{name}"'))]
    assert len(rows) > 20
    return "\n".join(rows)


async def log_personal_run(registry: Registry) -> str:
    run = uuid7()
    events = [*run_events(run, params={"lr": 0.1}, metrics={"loss": [1.0, 0.5]}),
              new_event("ParamsLogged", run, {"params": {"email": EMAIL, "ssn": SSN}},
                        sensitive=("params.email", "params.ssn")),
              new_event("TagsSet", run, {"tags": {"owner": OWNER, "team": "vision"}},
                        sensitive=("tags.owner",))]
    await registry.system.writer.ingest(wire(events), "alice")
    await registry.system.catch_up()
    return run


async def run_values(registry: Registry, run: str) -> dict[str, Any]:
    answer = await registry.gql(f"query($id: ID!) {{ run(id: $id) {{ {RUN_FIELDS} }} }}", id=run)
    assert answer.errors is None, answer.errors
    got = answer.data["run"]
    return {**{p["key"]: p["value"] for p in got["params"]}, **{t["key"]: t["value"] for t in got["tags"]}}


async def test_sensitive_values_are_sealed_in_the_log_and_readable_until_redacted(
        registry: Registry) -> None:
    run = await log_personal_run(registry)
    logged = await log_bytes(registry.system)
    for secret in (EMAIL, OWNER, str(SSN)):
        assert secret.encode() not in logged  # Kafka or SQLite: only ciphertext
    assert b'"sensitive":["params.email","params.ssn"]' in logged
    values = await run_values(registry, run)
    assert (values["email"], values["ssn"], values["owner"]) == (EMAIL, str(SSN), OWNER)
    assert (values["lr"], values["team"]) == ("0.1", "vision")  # unmarked values untouched
    history = await registry.gql('query($id: ID!) { history(id: $id) { type payload } }', id=f"run:{run}")
    assert {"email": EMAIL, "ssn": SSN} in [e["payload"].get("params") for e in history.data["history"]]


async def test_a_redaction_erases_everywhere_and_verify_still_passes(registry: Registry) -> None:
    system = registry.system
    run = await log_personal_run(registry)
    with pytest.raises(CommandRefused) as refused:
        await registry.run("redact_run", ALICE, run_id=run, reason="asked")
    assert refused.value.code == "forbidden"

    done = await registry.run("redact_run", ADMIN, run_id=run, reason="GDPR erasure request #42")
    assert done.result == {"redacted": ["params.email", "params.ssn", "tags.owner"], "keys_destroyed": 1}
    await system.catch_up()

    values = await run_values(registry, run)
    for key in ("email", "ssn", "owner"):
        assert values[key].startswith("[redacted sha256:"), values
    assert (values["lr"], values["team"]) == ("0.1", "vision")
    found = await registry.gql('{ runs(filter: "params.email = \'alice@example.com\'") { totalCount } }')
    assert found.data["runs"]["totalCount"] == 0

    # Nowhere in the read model (audit store included), the answers or a rebuilt projection.
    history = await registry.gql('query($id: ID!) { history(id: $id) { type actor payload } }',
                                 id=f"run:{run}")
    as_of = await registry.gql(f'query($id: ID!) {{ runAsOf(id: $id, at: "2100-01-01T00:00:00Z") '
                               f'{{ {RUN_FIELDS} }} }}', id=run)
    await system.runtimes["sql"].rebuild()
    rebuilt = await run_values(registry, run)
    report = await audit_report(system, f"run:{run}", "md")
    everything = "\n".join([await read_db_dump(system), orjson.dumps(history.data).decode(),
                            orjson.dumps(as_of.data).decode(), orjson.dumps(rebuilt).decode(), report])
    for secret in (EMAIL, OWNER, str(SSN)):
        assert secret not in everything
    assert rebuilt == values  # a replay agrees with the live projection

    # The redaction itself is on record: by whom, why, and which digests stand in.
    redaction = history.data["history"][-1]
    assert (redaction["type"], redaction["actor"]) == ("ValuesRedacted", "root")
    assert redaction["payload"]["reason"] == "GDPR erasure request #42"
    assert set(redaction["payload"]["redacted"]) == {"params.email", "params.ssn", "tags.owner"}
    assert "ValuesRedacted" in report and "GDPR erasure request #42" in report

    await system.catch_up(["audit"])
    verdict = await system.audit.verify(log_records(system), dense=system.settings.embedded)
    assert verdict.ok, str(verdict)

    again = await registry.run("redact_run", ADMIN, run_id=run, reason="twice")
    assert again.result == {"redacted": [], "keys_destroyed": 0} and not again.events


async def test_values_marked_after_a_redaction_get_a_new_key(registry: Registry) -> None:
    run = await log_personal_run(registry)
    await registry.run("redact_run", ADMIN, run_id=run, reason="erase")
    later = new_event("TagsSet", run, {"tags": {"contact": "bob@example.com"}}, sensitive=("tags.contact",))
    await registry.system.writer.ingest([to_wire(later)], "alice")
    await registry.system.catch_up()
    values = await run_values(registry, run)
    assert values["contact"] == "bob@example.com" and values["owner"].startswith("[redacted")


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
async def test_bad_sensitive_marks_are_refused_by_name(registry: Registry) -> None:
    from modeldb.event_schema import InvalidBatch

    run = uuid7()
    good = to_wire(new_event("ParamsLogged", run, {"params": {"a": 1}}))
    cases = {
        "names no value": {**good, "sensitive": ["params.b"]},
        "cannot carry sensitive values": {**to_wire(new_event("RunFinished", run, {
            "end_time": "2026-01-01T00:00:00Z"})), "sensitive": ["status"]},
        "must be a list": {**good, "sensitive": "params.a"},
    }
    for expected, event in cases.items():
        with pytest.raises(InvalidBatch) as raised:
            await registry.system.writer.ingest([event], "alice")
        assert expected in str(raised.value)
    redaction = to_wire(new_event("ValuesRedacted", run, {"reason": "x", "redacted": {}, "key_ids": []}))
    with pytest.raises(InvalidBatch, match="send it as a registry command"):
        await registry.system.writer.ingest([redaction], "alice", governed=False)
