"""Operating a server: metrics, liveness and readiness, graceful shutdown, the modes that
refuse to start, proxy authentication, rate limits, JSON logs."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from modeldb.event_schema import uuid7
from modeldb.infra.ops import log_config
from modeldb.infra.security_cli import check_exposure, is_loopback
from modeldb.infra.settings import Settings
from tests.client.conftest import read_events
from tests.helpers import ServerProcess, free_port, run_events, server_env, wire


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_metrics_livez_readyz(modeldb_server: ServerProcess) -> None:
    url = modeldb_server.url
    events = wire(run_events(uuid7(), metrics={"loss": [1.0, 0.5, 0.25]}))
    assert httpx.post(f"{url}/api/v1/events", json=events).status_code == 202
    modeldb_server.wait_projected()
    assert httpx.post(f"{url}/graphql", json={"query": "{ runs { totalCount } }"}).status_code == 200
    assert httpx.get(f"{url}/livez").json() == {"status": "alive"}
    assert httpx.get(f"{url}/healthz").status_code == 200
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["projection_lag"]["sql"] == 0
    text = httpx.get(f"{url}/metrics").text
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
               for line in text.splitlines() if line and not line.startswith("#")}
    assert samples["modeldb_ingested_events_total"] == len(events)
    assert samples["modeldb_ingested_batches_total"] == 1
    assert samples['modeldb_projection_lag_events{projection="sql"}'] == 0
    assert samples['modeldb_http_request_seconds_count{method="POST",route="/graphql"}'] >= 1
    assert samples['modeldb_http_requests_total{method="POST",route="/api/v1/events",status="202"}'] == 1
    assert samples["modeldb_event_log_up"] == 1
    assert 'modeldb_http_in_flight{route="/metrics"} 1.0' in text  # itself, while answering


def test_sigterm_drains_ingest_batches_nothing_acknowledged_is_lost(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home", free_port(), server_env()).start()
    acknowledged: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                batch = wire(run_events(uuid7(), metrics={"loss": [0.1] * 200}))
                try:
                    r = http.post(f"{server.url}/api/v1/events", json=batch)
                except httpx.HTTPError:
                    return  # the server has gone: nothing more is acknowledged
                if r.status_code == 202:
                    acknowledged.extend(e["event_id"] for e in batch)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    # uvicorn drains, shuts the app down, then re-raises the signal it caught
    assert server.proc.wait(30) in (0, -signal.SIGTERM)
    stop.set()
    for t in threads:
        t.join(30)
    stored = {e["event_id"] for e in read_events(server.home / "events.db")}
    assert len(acknowledged) > 100
    assert set(acknowledged) <= stored


def test_local_mode_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")
    local = Settings.load(tmp_path)
    assert check_exposure(local, "0.0.0.0", insecure=False)
    assert check_exposure(local, "0.0.0.0", insecure=True) is None
    assert check_exposure(local, "127.0.0.1", insecure=False) is None
    from dataclasses import replace

    assert check_exposure(replace(local, auth="token"), "0.0.0.0", insecure=False) is None
    assert "MODELDB_AUTH" in (check_exposure(replace(local, auth="nope"), "::1", False) or "")
    done = subprocess.run([sys.executable, "-m", "modeldb.infra.cli", "serve", "--host", "0.0.0.0",
                           "--port", str(free_port()), "--data-dir", str(tmp_path / "h")],
                          capture_output=True, text=True, timeout=60, env=server_env())
    assert done.returncode == 2
    assert "--insecure-no-auth" in done.stderr


def test_proxy_mode_believes_only_the_configured_header(tmp_path: Path) -> None:
    home = tmp_path / "home"
    subprocess.run([sys.executable, "-m", "modeldb.infra.cli", "grant", "alice", "reader",
                    "--project", "p", "--data-dir", str(home)], check=True, env=server_env(),
                   capture_output=True, timeout=60)
    env = server_env({"MODELDB_AUTH": "proxy", "MODELDB_AUTH_PROXY_HEADER": "X-Auth-User"})
    server = ServerProcess(home, free_port(), env).start()
    try:
        query = {"query": "{ runs { totalCount } }"}
        assert httpx.post(f"{server.url}/graphql", json=query).status_code == 401
        # The local mode's development header means nothing here.
        assert httpx.post(f"{server.url}/graphql", json=query,
                          headers={"x-modeldb-user": "alice"}).status_code == 401
        r = httpx.post(f"{server.url}/graphql", json=query, headers={"x-auth-user": "alice"})
        assert r.status_code == 200 and r.json()["data"]["runs"]["totalCount"] == 0
        write = httpx.post(f"{server.url}/api/v1/events", json=wire(run_events(uuid7())),
                           headers={"x-auth-user": "alice"})
        assert write.status_code == 403  # a reader of p
    finally:
        server.stop()


def test_rate_limit_answers_429_per_caller(tmp_path: Path) -> None:
    env = server_env({"MODELDB_RATE_LIMIT": "5"})
    server = ServerProcess(tmp_path / "home", free_port(), env).start()
    try:
        with httpx.Client(timeout=10) as http:
            answers = [http.get(f"{server.url}/api/v1/projections").status_code for _ in range(30)]
            health = [http.get(f"{server.url}/healthz").status_code for _ in range(30)]
        assert 429 in answers and 200 in answers
        assert set(health) == {200}  # public routes are not limited (probes, scrapes)
        time.sleep(1.1)
        assert httpx.get(f"{server.url}/api/v1/projections").status_code == 200
    finally:
        server.stop()


def test_json_log_format_writes_one_object_per_line() -> None:
    config = log_config("json", "info")
    assert config is not None and log_config("text", "info") is None
    stream = io.StringIO()
    config["handlers"]["default"]["stream"] = stream
    try:
        logging.config.dictConfig(config)
        try:
            raise ValueError("secret-looking detail")
        except ValueError:
            logging.getLogger("modeldb").exception("ingest failed")
    finally:
        for name in config["loggers"]:
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
    doc = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert doc["level"] == "error" and doc["message"] == "ingest failed"
    assert doc["exception"] == "ValueError" and "secret-looking" not in stream.getvalue()


# Run in a fresh interpreter: this one may have started servers, which bound the heap.
_BIG_BLOCK_AFTER_A_BIGGER_ONE = """
import ctypes, sys
from modeldb.infra.ops import bound_malloc_heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "bound":
    assert bound_malloc_heap()
libc.free(libc.malloc(8 << 20))  # freeing a mapped 8 MiB block raises glibc's threshold
before = libc.mallinfo2().hblks  # blocks in memory maps of their own
block = libc.malloc(6 << 20)
print(libc.mallinfo2().hblks - before)
"""


def _glibc_with_mallinfo2() -> bool:
    name, version = platform.libc_ver()
    return name == "glibc" and tuple(map(int, version.split(".")[:2])) >= (2, 33)


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="mallopt's thresholds are glibc's (mallinfo2: 2.33)")
def test_bounded_heap_keeps_big_blocks_in_maps_given_back_when_freed() -> None:
    def mapped(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", _BIG_BLOCK_AFTER_A_BIGGER_ONE, mode],
                              capture_output=True, text=True, check=True)
        return int(done.stdout)

    assert mapped("default") == 0  # glibc alone: the 6 MiB block went into the heap
    assert mapped("bound") == 1  # bound_malloc_heap: its own map, unmapped when freed
