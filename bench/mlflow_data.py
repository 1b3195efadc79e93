"""Loading the search and metric-history data set into ModelDB the fast way (events straight
into the log, as bench/pipeline.py does), then rebuilding every projection from it, timed:
the rebuild is the replay scenario (each projection alone, then all together in one pass)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.mlflow_clients import HISTORY_KEY, history_value, search_runs
from modeldb.event_schema import new_event, to_wire, uuid7
from modeldb.infra.settings import Settings
from modeldb.infra.system import PROJECTIONS, System
from modeldb.projectors.db import create_engine
from modeldb.projectors.migrations import migrate
from modeldb.writer.service import Writer

HISTORY_PER_EVENT = 10_000  # MetricsLogged's largest batch
BATCH = 1000


def _ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def events(runs: int, history_points: int) -> tuple[list[dict[str, Any]], str]:
    """Wire events for `runs` search runs and one run with a `history_points`-point series;
    returns them and the history run's id."""
    out: list[dict[str, Any]] = []
    for run in search_runs(runs):
        rid = uuid7()
        ts = run["start_ms"]
        out += [to_wire(new_event("RunStarted", rid, {"project": "bench", "experiment": "search",
                                                      "name": run["name"], "start_time": _ms(ts)})),
                to_wire(new_event("ParamsLogged", rid, {"params": run["params"]})),
                to_wire(new_event("TagsSet", rid, {"tags": {"team": run["team"]}})),
                to_wire(new_event("MetricsLogged", rid, {"points": [
                    {"key": k, "value": v, "step": 0, "timestamp": ts} for k, v in run["metrics"].items()]})),
                to_wire(new_event("RunFinished", rid, {"status": run["status"],
                                                       "end_time": _ms(ts + 60_000)}))]
    history = uuid7()
    start = 1_700_000_000_000
    out.append(to_wire(new_event("RunStarted", history, {"project": "bench", "experiment": "history",
                                                         "name": "history", "start_time": _ms(start)})))
    for first in range(0, history_points, HISTORY_PER_EVENT):
        out.append(to_wire(new_event("MetricsLogged", history, {"points": [
            {"key": HISTORY_KEY, "value": history_value(s), "step": s, "timestamp": start + s}
            for s in range(first, min(history_points, first + HISTORY_PER_EVENT))]})))
    return out, history


@dataclass
class Replay:
    events: int
    points: int
    seconds: dict[str, float] = field(default_factory=dict)  # projection → rebuild time alone
    together_s: float | None = None  # all projections rebuilt in one pass over the log

    @property
    def total_s(self) -> float:
        return self.together_s if self.together_s is not None else sum(self.seconds.values())


async def load_and_replay(settings: Settings, wire: list[dict[str, Any]]) -> Replay:
    """Append `wire` to the settings' log, then rebuild each projection from it, timed."""
    if not settings.read_db.startswith("sqlite"):
        engine = create_engine(settings.read_db)
        await migrate(engine)
        await engine.dispose()
    system = await System.open(settings)
    try:
        writer = Writer(system.log)
        for i in range(0, len(wire), BATCH):
            await system.log.append(writer.prepare(wire[i : i + BATCH], "bench"))
        replay = Replay(len(wire), sum(len(e["payload"].get("points", ())) for e in wire))
        for name in PROJECTIONS:
            start = time.perf_counter()
            await system.runtimes[name].rebuild()
            replay.seconds[name] = time.perf_counter() - start
        start = time.perf_counter()  # what `modeldb replay` does: one pass feeding them all
        await system.rebuild(PROJECTIONS)
        replay.together_s = time.perf_counter() - start
        if system.outbox_runtime is not None:  # not a projection, but `serve` would catch it up
            await system.outbox_runtime.catch_up()  # from zero while the scenarios run
        return replay
    finally:
        await system.close()


def load(home: Path, wire: list[dict[str, Any]], event_log: str | None = None,
         read_db: str | None = None) -> tuple[Replay, dict[str, str]]:
    """Load into `home` (embedded by default); returns the replay timings and the MODELDB_*
    environment a `modeldb serve --data-dir home` needs to serve the same stores."""
    settings = Settings.load(home)
    env: dict[str, str] = {}
    if event_log:
        settings, env = replace(settings, event_log=event_log), env | {"MODELDB_EVENT_LOG": event_log}
    if read_db:
        settings, env = replace(settings, read_db=read_db), env | {"MODELDB_READ_DB": read_db}
    return asyncio.run(load_and_replay(settings, wire)), env
