"""The registry from the command line: `modeldb verify` against tampering (with and without
signed checkpoints), `modeldb checkpoint`, the browsing commands and the audit report."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from modeldb.event_schema import new_event, uuid7
from tests.helpers import DIGEST_B, ServerProcess, run_events, wire
from tests.test_cli import cli

pytestmark = pytest.mark.parametrize("stack", ["embedded"], indirect=True)


def post(server: ServerProcess, cmd: str, user: str | None = None, **args: Any) -> dict[str, Any]:
    r = httpx.post(f"{server.url}/api/v1/registry/commands", json={"command": cmd, "args": args},
                   headers={"x-modeldb-user": user} if user else {}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def populate(server: ServerProcess) -> str:
    """A trained run, a model promoted through a request and an approval, a deployment."""
    run = uuid7()
    events = run_events(run, name="trainer", params={"lr": 0.1}, metrics={"acc": [0.5, 0.9]})
    events.insert(1, new_event("ArtifactLogged", run, {
        "name": "model.pkl", "digest": DIGEST_B, "size": 42,
        "uri": f"modeldb://artifacts/{DIGEST_B}", "kind": "model"}))
    assert httpx.post(f"{server.url}/api/v1/events", json=wire(events)).status_code == 202
    post(server, "create_version", "alice", name="clf", run_id=run, artifact="model.pkl",
         create_model=True, description="iris")
    post(server, "set_stage", "alice", name="clf", version=1, stage="Staging", comment="smoke ok")
    request = post(server, "request_transition", "alice", name="clf", version=1,
                   stage="Production", comment="beats baseline")["result"]["request_id"]
    post(server, "approve_transition", "bob", name="clf", request_id=request, comment="lgtm")
    post(server, "set_alias", "alice", name="clf", alias="champion", version=1)
    post(server, "register_environment", name="prod", stage="production", location="eu-west-1")
    post(server, "record_deployment", deployment_id="dep-1", model="clf", version=1,
         environment="prod")
    post(server, "set_deployment_status", deployment_id="dep-1", status="serving")
    server.wait_projected()
    return run


def copy_of(home: Path, tmp: Path, name: str) -> Path:
    target = tmp / name
    shutil.copytree(home, target)
    return target


def log_db(home: Path) -> sqlite3.Connection:
    """The log file opened for tampering: its append-only triggers dropped first."""
    db = sqlite3.connect(home / "events.db", isolation_level=None)
    db.execute("DROP TRIGGER events_refuse_update")
    db.execute("DROP TRIGGER events_refuse_delete")
    return db


def position_of(home: Path, type_: str) -> int:
    db = sqlite3.connect(home / "events.db")
    return db.execute("SELECT min(position) FROM events WHERE type = ?", (type_,)).fetchone()[0]


def swap_log_records(home: Path, a: int, b: int) -> None:
    db = log_db(home)
    rows = {p: db.execute("SELECT event_id, type, aggregate_kind, aggregate_id, recorded_at, body"
                          " FROM events WHERE position = ?", (p,)).fetchone() for p in (a, b)}
    db.execute("UPDATE events SET event_id = 'moving' WHERE position = ?", (a,))
    for target, source in ((b, a), (a, b)):
        db.execute("UPDATE events SET event_id = ?, type = ?, aggregate_kind = ?, aggregate_id = ?,"
                   " recorded_at = ?, body = ? WHERE position = ?", (*rows[source], target))


def test_verify_detects_tampering_and_checkpoints_pin_the_past(
    modeldb_server: ServerProcess, tmp_path: Path
) -> None:
    populate(modeldb_server)
    modeldb_server.stop()
    home = modeldb_server.home
    checkpoint = tmp_path / "checkpoint.json"
    made = cli("checkpoint", "--out", str(checkpoint), home=home)
    assert made.returncode == 0, made.stderr
    doc = json.loads(checkpoint.read_text())
    head = doc["heads"][0]["position"]
    ok = cli("verify", "--checkpoint", str(checkpoint), home=home)
    assert ok.returncode == 0 and f"OK: {head} records" in ok.stdout, ok.stdout + ok.stderr
    approved = position_of(home, "StageTransitionApproved")

    # An edited payload in the audit store: its hash no longer matches.
    edited = copy_of(home, tmp_path, "edited-audit")
    db = sqlite3.connect(edited / "read.db")
    db.execute("UPDATE audit_events SET body = replace(body, 'lgtm', 'LGTM') WHERE position = ?",
               (approved,))
    db.commit()
    bad = cli("verify", home=edited)
    assert bad.returncode == 1 and f"position {approved}: hash mismatch" in bad.stdout

    # An edited payload in the log, the audit store rebuilt to match: the chain is
    # consistent again, and only the signed checkpoint can tell.
    rewritten = copy_of(home, tmp_path, "edited-log")
    log_db(rewritten).execute(
        "UPDATE events SET body = replace(body, 'lgtm', 'LGTM') WHERE position = ?", (approved,))
    assert cli("replay", "--projection", "audit", home=rewritten).returncode == 0
    assert cli("verify", home=rewritten).returncode == 0  # nothing left to compare with...
    caught = cli("verify", "--checkpoint", str(checkpoint), home=rewritten)
    assert caught.returncode == 1  # ...but the checkpoint remembers
    assert f"position {head}: chain differs from the signed checkpoint" in caught.stdout

    # A deleted event: gone from the log, or from the log and a rebuilt audit store.
    deleted = copy_of(home, tmp_path, "deleted")
    log_db(deleted).execute("DELETE FROM events WHERE position = ?", (approved,))
    gone = cli("verify", home=deleted)
    assert gone.returncode == 1 and f"position {approved}: record not in the log" in gone.stdout
    assert cli("replay", "--projection", "audit", home=deleted).returncode == 0
    hole = cli("verify", home=deleted)
    assert hole.returncode == 1 and f"position {approved}: record missing" in hole.stdout

    # A reordered pair in the audit store breaks the chain; in the log (audit rebuilt), the
    # checkpoint catches it.
    reordered = copy_of(home, tmp_path, "reordered-audit")
    db = sqlite3.connect(reordered / "read.db")
    db.execute("UPDATE audit_events SET position = -1 WHERE position = ?", (approved,))
    db.execute("UPDATE audit_events SET position = ? WHERE position = ?", (approved, approved + 1))
    db.execute("UPDATE audit_events SET position = ? WHERE position = -1", (approved + 1,))
    db.commit()
    broken = cli("verify", home=reordered)
    assert broken.returncode == 1 and f"position {approved}:" in broken.stdout
    swapped = copy_of(home, tmp_path, "reordered-log")
    swap_log_records(swapped, approved, approved + 1)
    assert cli("replay", "--projection", "audit", home=swapped).returncode == 0
    assert cli("verify", "--checkpoint", str(checkpoint), home=swapped).returncode == 1

    # A forged checkpoint: its head moved to the tampered chain, or signed with another key.
    tampered_head = json.loads(cli("checkpoint", home=rewritten).stdout)["heads"][0]["hash"]
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**doc, "heads": [{**doc["heads"][0], "hash": tampered_head}]}))
    refused = cli("verify", "--checkpoint", str(forged), home=rewritten)
    assert refused.returncode == 1 and "checkpoint signature invalid" in refused.stdout
    stranger = copy_of(home, tmp_path, "other-key")
    (stranger / "server.key").write_text("another installation's key\n")
    foreign = tmp_path / "foreign.json"
    assert cli("checkpoint", "--out", str(foreign), home=stranger).returncode == 0
    mismatch = cli("verify", "--checkpoint", str(foreign), home=home)
    assert mismatch.returncode == 1 and "signature invalid" in mismatch.stdout


def test_browsing_commands_and_the_audit_report(modeldb_server: ServerProcess) -> None:
    run = populate(modeldb_server)
    over_http = cli("models", "list", "--url", modeldb_server.url, home=modeldb_server.home)
    assert over_http.returncode == 0, over_http.stderr
    assert "clf" in over_http.stdout and "champion→1" in over_http.stdout
    modeldb_server.stop()
    home = modeldb_server.home

    models = cli("models", "list", home=home)
    assert models.stdout.splitlines()[0].split()[:3] == ["NAME", "VERSIONS", "PRODUCTION"]
    shown = cli("models", "show", "clf", home=home)
    assert "transitions:" in shown.stdout and "bob" in shown.stdout
    versions = json.loads(cli("versions", "list", "--model", "clf", "--json", home=home).stdout)
    assert [(v["version"], v["stage"], v["aliases"]) for v in versions] == [
        ("1", "Production", ["champion"])]
    version = json.loads(cli("versions", "show", "clf/champion", "--json", home=home).stdout)
    assert [t["approvedBy"] for t in version["transitions"]] == [None, "bob"]
    assert version["deployments"][0]["environment"] == {"name": "prod"}
    assert "Production" in cli("versions", "list", "--stage", "production", home=home).stdout
    assert cli("versions", "list", "--stage", "staging", home=home).stdout.strip() == "(none)"
    runs = cli("runs", "list", "--filter", "metrics.acc > 0.8", home=home)
    assert run in runs.stdout and "1 of 1 run(s)" in runs.stdout
    assert '"lr"' in cli("runs", "show", run, "--json", home=home).stdout
    deployments = cli("deployments", "list", "--environment", "prod", home=home)
    assert "dep-1" in deployments.stdout and "serving" in deployments.stdout
    assert "history:" in cli("deployments", "show", "dep-1", home=home).stdout
    missing = cli("versions", "show", "clf/9", home=home)
    assert missing.returncode == 1 and "no model version" in missing.stderr

    report = cli("audit", "modelversion:clf/1", home=home)
    assert report.returncode == 0, report.stderr
    text = report.stdout
    assert "## Stage transitions" in text and "## Deployments" in text
    approval = next(line for line in text.splitlines() if "Staging → Production" in line)
    assert "| bob | alice | bob | approval | lgtm (request: beats baseline) |" in approval
    assert "dep-1 in **prod**: serving" in text
    as_json = json.loads(cli("audit", "registeredmodel:clf", "--format", "json", home=home).stdout)
    assert [t["to_stage"] for t in as_json["transitions"]] == ["Staging", "Production"]
    assert as_json["requests"][0]["decided_by"] == "bob"
