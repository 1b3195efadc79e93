"""What tracking costs the training code: µs per `run.log_metric` call (p50, p99) with a
reachable server, with the server down, and offline; and the slowdown of a tight NumPy
training loop logging a few metrics per step, tracking on vs off.

Each logging call only enqueues; the worker thread batches and sends meanwhile, so the
loop's slowdown also counts what that thread takes from the training thread (the GIL).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def run(quick: bool = False) -> list[dict[str, Any]]:
    import modeldb
    from modeldb import _client

    calls = 50_000 if quick else 300_000
    steps = 1_500 if quick else 5_000
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server, url = _serve(root / "server")
        try:
            cases = [("server reachable (http)", url),
                     ("server down (unreachable url)", f"http://127.0.0.1:{_free_port()}"),
                     ("offline mode (offline://folder)", f"offline://{root / 'offline'}")]
            for label, target in cases:
                modeldb.init(target, project="bench", experiment="client", spool_dir=root / "spool",
                             exit_timeout=2.0, retry_seconds=1.0)
                samples = _time_calls(modeldb.start_run(name=label), calls)
                _client.shutdown(timeout=2.0)
                p50, p99 = _percentile(samples, 50), _percentile(samples, 99)
                rows.append({"stage": f"SDK log_metric, {label}", "events": calls,
                             "events_per_s": round(1e9 / statistics.fmean(samples)),
                             "note": f"per call p50 {p50 / 1000:.2f} µs, p99 {p99 / 1000:.2f} µs"})
            rows.append(_training_loop(url, root, steps, "to the server"))
            # Offline, no server shares the machine's cores with the loop: tracking's own cost.
            rows.append(_training_loop(f"offline://{root / 'loop-offline'}", root, steps, "offline"))
        finally:
            _client.shutdown(timeout=2.0)
            server.terminate()
            server.wait(10)
    return rows


def _time_calls(run: Any, calls: int) -> list[int]:
    log_metric, clock = run.log_metric, time.perf_counter_ns
    for step in range(5_000):  # warm up: the worker's first batches, caches
        log_metric("warmup", 0.5, step)
    samples = [0] * calls
    for step in range(calls):
        t0 = clock()
        log_metric("loss", 0.5, step)
        samples[step] = clock() - t0
    run.end()
    return samples


def _training_loop(url: str, root: Path, steps: int, label: str, rounds: int = 7) -> dict[str, Any]:
    """A small model trained by hand: a 128x128 matmul forward, a gradient and an update per
    step, logging 3 metrics; the same loop untracked. Two measures, medians over `rounds`
    passes of each, alternating ABBA so load left behind by a pass falls on both sides:

    - wall clock: what the user waits (noisy when other processes share the cores);
    - CPU time of this process, the worker's delivery of the pass's points included (it is
      drained at the end of a tracked pass): what tracking costs, whatever else runs.

    BLAS runs on one thread: a matrix this small gains nothing from more, and the loop's
    time then does not hinge on which cores happen to be free."""
    import numpy as np

    import modeldb
    from modeldb import _client

    rng = np.random.default_rng(0)
    x, target = rng.standard_normal((128, 128)), rng.standard_normal((128, 128))
    w = np.zeros((128, 128))

    def train(log: Callable[[float, float, int], None], first: int) -> tuple[float, float]:
        nonlocal w
        modeldb.flush(30)  # untimed: nothing of an earlier pass is still being sent
        cpu, start = time.process_time(), time.perf_counter()
        for step in range(first, first + steps):
            error = x @ w - target
            grad = x.T @ error / 128
            w -= 0.01 * grad
            log(float(np.mean(error * error)), float(np.abs(grad).max()), step)
        wall = time.perf_counter() - start
        if log is not untracked:
            modeldb.flush(30)
        return wall, time.process_time() - cpu

    def untracked(loss: float, grad: float, step: int) -> None:
        pass  # the same float() conversions, without tracking: only tracking is measured

    modeldb.init(url, project="bench", experiment="loop", spool_dir=root / "spool")
    run = modeldb.start_run(name="training-loop")

    def tracked(loss: float, grad: float, step: int) -> None:
        run.log_metric("loss", loss, step)
        run.log_metric("grad_max", grad, step)
        run.log_metric("lr", 0.01, step)

    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    with _one_blas_thread():
        train(untracked, 0), train(tracked, 0)  # warm-up: caches, the worker's first batch
        for attempt in range(1, rounds + 1):
            for log, times in ((untracked, off), (tracked, on))[:: 1 if attempt % 2 else -1]:
                times.append(train(log, attempt * steps))
    run.end()
    _client.shutdown(timeout=30)
    wall_off, wall_on = (statistics.median(t[0] for t in ts) / steps for ts in (off, on))
    cpu_off, cpu_on = (statistics.median(t[1] for t in ts) / steps for ts in (off, on))
    return {"stage": f"training loop, 128x128 matmul step + 3 metrics/step, {label}: on vs off",
            "events": steps * 3, "events_per_s": round(3 / wall_on),
            "note": f"slowdown {(wall_on / wall_off - 1) * 100:+.1f}% wall ({wall_off * 1e6:.0f} → "
                    f"{wall_on * 1e6:.0f} µs/step), {(cpu_on / cpu_off - 1) * 100:+.1f}% CPU "
                    f"({cpu_off * 1e6:.0f} → {cpu_on * 1e6:.0f} µs/step); median of {rounds} "
                    f"passes of {steps:,} steps"}


def _one_blas_thread() -> Any:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without it, BLAS keeps its own thread count
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1)


def _percentile(samples: list[int], pct: float) -> int:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A real `modeldb serve` (embedded storage) on a free loopback port."""
    port = _free_port()
    home.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-m", "modeldb.infra.cli", "serve", "--port", str(port),
                             "--data-dir", str(home)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"modeldb serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise TimeoutError("modeldb serve did not become healthy")
