"""The registry against a real `modeldb serve`: racing commands from threads and processes,
GraphQL mutations as different users, webhooks to a receiver that fails at first, the SDK."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import modeldb
from modeldb import _client
from modeldb.projectors.webhooks import verify_signature
from tests.helpers import ServerProcess, server_env

COMMANDS = "/api/v1/registry/commands"


def command(server: ServerProcess, cmd: str, user: str | None = None, /, *,
            expected: int | None = None, **args: Any) -> httpx.Response:
    headers = {"x-modeldb-user": user} if user else {}
    body: dict[str, Any] = {"command": cmd, "args": args}
    if expected is not None:
        body["expected_revision"] = expected
    return httpx.post(f"{server.url}{COMMANDS}", json=body, headers=headers, timeout=60)


def gql(server: ServerProcess, query: str, user: str | None = None, **variables: Any) -> dict:
    headers = {"x-modeldb-user": user} if user else {}
    r = httpx.post(f"{server.url}/graphql", json={"query": query, "variables": variables},
                   headers=headers, timeout=60)
    return r.json()


def test_concurrent_registrations_get_distinct_numbers(modeldb_server: ServerProcess) -> None:
    assert command(modeldb_server, "create_model", name="race").status_code == 200

    def register(i: int) -> int:
        r = command(modeldb_server, "create_version", name="race", source_uri=f"s3://m/{i}")
        assert r.status_code == 200, r.text
        return r.json()["result"]["version"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        numbers = list(pool.map(register, range(48)))
    assert sorted(numbers) == list(range(1, 49))
    modeldb_server.wait_projected()
    history = modeldb_server.graphql('{ history(id: "registeredmodel:race") { type payload } }')
    created = [e["payload"]["version"] for e in history["history"]
               if e["type"] == "ModelVersionCreated"]
    assert sorted(created) == list(range(1, 49))  # no number twice, none lost


def test_racing_moves_of_one_version_leave_one_history(modeldb_server: ServerProcess) -> None:
    r = command(modeldb_server, "create_version", name="mv", source_uri="s3://mv",
                create_model=True)
    revision = r.json()["revision"]
    stages = ["Staging", "Production", "Archived"] * 4

    def move(stage: str) -> int:
        return command(modeldb_server, "set_stage", expected=revision, name="mv", version=1,
                       stage=stage).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(move, stages))
    assert statuses.count(200) == 1 and statuses.count(409) == len(stages) - 1

    # Two approvers racing on one request: one approval, one conflict, one stage change.
    request = command(modeldb_server, "request_transition", "alice", name="mv", version=1,
                      stage="None").json()["result"]["request_id"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda user: command(modeldb_server, "approve_transition", user,
                                                     name="mv", request_id=request),
                                ["bob", "carol"]))
    assert sorted(a.status_code for a in answers) == [200, 409]
    modeldb_server.wait_projected()
    history = modeldb_server.graphql('{ history(id: "registeredmodel:mv") { type actor } }')
    types = [e["type"] for e in history["history"]]
    assert types.count("ModelVersionStageChanged") == 2
    assert types.count("StageTransitionApproved") == 1


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_processes_and_the_server_share_one_numbering(modeldb_server: ServerProcess) -> None:
    """Embedded SDK processes append to the server's own SQLite log while it takes HTTP
    commands: the conditional append holds across processes."""
    assert command(modeldb_server, "create_model", name="shared").status_code == 200
    script = ("import modeldb, sys\n"
              "modeldb.init(sys.argv[1])\n"
              "for i in range(10):\n"
              "    modeldb.register_model('shared', source_uri=f's3://p/{i}')\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(modeldb_server.home)],
                              env=server_env({"MODELDB_SPOOL_DIR": str(modeldb_server.home / "spool")}),
                              stderr=subprocess.PIPE) for _ in range(3)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda i: command(modeldb_server, "create_version", name="shared",
                                                  source_uri=f"s3://h/{i}"), range(20)))
    for proc in procs:
        assert proc.wait(120) == 0, proc.stderr.read() if proc.stderr else ""
    assert all(a.status_code == 200 for a in answers)
    modeldb_server.wait_projected()
    versions = modeldb_server.graphql('{ registeredModel(name: "shared") { versions { version } } }')
    numbers = [int(v["version"]) for v in versions["registeredModel"]["versions"]]
    assert sorted(numbers) == list(range(1, 51))


def test_graphql_mutations_as_different_users(modeldb_server: ServerProcess) -> None:
    created = gql(modeldb_server, """mutation { createModelVersion(name: "api", sourceUri: "s3://a",
        createModel: true) { modelVersion { version stage } } }""", user="alice")
    assert created["data"]["createModelVersion"]["modelVersion"] == {"version": "1", "stage": "None"}
    rules = gql(modeldb_server, """mutation { setModelRules(name: "api",
        approvalRequired: ["Production"]) { revision } }""", user="alice")
    assert rules["errors"][0]["extensions"]["code"] == "FORBIDDEN"  # alice holds no admin role
    gql(modeldb_server, """mutation { setModelRules(name: "api", approvalRequired: ["Production"])
        { revision } }""")  # the local user (no header) owns the installation
    direct = gql(modeldb_server, """mutation { setModelVersionStage(name: "api", version: "1",
        stage: "Production") { revision } }""", user="alice")
    assert direct["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    request = gql(modeldb_server, """mutation { requestStageTransition(name: "api", version: "1",
        stage: "Production", comment: "ready") { request { id } } }""", user="alice")
    request_id = request["data"]["requestStageTransition"]["request"]["id"]
    own = gql(modeldb_server, """mutation($id: String!) { approveStageTransition(name: "api",
        requestId: $id) { revision } }""", user="alice", id=request_id)
    assert "cannot approve" in own["errors"][0]["message"]
    approved = gql(modeldb_server, """mutation($id: String!) { approveStageTransition(name: "api",
        requestId: $id, comment: "ship it") { modelVersion { stage transitions { requestedBy
        approvedBy comment } } } }""", user="bob", id=request_id)
    version = approved["data"]["approveStageTransition"]["modelVersion"]
    assert version == {"stage": "Production", "transitions": [
        {"requestedBy": "alice", "approvedBy": "bob", "comment": "ship it"}]}
    listed = modeldb_server.graphql("{ registeredModels { name versions { version stage } } }")
    assert listed["registeredModels"] == [{"name": "api",
                                           "versions": [{"version": "1", "stage": "Production"}]}]


class _Receiver:
    """A real local HTTP endpoint that fails its first `failures` requests."""

    def __init__(self, failures: int):
        self.failures = failures
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                status = 500 if len(receiver.requests) < receiver.failures else 204
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()},
                                          body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[tuple[dict[str, str], bytes, int]]:
        return [r for r in self.requests if r[2] < 300]


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    found = _Receiver(failures=2)
    yield found
    found.server.shutdown()


def test_webhooks_are_delivered_despite_failures_and_signed(modeldb_server: ServerProcess,
                                                            receiver: _Receiver) -> None:
    registered = command(modeldb_server, "register_webhook", url=receiver.url,
                         models=["hooked"]).json()
    secret = registered["result"]["secret"]
    assert len(secret) == 64
    command(modeldb_server, "create_version", name="hooked", source_uri="s3://h", create_model=True)
    command(modeldb_server, "create_version", name="other", source_uri="s3://o", create_model=True)
    command(modeldb_server, "set_stage", name="other", version=1, stage="Staging")  # not subscribed
    assert command(modeldb_server, "set_stage", name="hooked", version=1,
                   stage="Staging").status_code == 200
    deadline = time.monotonic() + 30
    while not receiver.delivered() and time.monotonic() < deadline:
        time.sleep(0.1)
    (headers, body, _status), = receiver.delivered()
    assert len(receiver.requests) == 3  # two failures, then the delivery
    assert {r[0]["x-modeldb-delivery"] for r in receiver.requests} == {headers["x-modeldb-delivery"]}
    assert verify_signature(secret, headers["x-modeldb-signature"], body)
    assert not verify_signature("wrong" * 8, headers["x-modeldb-signature"], body)
    payload = json.loads(body)
    assert (payload["model"], payload["version"], payload["stage"], payload["from_stage"]) == (
        "hooked", 1, "Staging", "None")
    assert payload["event"]["type"] == "ModelVersionStageChanged"
    hooks = modeldb_server.graphql("{ webhooks { url deliveries { status attempts lastStatus } } }")
    assert hooks["webhooks"] == [{"url": receiver.url, "deliveries": [
        {"status": "delivered", "attempts": 3, "lastStatus": 204}]}]


@pytest.fixture
def sdk() -> Iterator[None]:
    yield
    _client.shutdown(timeout=5)


def test_the_sdk_registry_calls_over_http(modeldb_server: ServerProcess, sdk: None,
                                          tmp_path: Path) -> None:
    modeldb.init(modeldb_server.url, project="reg", experiment="e")
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(b"weights")
    with modeldb.start_run(name="train") as run:
        artifact = run.log_artifact(model_file)
    version = modeldb.register_model("sdk-model", run, artifact)
    assert (version.version, version.stage, version.run_id) == (1, "None", run.id)
    assert version.artifact_digest == artifact.digest
    again = modeldb.register_model("sdk-model", run.id, "model.pkl")
    assert again.version == 2
    staged = modeldb.set_stage("sdk-model", 1, "Staging", comment="from the SDK")
    assert staged.stage == "Staging"
    champion = modeldb.set_alias("sdk-model", "champion", version)
    assert champion.aliases == ("champion",)
    with pytest.raises(modeldb.RequestRejected) as refused:
        modeldb.set_stage("sdk-model", 9, "Production")
    assert refused.value.status == 404
    with pytest.raises(modeldb.InvalidArgument):
        modeldb.set_stage("sdk-model", 1, "Prod")
    modeldb_server.wait_projected()
    found = modeldb_server.graphql("""{ modelVersion(name: "sdk-model", version: "champion") {
        version stage run { id } provenance { nodes { kind } } } }""")["modelVersion"]
    assert (found["version"], found["stage"], found["run"]["id"]) == ("1", "Staging", run.id)
    assert "Artifact" in {n["kind"] for n in found["provenance"]["nodes"]}
