"""A bounded load test on loopback: 16 SDK clients (separate processes) log at once into
a token-mode server; nothing is lost and nothing is duplicated."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.client.conftest import read_events
from tests.helpers import ServerProcess, free_port, server_env

CLIENTS, POINTS = 16, 3000
SCRIPT = """
import sys, modeldb
modeldb.init(sys.argv[1], project="load", experiment="e")
with modeldb.start_run(name=sys.argv[2]) as run:
    for step in range(int(sys.argv[3])):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    run.log_params({"client": sys.argv[2]})
assert modeldb.flush(120)
print(run.id)
"""


def test_concurrent_sdk_clients_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    token = subprocess.run([sys.executable, "-m", "modeldb.infra.cli", "token", "create", "loader",
                            "--data-dir", str(home)], capture_output=True, text=True, check=True,
                           env=server_env(), timeout=60).stdout.strip().splitlines()[-1]
    subprocess.run([sys.executable, "-m", "modeldb.infra.cli", "grant", "loader", "writer",
                    "--project", "load", "--data-dir", str(home)], check=True, env=server_env(),
                   capture_output=True, timeout=60)
    server = ServerProcess(home, free_port(), server_env({"MODELDB_AUTH": "token"})).start()
    try:
        env = server_env({"MODELDB_TOKEN": token, "MODELDB_HOME": str(tmp_path / "sdk")})
        procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, server.url, f"c{i}", str(POINTS)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for i in range(CLIENTS)]
        run_ids = []
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err[-2000:]
            run_ids.append(out.strip().splitlines()[-1])
    finally:
        server.stop()
    events = read_events(home / "events.db")
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    steps: dict[str, Counter[int]] = {r: Counter() for r in run_ids}
    for e in events:
        if e["type"] == "MetricsLogged":
            steps[e["aggregate"]["id"]].update(p["step"] for p in e["payload"]["points"])
    for run_id in run_ids:
        assert steps[run_id] == Counter(range(POINTS)), f"run {run_id} lost or repeated points"
    assert {e["actor"] for e in events} == {"loader"}
