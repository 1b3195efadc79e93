"""`modeldb search TEXT`, as a user runs it: against a server and on the embedded home."""

from __future__ import annotations

import subprocess
import sys

import httpx
import orjson
import pytest

from tests.helpers import ServerProcess, run_events, server_env, wire

pytestmark = pytest.mark.parametrize("stack", ["embedded"], indirect=True)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modeldb.infra.cli", "search", *args],
                          capture_output=True, text=True, env=server_env(), timeout=120)


def test_search_from_the_command_line(modeldb_server: ServerProcess) -> None:
    events = [*run_events("run-a", name="resnet-baseline", tags={"team": "vision"}),
              *run_events("run-b", name="bert-small", params={"backbone": "resnet"})]
    r = httpx.post(f"{modeldb_server.url}/api/v1/events", json=wire(events))
    assert r.status_code == 202, r.text
    modeldb_server.wait_projected()

    shown = cli("resnet", "--url", modeldb_server.url)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["KIND", "ID", "NAME", "MATCH"]
    assert [line.split()[1] for line in lines[1:3]] == ["run-a", "run-b"]  # name match first
    assert lines[-1] == "2 hit(s)"

    as_json = cli("resn", "--kind", "Run", "--json", "--url", modeldb_server.url)
    assert [h["id"] for h in orjson.loads(as_json.stdout)] == ["run-a", "run-b"]

    bad = cli("resnet", "--kind", "Starship", "--url", modeldb_server.url)
    assert bad.returncode == 1 and "unknown kind 'Starship'" in bad.stderr

    modeldb_server.stop()  # the embedded home, read in this process
    local = cli("vision", "--json", "--data-dir", str(modeldb_server.home))
    assert local.returncode == 0, local.stderr
    assert [h["id"] for h in orjson.loads(local.stdout)] == ["run-a"]
