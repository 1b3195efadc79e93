"""Server processes for the MLflow comparison: `modeldb serve` and `mlflow server`, each a
child process on a free loopback port, with its resident memory sampled while it works.

The MLflow server needs the full `mlflow==3.17.2` package, whose graphene pin wants
graphql-core < 3.3 while strawberry (our GraphQL) wants ≥ 3.3: the two cannot share one
resolved environment. The server therefore runs from the first of:
1. `$MODELDB_BENCH_MLFLOW_PYTHON`, a python that has mlflow 3.17.2 and psycopg2;
2. this interpreter, when it can already import `mlflow.server` at 3.17.2;
3. `.venv-mlflow/` at the repository root, created once per machine (with this python's
   site-packages visible, so only mlflow's own pins are installed there).
The client side (`mlflow-skinny`, in the `importers` extra) runs in-process either way.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

MLFLOW_VERSION = "3.17.2"
REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv-mlflow"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _has_mlflow_server(python: str) -> bool:
    probe = ("import mlflow, mlflow.server, psycopg2; "
             f"raise SystemExit(mlflow.__version__ != {MLFLOW_VERSION!r})")
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def mlflow_python() -> str:
    """A python that runs the MLflow tracking server (see the module docstring)."""
    given = os.environ.get("MODELDB_BENCH_MLFLOW_PYTHON")
    if given:
        return given
    if _has_mlflow_server(sys.executable):
        return sys.executable
    python = VENV / "bin" / "python"
    if not (python.exists() and _has_mlflow_server(str(python))):
        print(f"bench: installing mlflow=={MLFLOW_VERSION} into {VENV} (once per machine)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"mlflow=={MLFLOW_VERSION}",
                        "psycopg2-binary"], check=True)
    return str(python)


@dataclass
class Server:
    """A child server process; `peak_rss_mb` is the largest RSS of its process tree seen by
    a background thread sampling every 0.2 s, `peak_private_mb` the largest RSS less its
    file-backed and shared pages (a memory-mapped database file counts in RSS)."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    peak_rss_mb: float = 0.0
    peak_private_mb: float = 0.0
    _sampler: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def wait_healthy(self, path: str, timeout: float = 120.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text()[-2000:])
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    self.start_sampling()
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} did not become healthy in {timeout} s; see {self.log_path}")

    def memory_mb(self) -> tuple[float, float]:
        """(RSS, RSS less file-backed and shared pages) of the process tree, MiB."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0, 0.0
        rss = private = 0
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                info = p.memory_info()
                rss += info.rss
                private += info.rss - getattr(info, "shared", 0)
        return rss / 2**20, private / 2**20

    def start_sampling(self) -> None:
        def loop() -> None:
            while not self._stop.wait(0.2):
                rss, private = self.memory_mb()
                self.peak_rss_mb = max(self.peak_rss_mb, rss)
                self.peak_private_mb = max(self.peak_private_mb, private)

        self._sampler = threading.Thread(target=loop, daemon=True, name=f"rss-{self.name}")
        self._sampler.start()

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # mlflow's uvicorn workers are children of the CLI process: make sure none is left.
        for child in _orphans.pop(self.proc.pid, []):
            if child.is_running():
                child.kill()


_orphans: dict[int, list[psutil.Process]] = {}


def _remember_children(server: Server) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        _orphans[server.proc.pid] = psutil.Process(server.proc.pid).children(recursive=True)


def start_modeldb(home: Path, extra_env: dict[str, str] | None = None) -> Server:
    """`modeldb serve --data-dir home`; MODELDB_* of the caller are dropped, `extra_env` added."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELDB_")} | (extra_env or {})
    home.mkdir(parents=True, exist_ok=True)
    log_path = home.parent / f"{home.name}-serve.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "modeldb.infra.cli", "serve", "--port", str(port),
                                 "--data-dir", str(home)], env=env, stdout=log, stderr=subprocess.STDOUT)
    return Server("modeldb serve", f"http://127.0.0.1:{port}", proc, log_path)


def start_mlflow(backend_uri: str, workdir: Path, python: str) -> Server:
    """`mlflow server` with one worker (the machine has two cores) and no job runner."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ) | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log_path = workdir / "mlflow-server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [python, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
             "--default-artifact-root", str(workdir / "artifacts"), "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    return Server("mlflow server", f"http://127.0.0.1:{port}", proc, log_path)


def healthy(server: Server, timeout: float = 180.0) -> Server:
    server.wait_healthy("/healthz" if server.name.startswith("modeldb") else "/health", timeout)
    _remember_children(server)
    return server
