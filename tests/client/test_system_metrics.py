"""System metrics: a sampler thread logs `system/*` metrics into the run until it ends."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import modeldb
from modeldb import _system
from tests.client.conftest import metric_points, of_type, read_events

KEYS = {"system/cpu_percent", "system/memory_used_mb", "system/memory_percent",
        "system/disk_read_mb", "system/disk_write_mb", "system/network_sent_mb",
        "system/network_recv_mb"}


def test_a_run_samples_the_machine_until_it_ends(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELDB_SYSTEM_METRICS_INTERVAL", "0.05")
    modeldb.init(tmp_path / "home")
    with modeldb.start_run(log_system_metrics=True) as run:
        time.sleep(0.3)
        sampler = run._sampler
    assert sampler is not None and not sampler.thread.is_alive()
    assert modeldb.flush(10)
    events = read_events(tmp_path / "home" / "events.db")
    points = metric_points(events)
    assert {p["key"] for p in points} >= KEYS
    steps = sorted({p["step"] for p in points if p["key"] == "system/cpu_percent"})
    assert steps == list(range(len(steps))) and len(steps) >= 2  # step = sample index
    tags = [e["payload"]["tags"] for e in of_type(events, "TagsSet")]
    assert {"system.node": socket.gethostname()} in tags
    # Nothing sampled after the run finished.
    finished = of_type(events, "RunFinished")[0]["_position"]
    assert all(e["_position"] < finished for e in of_type(events, "MetricsLogged"))


def test_off_by_default_and_on_by_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modeldb.init(tmp_path / "home")
    with modeldb.start_run() as run:
        assert run._sampler is None
    monkeypatch.setenv("MODELDB_SYSTEM_METRICS", "true")
    monkeypatch.setenv("MODELDB_SYSTEM_METRICS_INTERVAL", "0.05")
    with modeldb.start_run() as run:
        assert run._sampler is not None
    with modeldb.start_run(log_system_metrics=False) as run:
        assert run._sampler is None


def test_a_failing_sample_is_logged_once_and_stops_sampling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("MODELDB_SYSTEM_METRICS_INTERVAL", "0.01")
    calls = []

    def broken(self: _system.SystemSampler) -> dict[str, float]:
        calls.append(1)
        raise OSError("no /proc here")

    monkeypatch.setattr(_system.SystemSampler, "sample", broken)
    modeldb.init(tmp_path / "home")
    with caplog.at_level("WARNING", logger="modeldb"), \
            modeldb.start_run(log_system_metrics=True) as run:
        assert run._sampler is not None
        run._sampler.thread.join(2)
        assert not run._sampler.thread.is_alive()
        run.log_metric("loss", 1.0)  # training goes on
    assert len(calls) == 1
    assert [r for r in caplog.records if "system metrics stopped" in r.getMessage()]


class FakeNVML:
    def __init__(self, count: int, fail: bool = False) -> None:
        self.count, self.fail = count, fail

    def nvmlInit(self) -> None:
        if self.fail:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return f"gpu{i}"

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        return SimpleNamespace(gpu=42)

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        return SimpleNamespace(used=512 * 1024 * 1024, total=1024 * 1024 * 1024)


def test_gpu_detection() -> None:
    assert _system.gpu_handles(FakeNVML(0)) == []
    assert _system.gpu_handles(FakeNVML(2, fail=True)) == []  # no driver
    assert _system.gpu_handles(FakeNVML(2)) == ["gpu0", "gpu1"]
    try:
        import pynvml  # noqa: F401
    except ImportError:
        assert _system.gpu_handles() == []  # not installed: a no-op


def test_gpu_metrics_when_a_gpu_is_present(tmp_path: Path) -> None:
    modeldb.init(tmp_path / "home")
    run = modeldb.start_run()
    sampler = _system.SystemSampler(run, 10, nvml=FakeNVML(1))
    sampler._prepare()
    values = sampler.sample()
    assert values["system/gpu0_utilization_percent"] == 42.0
    assert values["system/gpu0_memory_used_mb"] == 512.0
    assert values["system/gpu0_memory_percent"] == 50.0
    assert set(values) >= KEYS
    run.end()
