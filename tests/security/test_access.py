"""Access control on a real `modeldb serve` in token mode: every HTTP route and every
GraphQL root field x {no token, reader, writer, admin}, driven by the rule tables
(modeldb.infra.guard.ROUTE_RULES, modeldb.query_api.authz.RULES), so a route or field
added without a rule fails here; and the promises behind them: a reader cannot tell a
project they may not read from one that does not exist, ingest checks the event's
project, artifacts download only through something readable, the actor is the token's
user, the SDK and OpenLineage clients authenticate with a token."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modeldb.event_schema import new_event, uuid7
from modeldb.infra.guard import COMMAND_RULES, ROUTE_RULES, RULE_KINDS, flat_routes
from modeldb.infra.security import RANK
from modeldb.infra.settings import Settings
from modeldb.query_api.app import build_schema
from modeldb.query_api.authz import RULES
from tests.helpers import ServerProcess, free_port, run_events, server_env, wire

ROLES = ("none", "reader", "writer", "admin")
SECRET_PROJECT = "secret"


def cli(home: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "modeldb.infra.cli", *args, "--data-dir", str(home)],
                          capture_output=True, text=True, timeout=60,
                          env=server_env({"MODELDB_AUTH": "token"}))
    assert done.returncode == 0, done.stderr
    return done.stdout


def new_token(home: Path, user: str, *extra: str) -> str:
    return cli(home, "token", "create", user, *extra).strip().splitlines()[-1]


@dataclass
class World:
    server: ServerProcess
    tokens: dict[str, str | None]
    run_p: str  # in project p: everyone with a token reads it
    run_secret: str  # in project `secret`: only the admin
    digest_p: str
    digest_secret: str
    home: Path

    def headers(self, role: str) -> dict[str, str]:
        token = self.tokens.get(role)
        return {"authorization": f"Bearer {token}"} if token else {}

    def request(self, role: str, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.server.url}{path}", headers=self.headers(role),
                             timeout=60, **kw)

    def gql(self, role: str, query: str, **variables: Any) -> tuple[int, dict[str, Any]]:
        r = self.request(role, "POST", "/graphql", json={"query": query, "variables": variables})
        return r.status_code, (r.json() if r.headers.get("content-type", "").startswith(
            "application/json") else {})

    def wait(self) -> None:
        r = self.request("admin", "GET", "/api/v1/projections", params={"wait": "true"})
        assert r.status_code == 200, r.text


def _artifact(world_url: str, token: str, content: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    r = httpx.post(f"{world_url}/api/v1/artifacts", content=content, timeout=30,
                   headers={"authorization": f"Bearer {token}", "x-content-digest": digest})
    assert r.status_code == 201, r.text
    return digest


def _run_with_artifact(run: str, project: str, digest: str, name: str) -> list[Any]:
    events = run_events(run, project=project, params={"lr": 0.1}, metrics={"loss": [1.0, 0.5]})
    events.insert(1, new_event("ArtifactLogged", run, {
        "name": name, "digest": digest, "size": 10, "uri": f"modeldb://artifacts/{digest}",
        "kind": "model"}))
    events.insert(2, new_event("RunOutputLogged", run, {"kind": "Artifact", "id": digest,
                                                        "name": name}))
    return events


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("secure") / "home"
    tokens: dict[str, str | None] = {"none": None,
                                     "admin": new_token(home, "root", "--admin"),
                                     "writer": new_token(home, "wendy"),
                                     "reader": new_token(home, "rita")}
    cli(home, "grant", "wendy", "writer", "--project", "p")
    cli(home, "grant", "wendy", "writer", "--model", "*")
    cli(home, "grant", "rita", "reader", "--project", "p")
    cli(home, "grant", "rita", "reader", "--model", "m")
    env = server_env({"MODELDB_AUTH": "token", "MODELDB_HOME": str(home)})
    server = ServerProcess(home, free_port(), env).start()
    try:
        admin = tokens["admin"]
        assert admin
        digest_p = _artifact(server.url, admin, b"model in p")
        digest_secret = _artifact(server.url, admin, b"model in secret")
        run_p, run_secret = uuid7(), uuid7()
        events = [new_event("ProjectCreated", "p", {"name": "p"}),
                  new_event("ProjectCreated", SECRET_PROJECT, {"name": SECRET_PROJECT}),
                  *_run_with_artifact(run_p, "p", digest_p, "model.pkl"),
                  *_run_with_artifact(run_secret, SECRET_PROJECT, digest_secret, "model.pkl")]
        # The secret run also read p's model: downstream lineage of p's run reaches it.
        events.append(new_event("RunInputLogged", run_secret, {"kind": "Artifact", "id": digest_p,
                                                               "name": "base"}))
        r = httpx.post(f"{server.url}/api/v1/events", json=wire(events), timeout=30,
                       headers={"authorization": f"Bearer {admin}"})
        assert r.status_code == 202, r.text
        world = World(server, tokens, run_p, run_secret, digest_p, digest_secret, home)
        world.wait()
        for name in ("m", "hidden", "scratch", "doomed"):
            r = world.request("admin", "POST", "/api/v1/registry/commands",
                              json={"command": "create_model", "args": {"name": name}})
            assert r.status_code == 200, r.text
        r = world.request("admin", "POST", "/api/v1/registry/commands", json={
            "command": "create_version", "args": {"name": "m", "run_id": run_p,
                                                  "artifact": "model.pkl"}})
        assert r.status_code == 200, r.text
        world.wait()
        yield world
    finally:
        server.stop()


# -- every route and every field has a rule ---------------------------------------------------


def app_routes() -> list[tuple[str, str]]:
    from modeldb.infra.server import create_app

    app = create_app(Settings.load(Path(os.environ["MODELDB_HOME"])))
    return sorted({(e.method, e.path) for e in flat_routes(app.router.routes)})


def root_fields() -> list[tuple[str, str]]:
    schema = build_schema()._schema
    return [(t.name, name) for t in (schema.query_type, schema.mutation_type,
                                     schema.subscription_type) if t is not None
            for name in t.fields]


def test_every_route_has_a_rule_and_every_rule_a_route() -> None:
    routes = app_routes()
    missing = [r for r in routes if r not in ROUTE_RULES
               and not (r[0] == "HEAD" and ("GET", r[1]) in ROUTE_RULES)]
    assert not missing, f"routes without an access rule in infra/guard.py ROUTE_RULES: {missing}"
    assert set(ROUTE_RULES.values()) <= RULE_KINDS
    stale = set(ROUTE_RULES) - set(routes)
    assert not stale, f"rules for routes that do not exist: {stale}"


def test_every_graphql_root_field_has_a_rule_and_every_command_too() -> None:
    from modeldb.writer.commands import COMMANDS

    fields = root_fields()
    missing = [f for f in fields if f not in RULES]
    assert not missing, f"GraphQL fields without a rule in query_api/authz.py RULES: {missing}"
    assert not set(RULES) - set(fields), "rules for fields that do not exist"
    assert not set(COMMANDS) - set(COMMAND_RULES), "registry commands without a rule"


# -- HTTP: route x role, from the rules --------------------------------------------------------


def _concrete(path: str, world: World) -> str:
    return (path.replace("{digest}", world.digest_p).replace("{upload_id}", "0" * 32)
            .replace("{name}", "app.js"))


def _body(method: str, path: str, world: World) -> dict[str, Any]:
    if path == "/api/v1/events":
        return {"json": wire(run_events(uuid7(), project="p"))}
    if path == "/api/v1/lineage":
        return {"json": {"eventType": "START", "eventTime": "2026-01-01T12:00:00+00:00",
                         "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "p", "name": "j"},
                         "producer": "https://example.com/test", "inputs": [], "outputs": [],
                         "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json"}}
    if path == "/api/v1/registry/commands" and method == "POST":
        return {"json": {"command": "set_alias", "args": {"name": "scratch", "alias": "x",
                                                          "version": 1}}}
    if path == "/graphql" and method == "POST":
        return {"json": {"query": "{ __typename }"}}
    if path == "/api/v1/artifacts" and method == "POST":
        return {"content": b"x"}
    return {}


# Called for every role but these: the admin's request would start real work (training).
NOT_AS_ADMIN = {("POST", "/api/v1/demo")}


@pytest.mark.parametrize("role", ROLES)
def test_every_http_route_answers_by_its_rule(world: World, role: str) -> None:
    for method, path in app_routes():
        rule = ROUTE_RULES.get((method, path)) or ROUTE_RULES[("GET", path)]
        if method == "WS" or (role == "admin" and (method, path) in NOT_AS_ADMIN):
            continue
        r = world.request(role, method, _concrete(path, world), **_body(method, path, world))
        where = f"{method} {path} as {role} ({rule}): {r.status_code} {r.text[:200]}"
        assert r.status_code < 500, where
        if rule == "public":
            assert r.status_code not in (401, 403), where
        elif role == "none":
            assert r.status_code == 401, where
            assert r.headers["www-authenticate"].startswith("Bearer")
        elif (rule == "admin" and role != "admin") or (
                rule in ("upload", "ingest", "command") and role == "reader"):
            assert r.status_code == 403, where  # the samples write to p / a model
        else:
            assert r.status_code not in (401, 403), where


def test_a_bad_or_revoked_token_is_refused_and_never_echoed(world: World) -> None:
    r = httpx.get(f"{world.server.url}/api/v1/projections", timeout=10,
                  headers={"authorization": "Bearer mdb_made_up_secret"})
    assert r.status_code == 401 and "mdb_made_up_secret" not in r.text
    token = new_token(world.home, "shortlived")
    ok = httpx.get(f"{world.server.url}/api/v1/projections", timeout=10,
                   headers={"authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    token_id = token.split("_")[1]
    assert "revoked" in cli(world.home, "token", "revoke", token_id)
    listed = cli(world.home, "token", "list")
    assert token_id in listed and token not in listed  # only ids, never secrets
    import time

    time.sleep(5.2)  # other processes' caches keep a token at most CACHE_SECONDS
    again = httpx.get(f"{world.server.url}/api/v1/projections", timeout=10,
                      headers={"authorization": f"Bearer {token}"})
    assert again.status_code == 401


# -- GraphQL: field x role ---------------------------------------------------------------------

AT = "2100-01-01T00:00:00Z"
FIELD_QUERIES: dict[str, tuple[str, dict[str, Any]]] = {
    "projects": ("{ projects { name } }", {}),
    "run": ("query($id: ID!) { run(id: $id) { id } }", {"id": "RUN_P"}),
    "runs": ("{ runs { totalCount } }", {}),
    "lineage": ("query($id: ID!) { lineage(id: $id) { nodes { id } } }", {"id": "RUN_P"}),
    "history": ("query($id: ID!) { history(id: $id) { type } }", {"id": "RUN_P"}),
    "runAsOf": ("query($id: ID!) { runAsOf(id: $id, at: \"" + AT + "\") { id } }", {"id": "RUN_P"}),
    "registeredModels": ("{ registeredModels { name } }", {}),
    "registeredModel": ('{ registeredModel(name: "m") { name } }', {}),
    "modelVersion": ('{ modelVersion(name: "m", version: "1") { version } }', {}),
    "modelVersionAsOf": ('{ modelVersionAsOf(name: "m", version: "1", at: "' + AT + '") { version } }',
                         {}),
    "transitionRequests": ("{ transitionRequests { id } }", {}),
    "environments": ("{ environments { name } }", {}),
    "deployments": ("{ deployments { id } }", {}),
    "deployment": ('{ deployment(id: "nope") { id } }', {}),
    "webhooks": ("{ webhooks { id } }", {}),
    "tokens": ("{ tokens { id user } }", {}),
    "search": ('{ search(text: "model") { kind id } }', {}),
    "compareRuns": ("query($id: ID!) { compareRuns(ids: [$id]) { runs { id } } }", {"id": "RUN_P"}),
    "provenance": ('{ provenance(name: "m", version: "1") { nodes { id } } }', {}),
    "impact": ("query($id: ID!) { impact(id: $id) { runs { id } } }", {"id": "RUN_P"}),
}
MUTATION_QUERIES: dict[str, tuple[str, str]] = {  # field → (command, call)
    "createRegisteredModel": ("create_model", 'createRegisteredModel(name: "NEW")'),
    "updateRegisteredModel": ("update_model", 'updateRegisteredModel(name: "scratch", description: "d")'),
    "deleteRegisteredModel": ("delete_model", 'deleteRegisteredModel(name: "doomed")'),
    "createModelVersion": ("create_version", 'createModelVersion(name: "scratch", sourceUri: "s3://x")'),
    "deleteModelVersion": ("delete_version", 'deleteModelVersion(name: "scratch", version: "99")'),
    "setModelVersionStage": ("set_stage", 'setModelVersionStage(name: "scratch", version: "99", '
                             'stage: "Staging")'),
    "requestStageTransition": ("request_transition", 'requestStageTransition(name: "scratch", '
                               'version: "99", stage: "Staging")'),
    "approveStageTransition": ("approve_transition", 'approveStageTransition(name: "scratch", '
                               'requestId: "nope")'),
    "rejectStageTransition": ("reject_transition", 'rejectStageTransition(name: "scratch", '
                              'requestId: "nope")'),
    "setModelAlias": ("set_alias", 'setModelAlias(name: "scratch", alias: "a", version: "99")'),
    "deleteModelAlias": ("delete_alias", 'deleteModelAlias(name: "scratch", alias: "nope")'),
    "setModelLock": ("set_lock", 'setModelLock(name: "scratch", level: "open")'),
    "setModelRules": ("set_rules", 'setModelRules(name: "scratch")'),
    "registerEnvironment": ("register_environment", 'registerEnvironment(name: "ENV", stage: "prod")'),
    "recordDeployment": ("record_deployment", 'recordDeployment(model: "scratch", version: "99", '
                         'environment: "nope")'),
    "setDeploymentStatus": ("set_deployment_status", 'setDeploymentStatus(deploymentId: "nope", '
                            'status: "serving")'),
    "registerWebhook": ("register_webhook", 'registerWebhook(url: "http://127.0.0.1:9/h")'),
    "deleteWebhook": ("delete_webhook", 'deleteWebhook(webhookId: "nope")'),
    "redactRun": ("redact_run", 'redactRun(runId: "nope", reason: "test")'),
}
ADMIN_MUTATIONS = {"createToken": 'createToken(user: "someone") { secret }',
                   "revokeToken": 'revokeToken(id: "nope")',
                   "grantRole": 'grantRole(user: "someone", role: "reader", project: "p")'}


def _codes(body: dict[str, Any]) -> set[str]:
    return {(e.get("extensions") or {}).get("code", "") for e in body.get("errors") or []}


def test_every_query_field_has_a_case_here() -> None:
    wanted = {f for t, f in root_fields() if t == "Query"}
    assert not wanted - set(FIELD_QUERIES), "add the new Query field to FIELD_QUERIES"
    mutations = {f for t, f in root_fields() if t == "Mutation"}
    assert not mutations - set(MUTATION_QUERIES) - set(ADMIN_MUTATIONS)


@pytest.mark.parametrize("role", ROLES)
def test_every_query_field_answers_by_its_rule(world: World, role: str) -> None:
    for field, (query, variables) in FIELD_QUERIES.items():
        values = {k: {"RUN_P": world.run_p}.get(v, v) for k, v in variables.items()}
        status, body = world.gql(role, query, **values)
        where = f"{field} as {role}: {status} {body}"
        if role == "none":
            assert status == 401, where
            continue
        assert status == 200, where
        if RULES[("Query", field)].kind == "admin" and role != "admin":
            assert "FORBIDDEN" in _codes(body), where
        else:
            assert not body.get("errors"), where


@pytest.mark.parametrize("role", ROLES)
def test_every_mutation_answers_by_the_command_table(world: World, role: str) -> None:
    for field, (command, call) in MUTATION_QUERIES.items():
        selection = "{ command }"
        status, body = world.gql(role, f"mutation {{ {call} {selection} }}")
        where = f"{field} as {role}: {status} {body}"
        if role == "none":
            assert status == 401, where
            continue
        scope, _arg, needed = COMMAND_RULES[command]
        held = {"reader": "reader", "writer": "writer", "admin": "admin"}[role]
        # the reader holds reader on model m only; the writer holds writer on every model
        allowed = role == "admin" or (scope != "global" and role == "writer"
                                      and RANK[held] >= RANK[needed])
        if allowed:
            assert "FORBIDDEN" not in _codes(body), where
        else:
            assert "FORBIDDEN" in _codes(body), where
    for field, call in ADMIN_MUTATIONS.items():
        status, body = world.gql(role, f"mutation {{ {call} }}")
        where = f"{field} as {role}: {status} {body}"
        if role == "none":
            assert status == 401, where
        elif role == "admin":
            assert "FORBIDDEN" not in _codes(body), where
        else:
            assert "FORBIDDEN" in _codes(body), where


# -- what a reader cannot learn ----------------------------------------------------------------


def test_a_project_the_reader_cannot_read_answers_like_one_that_does_not_exist(world: World) -> None:
    def same(query: str, hidden: dict[str, Any], absent: dict[str, Any]) -> None:
        assert world.gql("reader", query, **hidden) == world.gql("reader", query, **absent)

    runs = "query($p: String) { runs(project: $p) { totalCount edges { node { id } } } }"
    same(runs, {"p": SECRET_PROJECT}, {"p": "no-such-project"})
    assert world.gql("admin", runs, p=SECRET_PROJECT)[1]["data"]["runs"]["totalCount"] == 1
    run = "query($id: ID!) { run(id: $id) { id name } }"
    same(run, {"id": world.run_secret}, {"id": str(uuid.uuid4())})
    history = "query($id: ID!) { history(id: $id) { type actor } }"
    same(history, {"id": world.run_secret}, {"id": str(uuid.uuid4())})
    same(history, {"id": f"project:{SECRET_PROJECT}"}, {"id": "project:no-such-project"})
    lineage = "query($id: ID!) { lineage(id: $id, direction: DOWNSTREAM) { nodes { id } edges { kind } } }"
    same(lineage, {"id": f"run:{world.run_secret}"}, {"id": f"run:{uuid.uuid4()}"})
    impact = "query($id: ID!) { impact(id: $id) { runs { id } } }"
    hidden_impact = world.gql("reader", impact, id=f"run:{world.run_secret}")[1]
    absent_impact = world.gql("reader", impact, id=f"run:{uuid.uuid4()}")[1]
    assert hidden_impact["errors"][0]["message"].replace(world.run_secret, "R") == \
        absent_impact["errors"][0]["message"].split(":", 1)[0] + ":R"
    model = "query($n: String!) { registeredModel(name: $n) { name } }"
    same(model, {"n": "hidden"}, {"n": "no-such-model"})
    projects = world.gql("reader", "{ projects { name } }")[1]["data"]["projects"]
    assert [p["name"] for p in projects] == ["p"]
    models = world.gql("reader", "{ registeredModels { name } }")[1]["data"]["registeredModels"]
    assert [m["name"] for m in models] == ["m"]

    # Downloads: the same 404 for an artifact of the secret project and for none at all.
    hidden = world.request("reader", "GET", f"/api/v1/artifacts/{world.digest_secret}")
    absent = world.request("reader", "GET", "/api/v1/artifacts/sha256:" + "0" * 64)
    assert hidden.status_code == absent.status_code == 404
    assert hidden.json()["error"].replace(world.digest_secret, "D") == \
        absent.json()["error"].replace("sha256:" + "0" * 64, "D")
    assert world.request("reader", "GET", f"/api/v1/artifacts/{world.digest_p}").content == b"model in p"
    assert world.request("admin", "GET", f"/api/v1/artifacts/{world.digest_secret}").status_code == 200

    # Writing: the same refusal for the secret project and for one that does not exist.
    def refusal(project: str) -> str:
        r = world.request("writer", "POST", "/api/v1/events",
                          json=wire(run_events(uuid7(), project=project)))
        assert r.status_code == 403
        return r.json()["error"].replace(project, "P")

    assert refusal(SECRET_PROJECT) == refusal("no-such-project")


def test_lineage_redacts_what_the_reader_cannot_read(world: World) -> None:
    query = ("query($id: ID!) { lineage(id: $id, direction: DOWNSTREAM, depth: 4) "
             "{ nodes { id kind name } edges { source target kind } } }")
    full = world.gql("admin", query, id=f"run:{world.run_p}")[1]["data"]["lineage"]
    seen = world.gql("reader", query, id=f"run:{world.run_p}")[1]["data"]["lineage"]
    assert f"run:{world.run_secret}" in {n["id"] for n in full["nodes"]}
    ids = {n["id"] for n in seen["nodes"]}
    assert f"run:{world.run_secret}" not in ids and f"run:{world.run_p}" in ids
    redacted = [n for n in seen["nodes"] if n["id"].startswith("redacted:")]
    assert redacted == [{"id": redacted[0]["id"], "kind": "Run", "name": None}]
    assert len(seen["edges"]) == len(full["edges"])  # the shape stays, the names go
    assert any(redacted[0]["id"] in (e["source"], e["target"]) for e in seen["edges"])


def test_ingest_checks_the_project_of_events_of_an_existing_run(world: World) -> None:
    # The writer may not add to the secret project's run by naming only its run id …
    tag = [new_event("TagsSet", world.run_secret, {"tags": {"pwned": "yes"}})]
    r = world.request("writer", "POST", "/api/v1/events", json=wire(tag))
    assert r.status_code == 403
    # … nor move it by starting it again in a project they may write.
    restart = run_events(world.run_secret, project="p", status=None)
    assert world.request("writer", "POST", "/api/v1/events", json=wire(restart)).status_code == 403
    # Their own run: fine, also in a later batch (the run is known by then).
    mine = uuid7()
    events = run_events(mine, project="p", status=None)
    assert world.request("writer", "POST", "/api/v1/events", json=wire(events)).status_code == 202
    more = [new_event("TagsSet", mine, {"tags": {"ok": "yes"}})]
    assert world.request("writer", "POST", "/api/v1/events", json=wire(more)).status_code == 202
    # Deleting takes a project admin, even for one's own run.
    gone = world.request("writer", "POST", "/api/v1/events",
                         json=wire([new_event("RunDeleted", mine, {})]))
    assert gone.status_code == 403 and "may not delete in project 'p'" in gone.json()["error"]
    world.wait()
    history = world.gql("admin", "query($id: ID!) { history(id: $id) { actor } }", id=mine)
    assert {e["actor"] for e in history[1]["data"]["history"]} == {"wendy"}  # the token's user


def test_registry_roles_per_model_and_who_approves(world: World) -> None:
    def command(role: str, cmd: str, **args: Any) -> httpx.Response:
        return world.request(role, "POST", "/api/v1/registry/commands",
                             json={"command": cmd, "args": args})

    assert command("reader", "create_version", name="m", source_uri="s3://r").status_code == 403
    r = command("writer", "create_version", name="m", source_uri="s3://w")
    assert r.status_code == 200, r.text
    version = r.json()["result"]["version"]
    r = command("writer", "request_transition", name="m", version=version, stage="Staging")
    assert r.status_code == 200, r.text
    request_id = r.json()["result"]["request_id"]
    # Approving needs admin on the model: the writer may not, the admin may.
    assert command("writer", "approve_transition", name="m", request_id=request_id).status_code == 403
    r = command("admin", "approve_transition", name="m", request_id=request_id)
    assert r.status_code == 200, r.text
    # A model admin (by grant, not a global admin) may set locks: registry-admin on that model.
    cli(world.home, "grant", "wendy", "admin", "--model", "scratch")
    import time

    time.sleep(5.2)  # the server's cache of wendy's grants
    assert command("writer", "set_lock", name="scratch", level="closed").status_code == 200
    assert command("writer", "set_lock", name="m", level="closed").status_code == 403
    assert command("writer", "set_lock", name="scratch", level="open").status_code == 200
    # A version from a run the caller cannot read: as if the run did not exist.
    r = command("writer", "create_version", name="scratch", run_id=world.run_secret)
    assert r.status_code == 404


def test_sdk_and_openlineage_clients_send_their_token(world: World,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import modeldb

    monkeypatch.setenv("MODELDB_TOKEN", world.tokens["writer"] or "")
    modeldb.init(world.server.url, project="p", experiment="sdk")
    with modeldb.start_run(name="with-token") as run:
        run.log_metric("loss", 0.5)
    assert modeldb.flush(20)
    modeldb.shutdown() if hasattr(modeldb, "shutdown") else None
    world.wait()
    found = world.gql("reader", "query($id: ID!) { run(id: $id) { name } }", id=run.id)
    assert found[1]["data"]["run"] == {"name": "with-token"}

    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

    from tests.ingest_adapters.test_openlineage import NAMESPACE, _events

    olly = new_token(world.home, "olly")
    cli(world.home, "grant", "olly", "writer", "--project", NAMESPACE)
    client = OpenLineageClient(transport=HttpTransport(HttpConfig(
        url=world.server.url, auth=ApiKeyTokenProvider({"apiKey": olly}))))
    run_id = str(uuid.uuid4())
    for event in _events(run_id):
        client.emit(event)
    world.wait()
    status = world.gql("admin", "query($id: ID!) { run(id: $id) { status } }", id=run_id)
    assert status[1]["data"]["run"] == {"status": "FINISHED"}
    nobody = OpenLineageClient(transport=HttpTransport(HttpConfig(url=world.server.url)))
    with pytest.raises(Exception, match="401"):
        nobody.emit(_events(str(uuid.uuid4()))[0])


async def test_subscriptions_need_a_token_and_see_what_the_caller_reads(world: World) -> None:
    import orjson
    import websockets
    from websockets.exceptions import InvalidStatus

    url = world.server.url.replace("http://", "ws://") + "/graphql"
    protocols = ["graphql-transport-ws"]
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, subprotocols=protocols) as ws:  # type: ignore[arg-type]
            await ws.recv()
    assert refused.value.response.status_code == 403  # a handshake closed before accept
    async with websockets.connect(url, subprotocols=protocols,  # type: ignore[arg-type]
                                  additional_headers=world.headers("reader")) as ws:
        await ws.send(orjson.dumps({"type": "connection_init"}).decode())
        assert orjson.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(orjson.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": "subscription($id: ID!) { runUpdates(id: $id) { runId status } }",
            "variables": {"id": world.run_p}}}).decode())
        update = orjson.loads(await ws.recv())
        assert update["payload"]["data"]["runUpdates"] == {"runId": world.run_p, "status": "FINISHED"}
