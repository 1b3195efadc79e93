"""Events per second through each stage of the embedded pipeline: decode+validate, append
to the SQLite log, and each projection rebuilding from the log."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from modeldb.event_schema import decode_batch, new_event, to_wire, uuid7
from modeldb.event_schema.codec import parse_body
from modeldb.infra.settings import Settings
from modeldb.infra.system import PROJECTIONS, System
from modeldb.writer.service import Writer
from modeldb.writer.sqlite_log import SQLiteEventLog


def workload(events: int) -> list[dict[str, Any]]:
    """Runs shaped like real training: params, tags, metric batches of 100 points."""
    from datetime import UTC, datetime

    out: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    while len(out) < events:
        run = uuid7()
        out.append(to_wire(new_event("RunStarted", run, {"project": "bench", "experiment": "e",
                                                        "start_time": now})))
        out.append(to_wire(new_event("ParamsLogged", run, {"params": {f"p{i}": i * 0.1
                                                                      for i in range(20)}})))
        out.append(to_wire(new_event("TagsSet", run, {"tags": {"team": "bench"}})))
        for step in range(0, 1000, 100):
            out.append(to_wire(new_event("MetricsLogged", run, {"points": [
                {"key": f"m{k}", "value": 1.0 / (s + 1), "step": s, "timestamp": s}
                for s in range(step, step + 10) for k in range(10)]})))
        out.append(to_wire(new_event("RunFinished", run, {"status": "FINISHED", "end_time": now})))
    return out[:events]


def _rate(count: int, fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 20_000 if quick else 200_000
    events = workload(n)
    # Bodies of 1000 events, as the SDK sends them: decoding one huge body would measure
    # the garbage collector walking millions of live objects, not the codec.
    bodies = [orjson.dumps(events[i : i + 1000]) for i in range(0, n, 1000)]
    results: list[dict[str, Any]] = []

    def add(stage: str, rate: float, note: str = "") -> None:
        results.append({"stage": stage, "events": n, "events_per_s": round(rate), "note": note})

    add("decode+validate (HTTP bodies of 1000 → events)",
        _rate(n, lambda: [decode_batch(parse_body(body)) for body in bodies]))
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        log = SQLiteEventLog(home / "events.db")
        writer = Writer(log)
        stored = [writer.prepare(events[i : i + 1000], "bench") for i in range(0, n, 1000)]
        add("validate+stamp (writer.prepare)",
            _rate(n, lambda: [writer.prepare(events[i : i + 1000], "bench")
                              for i in range(0, n, 1000)]))
        add("append to SQLite log (batches of 1000)",
            _rate(n, lambda: [log.append_sync(batch) for batch in stored]), "synchronous=FULL")
        asyncio.run(log.close())
        points = sum(len(e["payload"].get("points", [])) for e in events)
        for name in PROJECTIONS:
            rate = asyncio.run(_project(home, name))
            add(f"projection {name} (rebuild from log)", rate,
                f"{points * rate / n:,.0f} metric points/s" if name == "sql" else "")
        add("all projections together (one pass over the log)", asyncio.run(_project(home, None)))
    return results


async def _project(home: Path, name: str | None) -> float:
    """Events/s rebuilding projection `name`, or all of them in one pass (None)."""
    system = await System.open(Settings.load(home))
    try:
        start = time.perf_counter()
        count = await (system.runtimes[name].rebuild() if name else system.rebuild(PROJECTIONS))
        return count / (time.perf_counter() - start)
    finally:
        await system.close()
