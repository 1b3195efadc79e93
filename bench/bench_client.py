"""Micro benchmark: what one `run.log_metric` costs the caller, with the embedded transport.

    python bench/bench_client.py [--calls 200000] [--home DIR]

Prints p50/p99/p99.9 of single calls (each timed with perf_counter_ns, whose own cost of
some tens of ns is included) for each timed pass (the first pass also pays for the memory
the queue touches for the first time), the mean over an untimed loop, and how long the
worker then needs to get every point into the SQLite log.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--passes", type=int, default=2, help="timed passes of --calls each")
    parser.add_argument("--home", type=Path, default=None, help="embedded home (default: a temp dir)")
    args = parser.parse_args()

    import modeldb
    from modeldb.writer.sqlite_log import SQLiteEventLog

    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "home"
        modeldb.init(home, project="bench", experiment="log_metric", spool_dir=Path(tmp) / "spool")
        run = modeldb.start_run(name="bench")
        log_metric, clock, n = run.log_metric, time.perf_counter_ns, args.calls

        for step in range(20_000):  # warm up: the worker's first batches, caches
            log_metric("warmup", 0.5, step)
        modeldb.flush(60)

        results = []
        samples = [0] * n
        for attempt in range(args.passes):  # later passes reuse memory the first one touched
            key = f"loss{attempt}"
            for step in range(n):
                t0 = clock()
                log_metric(key, 0.5, step)
                samples[step] = clock() - t0
            ordered = sorted(samples)
            results.append({p: ordered[min(n - 1, int(n * p / 100))] / 1000 for p in (50, 99, 99.9)})
        t0 = clock()
        for step in range(n):
            log_metric("acc", 0.5, step)
        loop_ns = (clock() - t0) / n

        t0 = time.perf_counter()
        delivered = modeldb.flush(120)
        drain_s = time.perf_counter() - t0
        run.end()
        modeldb.flush(60)

        log = SQLiteEventLog(home / "events.db")
        points, after = 0, 0
        while batch := log.read_sync(after, 10_000):
            after = batch[-1].position
            points += sum(len(e.raw["payload"]["points"]) for e in batch
                          if e.raw["type"] == "MetricsLogged")
        print(f"log_metric x {n:,} (embedded, Python {sys.version.split()[0]})")
        for attempt, pct in enumerate(results, 1):
            print(f"  pass {attempt}: per call  p50 {pct[50]:.2f} us   p99 {pct[99]:.2f} us   "
                  f"p99.9 {pct[99.9]:.2f} us")
        print(f"  untimed loop mean {loop_ns / 1000:.2f} us/call")
        print(f"  drain after logging: {drain_s:.2f} s (flush -> {delivered}); "
              f"{points:,} points in the log (expected {(args.passes + 1) * n + 20_000:,})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
