"""System metrics: a daemon thread that samples CPU, memory, disk, network (psutil) and
GPUs (pynvml, when importable and a GPU is present) into a run as `system/*` metrics.

Sampling is tracking, never training: every failure is logged once and ends the sampling,
and nothing here blocks the caller (stop() waits at most a moment for one sample).
"""

from __future__ import annotations

import importlib
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modeldb._run import Run

log = logging.getLogger("modeldb")
_MB = 1024 * 1024
NODE_TAG = "system.node"


def node_name() -> str:
    """This machine's name, as a tag: in multi-node jobs each node's run says where it ran."""
    return socket.gethostname() or "unknown"


def _import_nvml() -> Any | None:
    try:
        return importlib.import_module("pynvml")  # optional: NVIDIA machines have it
    except ImportError:
        return None


def gpu_handles(nvml: Any | None = None) -> list[Any]:
    """NVML handles of this machine's GPUs; [] when pynvml is missing, NVML cannot start
    (no driver) or there is no GPU. `nvml` is the pynvml module (tests pass a fake)."""
    module = _import_nvml() if nvml is None else nvml
    if module is None:
        return []
    try:
        module.nvmlInit()
        return [module.nvmlDeviceGetHandleByIndex(i) for i in range(module.nvmlDeviceGetCount())]
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, …: no usable GPU
        return []


class SystemSampler:
    """Logs one sample of the machine every `interval` s into `run`, step = sample index."""

    def __init__(self, run: Run, interval: float, nvml: Any | None = None) -> None:
        import psutil  # a dependency of the SDK, but only runs that sample pay for the import

        self._psutil = psutil
        self._run = run
        self._interval = interval
        self._stop = threading.Event()
        self._nvml: Any = nvml
        self._gpus: list[Any] = []
        self._base: dict[str, float] = {}
        self.step = 0
        self.thread = threading.Thread(target=self._loop, name="modeldb-system-metrics",
                                       daemon=True)

    def start(self) -> SystemSampler:
        self.thread.start()
        return self

    def stop(self, wait: float = 1.0) -> None:
        self._stop.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(wait)

    def _loop(self) -> None:
        try:
            self._prepare()
            while True:
                self._run.log_metrics(self.sample(), step=self.step)
                self.step += 1
                if self._stop.wait(self._interval):
                    return
        except Exception as exc:
            log.warning("modeldb: system metrics stopped for run %s: %s", self._run.id, exc)

    def _prepare(self) -> None:
        if self._nvml is None:
            self._nvml = _import_nvml()  # None: no GPU metrics; psutil's are still worth having
        self._gpus = gpu_handles(self._nvml) if self._nvml is not None else []
        self._psutil.cpu_percent(interval=None)  # primes the counter: the next call is a delta
        self._base = self._io()

    def _io(self) -> dict[str, float]:
        # Either may be None (no disks, some containers); then its metrics are left out.
        disk = self._psutil.disk_io_counters()
        net = self._psutil.net_io_counters()
        io: dict[str, float] = {}
        if disk is not None:
            io["disk_read_mb"] = disk.read_bytes / _MB
            io["disk_write_mb"] = disk.write_bytes / _MB
        if net is not None:
            io["network_sent_mb"] = net.bytes_sent / _MB
            io["network_recv_mb"] = net.bytes_recv / _MB
        return io

    def sample(self) -> dict[str, float]:
        """One sample; I/O counters in MB since sampling began, so runs compare."""
        memory = self._psutil.virtual_memory()
        values = {
            "system/cpu_percent": float(self._psutil.cpu_percent(interval=None)),
            "system/memory_used_mb": memory.used / _MB,
            "system/memory_percent": float(memory.percent),
        }
        for key, total in self._io().items():
            values[f"system/{key}"] = total - self._base.get(key, total)
        nvml = self._nvml
        for i, handle in enumerate(self._gpus):
            use = nvml.nvmlDeviceGetUtilizationRates(handle)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            values[f"system/gpu{i}_utilization_percent"] = float(use.gpu)
            values[f"system/gpu{i}_memory_used_mb"] = mem.used / _MB
            values[f"system/gpu{i}_memory_percent"] = 100.0 * mem.used / mem.total
        return values
