"""Small builders shared by the tests: events of every type, and a server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from modeldb.event_schema import Event, RecordedEvent, new_event, to_wire, uuid7
from modeldb.writer.sqlite_log import SQLiteEventLog

if TYPE_CHECKING:
    from modeldb.infra.system import System

T = TypeVar("T")

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def wire(events: list[Event]) -> list[dict[str, Any]]:
    return [to_wire(e) for e in events]


def run_events(
    run_id: str,
    *,
    project: str = "p",
    experiment: str = "e",
    name: str | None = None,
    params: dict[str, Any] | None = None,
    metrics: dict[str, list[float]] | None = None,
    tags: dict[str, str] | None = None,
    parent: str | None = None,
    status: str | None = "FINISHED",
    start: datetime = T0,
) -> list[Event]:
    events = [new_event("RunStarted", run_id, {
        "project": project, "experiment": experiment, "name": name or run_id[-6:],
        "parent_run_id": parent, "start_time": start})]
    if params:
        events.append(new_event("ParamsLogged", run_id, {"params": params}))
    for key, values in (metrics or {}).items():
        events.append(new_event("MetricsLogged", run_id, {"points": [
            {"key": key, "value": v, "step": i, "timestamp": 1000 + i} for i, v in enumerate(values)]}))
    if tags:
        events.append(new_event("TagsSet", run_id, {"tags": tags}))
    if status:
        events.append(new_event("RunFinished", run_id, {"status": status,
                                                        "end_time": start + timedelta(minutes=5)}))
    return events


def every_event_type() -> list[Event]:
    """One scenario touching every event type, in a causally sensible order."""
    run, child = uuid7(), uuid7()
    dv = f"iris@{DIGEST_A}"
    return [
        new_event("ProjectCreated", "p", {"name": "p", "description": "demo"}),
        new_event("ExperimentCreated", "p/e", {"project": "p", "name": "e"}),
        new_event("DatasetCreated", "iris", {"name": "iris", "description": "flowers"}),
        new_event("DatasetVersionCreated", "iris", {"digest": DIGEST_A, "uri": "file:iris.csv",
                                                    "schema": {"cols": ["a"]}, "row_count": 150}),
        new_event("RunStarted", run, {"project": "p", "experiment": "e", "name": "r",
                                      "start_time": T0}),
        new_event("ParamsLogged", run, {"params": {"lr": 0.01, "opt": "adam", "layers": 3,
                                                   "bn": True}}),
        new_event("MetricsLogged", run, {"points": [
            {"key": "loss", "value": v, "step": i, "timestamp": 10 + i}
            for i, v in enumerate([1.0, 0.5, float("nan"), 0.25])]}),
        new_event("TagsSet", run, {"tags": {"team": "vision", "tmp": "x"}}),
        new_event("TagsDeleted", run, {"keys": ["tmp"]}),
        new_event("AttributesSet", run, {"attributes": {"gpu": "none", "rank": 0, "gone": 1}}),
        new_event("AttributesDeleted", run, {"keys": ["gone"]}),
        new_event("CodeVersionRecorded", run, {"commit": "abc1234", "branch": "main",
                                               "dirty": True, "diff_digest": DIGEST_B}),
        new_event("EnvironmentRecorded", run, {"python": "3.11.7", "platform": "linux",
                                               "packages": {"numpy": "2.0"}}),
        new_event("RunInputLogged", run, {"kind": "DatasetVersion", "id": dv, "name": "train"}),
        new_event("ArtifactLogged", run, {"name": "model.pkl", "digest": DIGEST_B, "size": 42,
                                          "uri": f"modeldb://artifacts/{DIGEST_B}", "kind": "model"}),
        new_event("RunOutputLogged", run, {"kind": "Artifact", "id": DIGEST_B, "name": "model.pkl"}),
        new_event("RunStarted", child, {"project": "p", "experiment": "e", "name": "child",
                                        "parent_run_id": run, "start_time": T0}),
        new_event("RunFinished", child, {"status": "FAILED", "end_time": T0}),
        new_event("ValuesRedacted", child, {"reason": "nothing was sealed", "redacted": {},
                                            "key_ids": []}),
        new_event("RunDeleted", child, {}),
        new_event("RunFinished", run, {"status": "FINISHED", "end_time": T0 + timedelta(hours=1)}),
        new_event("RegisteredModelCreated", "clf", {"name": "clf", "description": "iris clf"}),
        new_event("ModelVersionCreated", "clf", {"version": 1, "run_id": run,
                                                 "artifact_name": "model.pkl",
                                                 "artifact_digest": DIGEST_B}),
        new_event("ModelVersionCreated", "clf", {"version": 2, "source_uri": "s3://x"}),
        new_event("ModelVersionStageChanged", "clf", {"version": 1, "stage": "Production"}),
        new_event("ModelAliasSet", "clf", {"alias": "champion", "version": 1}),
        new_event("ModelAliasSet", "clf", {"alias": "old", "version": 2}),
        new_event("ModelAliasDeleted", "clf", {"alias": "old"}),
        new_event("ModelVersionDeleted", "clf", {"version": 2}),
        new_event("RegisteredModelCreated", "gone", {"name": "gone"}),
        new_event("RegisteredModelDeleted", "gone", {}),
        new_event("DatasetCreated", "tmp", {"name": "tmp"}),
        new_event("DatasetDeleted", "tmp", {}),
        new_event("ExperimentCreated", "p/old", {"project": "p", "name": "old"}),
        new_event("ExperimentDeleted", "p/old", {}),
        new_event("ProjectCreated", "q", {"name": "q"}),
        new_event("ProjectDeleted", "q", {}),
        # governance and deployments (appended last, so earlier positions stay put)
        new_event("RegisteredModelUpdated", "clf", {"description": "iris classifier",
                                                    "tags": {"team": "vision"}}),
        new_event("ModelRuleSet", "clf", {"single_production": True,
                                          "approval_required": ["Production"]}),
        new_event("StageTransitionRequested", "clf", {"request_id": "r1", "version": 1,
                                                      "from_stage": "Production",
                                                      "to_stage": "Archived", "comment": "old"}),
        new_event("StageTransitionRejected", "clf", {"request_id": "r1", "version": 1,
                                                     "comment": "still needed"}),
        new_event("StageTransitionRequested", "clf", {"request_id": "r2", "version": 1,
                                                      "from_stage": "Production",
                                                      "to_stage": "Staging"}),
        new_event("StageTransitionApproved", "clf", {"request_id": "r2", "version": 1}),
        new_event("ModelVersionStageChanged", "clf", {"version": 1, "stage": "Staging",
                                                      "from_stage": "Production",
                                                      "cause": "approval", "request_id": "r2"}),
        new_event("ModelLockChanged", "clf", {"level": "closed", "comment": "frozen"}),
        new_event("EnvironmentRegistered", "prod-eu", {"name": "prod-eu", "stage": "production",
                                                       "location": "eu-west-1"}),
        new_event("DeploymentRecorded", "dep1", {"model": "clf", "version": 1,
                                                 "environment": "prod-eu"}),
        new_event("DeploymentStatusChanged", "dep1", {"status": "serving"}),
        new_event("WebhookRegistered", "hook1", {"url": "http://127.0.0.1:9/hook"}),
        new_event("WebhookDeleted", "hook1", {}),
    ]


def ungoverned(events: list[Event]) -> list[Event]:
    """The events HTTP ingest takes: registry events enter only as registry commands."""
    from modeldb.event_schema.types import GOVERNED_KINDS, GOVERNED_TYPES

    return [e for e in events if e.aggregate.kind not in GOVERNED_KINDS and e.type not in GOVERNED_TYPES]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """`modeldb serve` as a real child process."""

    home: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        log = open(self.home.parent / f"{self.home.name}-server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modeldb.infra.cli", "serve", "--port", str(self.port),
             "--data-dir", str(self.home)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("server did not become healthy")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_projected(self, timeout: float = 30.0) -> None:
        r = httpx.get(f"{self.url}/api/v1/projections",
                      params={"wait": "true", "timeout": timeout}, timeout=timeout + 5)
        assert r.status_code == 200, r.text

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        r = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables},
                       timeout=30)
        body = r.json()
        assert "errors" not in body, body["errors"]
        return body["data"]


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELDB_")}
    env.update(extra or {})
    return env


def read_all(log: SQLiteEventLog) -> list[RecordedEvent]:
    """Every event of an embedded log (one read returns a bounded batch)."""
    events: list[RecordedEvent] = []
    while batch := log.read_sync(events[-1].position if events else 0):
        events += batch
    return events


async def seen_while_rebuilding(system: System, name: str, look: Callable[[], Awaitable[T]]) -> list[T]:
    """Rebuild projection `name`, awaiting `look()` before each batch is applied (what the
    database holds mid-rebuild); its answers, one per batch."""
    projection = system.projections[name]
    apply_events = projection.apply_events
    seen: list[T] = []

    async def observed(conn: Any, events: list[RecordedEvent]) -> None:
        seen.append(await look())
        await apply_events(conn, events)

    projection.apply_events = observed  # type: ignore[attr-defined]
    try:
        await system.runtimes[name].rebuild()
    finally:
        del projection.apply_events  # type: ignore[attr-defined]
    return seen
