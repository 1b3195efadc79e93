"""`modeldb audit ID --at T --format md|json|html`: the report as of a time, with the
upstream lineage rebuilt from the events recorded until then."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from modeldb.event_schema import Event, new_event, uuid7
from modeldb.infra.report import audit_report
from modeldb.infra.settings import Settings
from modeldb.infra.system import System
from modeldb.projectors.lineage import graph_changes
from modeldb.projectors.lineage_memory import LINEAGE_EVENT_TYPES, MemoryGraph
from tests.api.test_analysis import lineage_world
from tests.helpers import DIGEST_A, DIGEST_B, every_event_type, run_events, server_env, wire

embedded = pytest.mark.parametrize("stack", ["embedded"], indirect=True)
EVIL = "<script>alert('x')</script>"


def phases(run: str) -> tuple[list[Event], list[Event]]:
    """Before: a run trained on iris v1 made clf v1. After: the run is said to have used iris
    v2 and a commit too (an edge added later must not show in a report as of before)."""
    before = [new_event("DatasetCreated", "iris", {"name": "iris"}),
              new_event("DatasetVersionCreated", "iris", {"digest": DIGEST_A}),
              *run_events(run, name=EVIL),
              new_event("RunInputLogged", run, {"kind": "DatasetVersion", "id": f"iris@{DIGEST_A}"}),
              new_event("RegisteredModelCreated", "clf", {"name": "clf", "description": EVIL}),
              new_event("ModelVersionCreated", "clf", {"version": 1, "run_id": run})]
    after = [new_event("DatasetVersionCreated", "iris", {"digest": DIGEST_B}),
             new_event("RunInputLogged", run, {"kind": "DatasetVersion", "id": f"iris@{DIGEST_B}"}),
             new_event("CodeVersionRecorded", run, {"commit": "deadbeef"}),
             new_event("ModelVersionStageChanged", "clf", {"version": 1, "stage": "Production"})]
    return before, after


async def populate(system: System) -> datetime:
    before, after = phases(uuid7())
    await system.writer.ingest(wire(before), "alice")
    await asyncio.sleep(0.01)
    at = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await system.writer.ingest(wire(after), "bob")
    await system.catch_up()
    return at


@embedded
async def test_report_as_of_a_time_rebuilds_lineage_from_the_events(system: System) -> None:
    at = await populate(system)
    then = json.loads(await audit_report(system, "modelversion:clf/1", "json", at))
    now = json.loads(await audit_report(system, "modelversion:clf/1", "json"))
    ids_then = {n["id"] for n in then["upstream"]["nodes"]}
    ids_now = {n["id"] for n in now["upstream"]["nodes"]}
    assert f"datasetversion:iris@{DIGEST_A}" in ids_then and f"datasetversion:iris@{DIGEST_B}" in ids_now
    assert ids_now - ids_then == {f"datasetversion:iris@{DIGEST_B}", "codeversion:deadbeef"}
    assert then["upstream"]["source"].startswith("rebuilt from the events recorded up to")
    assert now["upstream"]["source"] == "the lineage graph now"
    assert [e["type"] for e in then["events"]] == ["RegisteredModelCreated", "ModelVersionCreated"]
    assert then["transitions"] == [] and [t["to_stage"] for t in now["transitions"]] == ["Production"]
    # As of now, rebuilding from the events gives exactly the live graph.
    rebuilt = json.loads(await audit_report(system, "modelversion:clf/1", "json", datetime.now(UTC)))
    assert rebuilt["upstream"]["nodes"] == now["upstream"]["nodes"]
    assert rebuilt["upstream"]["edges"] == now["upstream"]["edges"]
    md = await audit_report(system, "modelversion:clf/1", "md", at)
    assert f"as of {at.isoformat()}" in md and "deadbeef" not in md and "USED" in md


@embedded
async def test_html_report_is_self_contained_and_escaped(system: System) -> None:
    at = await populate(system)
    page = await audit_report(system, "modelversion:clf/1", "html")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "&lt;script&gt;" in page  # the run name and description
    assert not re.search(r"\b(src|href)\s*=", page) and "@import" not in page and "url(" not in page
    assert "<h2>Stage transitions</h2>" in page and "Production" in page
    assert "codeversion:deadbeef" in page and "<h2>Upstream lineage</h2>" in page
    earlier = await audit_report(system, "modelversion:clf/1", "html", at)
    assert "codeversion:deadbeef" not in earlier and "rebuilt from the events" in earlier
    with pytest.raises(ValueError, match="format must be one of md, json, html"):
        await audit_report(system, "modelversion:clf/1", "pdf")


@embedded
async def test_cli_takes_format_html_and_at(settings: Settings, tmp_path: Path) -> None:
    system = await System.open(settings)
    try:
        at = await populate(system)
    finally:
        await system.close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "modeldb.infra.cli", "audit", *args, "--data-dir",
                               str(settings.home)], capture_output=True, text=True, env=server_env(),
                              timeout=120)

    page = cli("modelversion:clf/1", "--format", "html", "--at", at.isoformat())
    assert page.returncode == 0, page.stderr
    assert "<!DOCTYPE html>" in page.stdout and "deadbeef" not in page.stdout
    # A local time with an offset means the same moment.
    shifted = cli("modelversion:clf/1", "--format", "json", "--at",
                  at.astimezone(timezone(timedelta(hours=2))).isoformat())
    assert json.loads(shifted.stdout)["as_of"] == at.isoformat()
    bad = cli("modelversion:clf/1", "--at", "yesterday")
    assert bad.returncode == 2 and "not an ISO 8601 time: 'yesterday'" in bad.stderr


def test_lineage_event_types_cover_everything_graph_changes_reads() -> None:
    events = every_event_type() + lineage_world()[0]
    everything = graph_changes(events)
    only_lineage = graph_changes(e for e in events if e.type in LINEAGE_EVENT_TYPES)
    assert only_lineage.nodes == everything.nodes and only_lineage.edges == everything.edges
    assert only_lineage.refs == everything.refs


@embedded
async def test_memory_graph_answers_as_the_sql_graph(system: System) -> None:
    events = every_event_type() + lineage_world()[0]
    await system.writer.ingest(wire(events), "t")
    await system.catch_up(["graph"])
    memory = MemoryGraph.of_events(events)
    for start in sorted(memory.nodes):
        for direction in ("UPSTREAM", "DOWNSTREAM"):
            for depth, kinds in ((1, None), (4, ["USED", "GENERATED_BY"]), (20, None)):
                assert await memory.lineage(start, direction, depth, kinds) == \
                    await system.graph.lineage(start, direction, depth, kinds), (start, direction, depth)
