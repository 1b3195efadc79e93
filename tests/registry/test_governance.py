"""Registry commands on a System (both stacks): the transition flow, approvals, locks, the
one-Production rule, aliases, version numbers and optimistic concurrency."""

from __future__ import annotations

import asyncio

import pytest

from modeldb.writer.registry import CommandRefused
from tests.helpers import DIGEST_B
from tests.registry.conftest import ADMIN, ALICE, BOB, Registry


async def refused(coro, code: str, text: str = "") -> str:
    with pytest.raises(CommandRefused) as raised:
        await coro
    assert raised.value.code == code, raised.value.message
    assert text in raised.value.message
    return raised.value.message


async def test_the_full_transition_flow(registry: Registry) -> None:
    run = await registry.trained_run()
    created = await registry.run("create_version", name="clf", run_id=run, artifact="model.pkl",
                                 create_model=True, description="first")
    assert created.result == {"version": 1}
    assert [e["type"] for e in created.events] == ["RegisteredModelCreated", "ModelVersionCreated"]
    (v1,) = created.state["versions"]
    assert (v1["run_id"], v1["artifact_digest"], v1["stage"]) == (run, DIGEST_B, "None")

    # A direct change, then a request that the requester cannot approve, approved by another.
    await registry.run("set_stage", name="clf", version=1, stage="Staging", comment="smoke ok")
    request = await registry.run("request_transition", name="clf", version=1, stage="Production",
                                 comment="beats the baseline")
    request_id = request.result["request_id"]
    await refused(registry.run("approve_transition", ALICE, name="clf", request_id=request_id),
                  "forbidden", "cannot approve")
    await refused(registry.run("request_transition", name="clf", version=1, stage="Archived"),
                  "conflict", "pending request")
    approved = await registry.run("approve_transition", BOB, name="clf", request_id=request_id,
                                  comment="lgtm")
    assert [e["type"] for e in approved.events] == ["StageTransitionApproved",
                                                    "ModelVersionStageChanged"]
    assert approved.state["versions"][0]["stage"] == "Production"
    await refused(registry.run("approve_transition", BOB, name="clf", request_id=request_id),
                  "conflict", "already approved")

    # A rejected request changes nothing but the request.
    second = await registry.run("request_transition", name="clf", version=1, stage="Archived")
    rejected = await registry.run("reject_transition", BOB, name="clf",
                                  request_id=second.result["request_id"], comment="not yet")
    assert rejected.state["versions"][0]["stage"] == "Production"
    assert rejected.state["pending_requests"] == []

    data = (await registry.gql("""{ modelVersion(name: "clf", version: "1") {
        stage run { id } artifact { digest }
        transitions { fromStage toStage actor requestedBy approvedBy cause comment }
        requests { status requestedBy decidedBy decisionComment }
        provenance(depth: 2) { nodes { kind } } } }""")).data["modelVersion"]
    assert data["stage"] == "Production" and data["run"]["id"] == run
    assert data["transitions"] == [
        {"fromStage": "None", "toStage": "Staging", "actor": "alice", "requestedBy": None,
         "approvedBy": None, "cause": "direct", "comment": "smoke ok"},
        {"fromStage": "Staging", "toStage": "Production", "actor": "bob", "requestedBy": "alice",
         "approvedBy": "bob", "cause": "approval", "comment": "lgtm"},
    ]
    assert [(r["status"], r["decidedBy"]) for r in data["requests"]] == [
        ("approved", "bob"), ("rejected", "bob")]
    assert {"Run", "Artifact", "RegisteredModel"} <= {n["kind"] for n in data["provenance"]["nodes"]}


async def test_approval_rules_and_the_one_production_rule(registry: Registry) -> None:
    for _ in range(3):
        await registry.run("create_version", name="m", source_uri="s3://bucket/m",
                           create_model=True)
    await refused(registry.run("set_rules", ALICE, name="m", single_production=True),
                  "forbidden", "registry-admin")
    await registry.run("set_rules", ADMIN, name="m", single_production=True,
                       approval_required=["Production"])
    await refused(registry.run("set_stage", name="m", version=1, stage="Production"),
                  "forbidden", "approved request")
    for version in (1, 2):
        request = await registry.run("request_transition", name="m", version=version,
                                     stage="Production")
        done = await registry.run("approve_transition", BOB, name="m",
                                  request_id=request.result["request_id"])
    # Promoting v2 archived v1 in the same command (one atomic append).
    assert [(e["type"]) for e in done.events] == ["StageTransitionApproved",
                                                  "ModelVersionStageChanged",
                                                  "ModelVersionStageChanged"]
    stages = {v["version"]: v["stage"] for v in done.state["versions"]}
    assert stages == {1: "Archived", 2: "Production", 3: "None"}
    data = (await registry.gql("""{ registeredModel(name: "m") { rules { singleProduction
        approvalRequired } transitions { version toStage cause } } }""")).data["registeredModel"]
    assert data["rules"] == {"singleProduction": True, "approvalRequired": ["Production"]}
    assert {"version": "1", "toStage": "Archived", "cause": "rule"} in data["transitions"]


async def test_locks_refuse_changes_and_redact_content(registry: Registry) -> None:
    await registry.run("create_model", name="secret", description="fraud model v3",
                       tags={"owner": "risk"})
    await registry.run("create_version", name="secret", source_uri="s3://x", description="top")
    await refused(registry.run("set_lock", ALICE, name="secret", level="closed"), "forbidden")
    await registry.run("set_lock", ADMIN, name="secret", level="closed", comment="under review")
    await refused(registry.run("set_alias", name="secret", alias="champion", version=1),
                  "locked", "closed")
    await refused(registry.run("set_stage", name="secret", version=1, stage="Staging"), "locked")
    await registry.run("set_lock", ADMIN, name="secret", level="redact", role="risk-team")

    query = """{ registeredModel(name: "secret") { description redacted tags { key }
        lock { level role } modelVersions { description sourceUri redacted } } }"""
    outsider = (await registry.gql(query, who=BOB)).data["registeredModel"]
    assert outsider == {"description": "[redacted]", "redacted": True, "tags": [],
                        "lock": {"level": "redact", "role": "risk-team"},
                        "modelVersions": [{"description": "[redacted]", "sourceUri": None,
                                           "redacted": True}]}
    from modeldb.writer.registry import Principal

    insider = (await registry.gql(query, who=Principal("eve", frozenset({"risk-team"})))
               ).data["registeredModel"]
    assert insider["description"] == "fraud model v3" and insider["tags"] == [{"key": "owner"}]
    history = (await registry.gql('{ history(id: "registeredmodel:secret") { type payload } }',
                                  who=BOB)).data["history"]
    assert history[0]["payload"] == {"redacted": True}

    await registry.run("set_lock", ADMIN, name="secret", level="open")
    await registry.run("set_alias", name="secret", alias="champion", version=1)


async def test_versions_aliases_and_deletes(registry: Registry) -> None:
    run = await registry.trained_run()
    await refused(registry.run("create_version", name="x", run_id=run), "not_found",
                  "no registered model")
    await refused(registry.run("create_version", name="x", run_id="nope", create_model=True),
                  "not_found", "no run")
    await refused(registry.run("create_version", name="x", run_id=run, artifact="other.pkl",
                               create_model=True), "not_found", "model.pkl")
    await refused(registry.run("create_version", name="x"), "invalid", "source_uri")
    for _ in range(3):
        await registry.run("create_version", name="x", run_id=run, artifact=DIGEST_B,
                           create_model=True)
    await registry.run("set_alias", name="x", alias="champion", version=2)
    moved = await registry.run("set_alias", name="x", alias="champion", version=3)
    assert moved.state["aliases"] == {"champion": 3}
    again = await registry.run("set_alias", name="x", alias="champion", version=3)
    assert again.events == []  # already so: nothing appended
    await refused(registry.run("set_alias", name="x", alias="7", version=3), "invalid")
    deleted = await registry.run("delete_version", name="x", version=3)
    assert [e["type"] for e in deleted.events] == ["ModelAliasDeleted", "ModelVersionDeleted"]
    nxt = await registry.run("create_version", name="x", source_uri="s3://y")
    assert nxt.result == {"version": 4}  # a number is never reused
    await registry.run("set_stage", name="x", version=4, stage="Production")
    await refused(registry.run("delete_model", name="x"), "conflict", "Production")
    await refused(registry.run("create_model", name="x"), "conflict", "already exists")
    data = (await registry.gql("""{ modelVersion(name: "x", version: "4") { stage }
        byAlias: modelVersion(name: "x", version: "champion") { version } }""")).data
    assert data == {"modelVersion": {"stage": "Production"}, "byAlias": None}


async def test_expected_revision_and_racing_commands(registry: Registry) -> None:
    created = await registry.run("create_version", name="r", source_uri="s3://r",
                                 create_model=True)
    revision = created.revision
    assert revision == 2
    # Two moves based on the same revision: exactly one lands.
    outcomes = await asyncio.gather(
        registry.run("set_stage", expected=revision, name="r", version=1, stage="Staging"),
        registry.run("set_stage", expected=revision, name="r", version=1, stage="Production"),
        return_exceptions=True)
    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all(o.code == "conflict" for o in outcomes if isinstance(o, CommandRefused))
    # Many registrations at once: every one gets its own number, none is lost.
    results = await asyncio.gather(*(registry.run("create_version", name="r", source_uri=f"s3://{i}")
                                     for i in range(25)))
    assert sorted(r.result["version"] for r in results) == list(range(2, 27))
    data = (await registry.gql('{ registeredModel(name: "r") { revision versions { version } } }')
            ).data["registeredModel"]
    assert data["revision"] == revision + 1 + 25 and len(data["versions"]) == 26


async def test_graphql_mutations_return_the_resulting_state(registry: Registry) -> None:
    run = await registry.trained_run()
    created = await registry.gql("""mutation($run: String!) {
        createModelVersion(name: "g", runId: $run, artifact: "model.pkl", createModel: true) {
          revision events { type } modelVersion { version stage artifact { name } } } }""",
                                 run=run)
    assert not created.errors, created.errors
    body = created.data["createModelVersion"]
    assert body["modelVersion"] == {"version": "1", "stage": "None",
                                    "artifact": {"name": "model.pkl"}}
    request = (await registry.gql("""mutation { requestStageTransition(name: "g", version: "1",
        stage: "Staging", comment: "please") { request { id status requestedBy } } }""")
               ).data["requestStageTransition"]["request"]
    assert request["status"] == "pending" and request["requestedBy"] == "alice"
    own = await registry.gql("""mutation($id: String!) { approveStageTransition(name: "g",
        requestId: $id) { revision } }""", id=request["id"])
    assert own.errors and own.errors[0].extensions == {"code": "FORBIDDEN"}
    approved = await registry.gql("""mutation($id: String!) { approveStageTransition(name: "g",
        requestId: $id, comment: "ok") { request { status decidedBy }
        modelVersion { stage transitions { approvedBy requestedBy } } } }""", who=BOB,
                                  id=request["id"])
    body = approved.data["approveStageTransition"]
    assert body["request"] == {"status": "approved", "decidedBy": "bob"}
    assert body["modelVersion"]["stage"] == "Staging"
    assert body["modelVersion"]["transitions"] == [{"approvedBy": "bob", "requestedBy": "alice"}]
    stale = await registry.gql("""mutation { setModelAlias(name: "g", alias: "champion",
        version: "1", expectedRevision: 1) { revision } }""")
    assert stale.errors[0].extensions == {"code": "CONFLICT"}


async def test_model_version_as_of_a_time(registry: Registry) -> None:
    await registry.run("create_version", name="t", source_uri="s3://t", create_model=True)
    await registry.run("set_stage", name="t", version=1, stage="Staging")
    await registry.run("set_alias", name="t", alias="candidate", version=1)
    await registry.system.catch_up()
    history = (await registry.gql('{ history(id: "registeredmodel:t") { recordedAt } }')
               ).data["history"]
    then = history[-1]["recordedAt"]  # after the alias, before Production
    await registry.run("set_stage", name="t", version=1, stage="Production")
    await registry.run("delete_alias", name="t", alias="candidate")
    data = (await registry.gql("""query($at: DateTime!) {
        now: modelVersion(name: "t", version: "1") { stage aliases }
        then: modelVersionAsOf(name: "t", version: "1", at: $at) { stage aliases
          transitions { toStage } } }""", at=then)).data
    assert data["now"] == {"stage": "Production", "aliases": []}
    assert data["then"] == {"stage": "Staging", "aliases": ["candidate"],
                            "transitions": [{"toStage": "Staging"}]}


async def test_deployments_are_a_record_of_where_and_since_when(registry: Registry) -> None:
    await registry.run("create_version", name="d", source_uri="s3://d", create_model=True)
    await refused(registry.run("record_deployment", model="d", version=1, environment="prod"),
                  "not_found", "register it first")
    await registry.run("register_environment", name="prod", stage="production",
                       location="eu-west-1")
    await refused(registry.run("record_deployment", model="d", version=9, environment="prod"),
                  "not_found", "no version 9")
    recorded = await registry.run("record_deployment", deployment_id="dep-1", model="d",
                                  version=1, environment="prod", endpoint="https://d.example")
    assert recorded.result == {"deployment_id": "dep-1"}
    for status in ("serving", "failed", "serving"):
        await registry.run("set_deployment_status", deployment_id="dep-1", status=status)
    await registry.run("set_deployment_status", deployment_id="dep-1", status="retired")
    await refused(registry.run("set_deployment_status", deployment_id="dep-1", status="serving"),
                  "conflict", "retired")
    await registry.run("record_deployment", deployment_id="dep-2", model="d", version=1,
                       environment="prod", status="serving")
    data = (await registry.gql("""{ modelVersion(name: "d", version: "1") { deployments {
        id status since environment { name location } history { status } } }
        lineage(id: "deployment:dep-2") { nodes { id } } }""")).data
    deployments = {d["id"]: d for d in data["modelVersion"]["deployments"]}
    assert deployments["dep-1"]["status"] == "retired" and deployments["dep-1"]["since"] is None
    assert [h["status"] for h in deployments["dep-1"]["history"]] == [
        "pending", "serving", "failed", "serving", "retired"]
    assert deployments["dep-2"]["since"] is not None
    assert deployments["dep-2"]["environment"] == {"name": "prod", "location": "eu-west-1"}
    assert {"deployment:dep-2", "modelversion:d/1", "environment:prod"} <= {
        n["id"] for n in data["lineage"]["nodes"]}


async def test_a_v1_stage_change_in_the_log_still_replays(registry: Registry) -> None:
    """Logs written before schema version 2 keep working: the event is upcast on read."""
    from modeldb.event_schema import new_event, to_wire, uuid7

    created = to_wire(new_event("ModelVersionCreated", "old", {"version": 1, "source_uri": "s3://o"}))
    v1 = {"event_id": uuid7(), "type": "ModelVersionStageChanged", "schema_version": 1,
          "aggregate": {"kind": "model", "id": "old"}, "occurred_at": "2024-01-01T00:00:00+00:00",
          "source": "sdk", "payload": {"version": 1, "stage": "Staging", "comment": "legacy"}}
    await registry.system.writer.ingest([created, v1], "legacy-tool")
    moved = await registry.run("set_stage", name="old", version=1, stage="Production")
    assert moved.state["versions"][0]["stage"] == "Production"
    data = (await registry.gql("""{ modelVersion(name: "old", version: "1") {
        transitions { fromStage toStage comment cause } } }""")).data["modelVersion"]
    assert data["transitions"] == [
        {"fromStage": None, "toStage": "Staging", "comment": "legacy", "cause": "direct"},
        {"fromStage": "Staging", "toStage": "Production", "comment": "", "cause": "direct"}]
    history = await registry.system.audit.history("old", kind="model")
    assert history[1]["schema_version"] == 1  # the log keeps what was sent
