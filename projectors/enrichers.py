"""The built-in enrichers (registered as `modeldb.enrichers` entry points in pyproject.toml).

- `anomalies` (MetricAnomalies): flags metric series that went wrong, as the run attributes
  `anomaly.<metric>` (`nan`, `diverged` or `plateau`) and `anomaly` (the worst of them).
- `framework` (ModelFramework): the framework and type of the run's model, from the tags
  autolog sets when it logs a model, else from the autolog source of the run or the model
  file's extension: `framework` (`sklearn`), `model_type` (`RandomForestClassifier`),
  `model_class` (the qualified class name).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from modeldb.event_schema import Event, RecordedEvent
from modeldb.projectors.base import metric_points
from modeldb.projectors.enrichment import Enricher, EnrichmentSession

# Series whose lower values are better; every other series is taken as higher-is-better
# (accuracy, f1, auc …), where only NaN/inf and plateaus are looked for.
_LOWER_IS_BETTER = re.compile(r"loss|err|mse|mae|rmse|mape|perplexity|ppl|nll|deviance",
                              re.IGNORECASE)
SEVERITY = ("nan", "diverged", "plateau")  # worst first
_STICKY = ("nan", "diverged")  # what happened once stays flagged; a plateau can end


@dataclass(frozen=True)
class MetricAnomalies(Enricher):
    """Per (run, metric) series, in log order:

    - `nan`: a NaN or infinite value was logged;
    - `diverged` (lower-is-better series of positive values only): `window` points in a row
      above `factor` times the best value so far;
    - `plateau`: the best value has not improved (by more than `tolerance`, relative) for
      `patience` steps, after at least `min_points` points. Cleared by an improvement.
    """

    factor: float = 5.0
    window: int = 3
    patience: int = 50
    min_points: int = 10
    tolerance: float = 1e-4

    name = "anomalies"
    event_types = frozenset({"MetricsLogged"})

    async def apply(self, events: list[Event], session: EnrichmentSession) -> None:
        await self._apply([(e.aggregate.id, [(p.key, p.value, p.step, p.timestamp)
                                             for p in e.payload.points])  # type: ignore[attr-defined]
                           for e in events], session)

    async def apply_recorded(self, events: list[RecordedEvent], session: EnrichmentSession) -> None:
        # Points straight from the stored form: no pydantic object per point.
        await self._apply([(r.raw["aggregate"]["id"], metric_points(r)) for r in events], session)

    async def _apply(self, events: list[tuple[str, Iterable[tuple[str, float, int, int]]]],
                     session: EnrichmentSession) -> None:
        states = await session.states(run for run, _ in events)
        before = {run: _flags(state) for run, state in states.items()}
        observe = self._observe
        for run, points in events:
            series = states[run].setdefault("series", {})
            for key, value, step, _ in points:
                s = series.get(key)
                if s is None:
                    s = series[key] = {}
                observe(s, key, value, step)
        for run, state in states.items():
            session.put_state(run, state)
            _publish(session, run, before[run], _flags(state))

    def _observe(self, s: dict[str, Any], key: str, value: float, step: int) -> None:
        s["n"] = s.get("n", 0) + 1
        if not math.isfinite(value):
            s["flag"] = "nan"
            return
        lower = _lower_is_better(key)
        best = s.get("best")
        margin = self.tolerance * abs(best) if best is not None else 0.0
        if best is None or (value < best - margin if lower else value > best + margin):
            s["best"], s["best_step"], s["high"] = value, step, 0
            if s.get("flag") == "plateau":
                s["flag"] = None
            return
        if lower and best > 0 and value > self.factor * best:
            s["high"] = s.get("high", 0) + 1
        else:
            s["high"] = 0
        if s.get("flag") in _STICKY:
            return
        if s["high"] >= self.window:
            s["flag"] = "diverged"
        elif s["n"] >= self.min_points and step - s["best_step"] >= self.patience:
            s["flag"] = "plateau"


@lru_cache(maxsize=4096)
def _lower_is_better(key: str) -> bool:
    return bool(_LOWER_IS_BETTER.search(key))


def _flags(state: dict[str, Any]) -> dict[str, str]:
    return {key: s["flag"] for key, s in state.get("series", {}).items() if s.get("flag")}


def _publish(session: EnrichmentSession, run: str, old: dict[str, str],
             new: dict[str, str]) -> None:
    for key in old.keys() - new.keys():
        session.delete_attribute(run, f"anomaly.{key}")
    for key, flag in new.items():
        if old.get(key) != flag:
            session.set_attribute(run, f"anomaly.{key}", flag)
    worst_old = _worst(old.values())
    worst_new = _worst(new.values())
    if worst_new is None and worst_old is not None:
        session.delete_attribute(run, "anomaly")
    elif worst_new is not None and worst_new != worst_old:
        session.set_attribute(run, "anomaly", worst_new)


def _worst(flags: Any) -> str | None:
    present = set(flags)
    return next((f for f in SEVERITY if f in present), None)


TAG_FRAMEWORK = "modeldb.model.framework"  # set by ingest_adapters/_log.py log_model
TAG_CLASS = "modeldb.model.class"
_EXTENSIONS = {".keras": "keras", ".h5": "keras", ".ubj": "xgboost", ".pt": "pytorch",
               ".pth": "pytorch", ".safetensors": "transformers", ".onnx": "onnx",
               ".skops": "sklearn", ".joblib": "sklearn", ".cbm": "catboost"}
# How sure each source is: a model tag names what was saved; an autolog source what was
# patched; a file extension only hints.
_RANK = {"tag": 3, "autolog": 2, "artifact": 1}


@dataclass(frozen=True)
class ModelFramework(Enricher):
    name = "framework"
    event_types = frozenset({"RunStarted", "TagsSet", "ArtifactLogged"})

    async def apply(self, events: list[Event], session: EnrichmentSession) -> None:
        states = await session.states(e.aggregate.id for e in events)
        for event in events:
            run, state = event.aggregate.id, states[event.aggregate.id]
            for framework, origin in _framework_hints(event):
                if _RANK[origin] >= _RANK.get(state.get("origin", ""), 0) and (
                        state.get("framework") != framework):
                    state.update(framework=framework, origin=origin)
                    session.set_attribute(run, "framework", framework)
            if event.type == "TagsSet" and TAG_CLASS in event.payload.tags:  # type: ignore[attr-defined]
                qualified = event.payload.tags[TAG_CLASS]  # type: ignore[attr-defined]
                session.set_attribute(run, "model_class", qualified)
                session.set_attribute(run, "model_type", qualified.rsplit(".", 1)[-1])
                state["model_class"] = qualified
            session.put_state(run, state)


def _framework_hints(event: Event) -> list[tuple[str, str]]:
    p: Any = event.payload
    if event.type == "TagsSet" and p.tags.get(TAG_FRAMEWORK):
        return [(p.tags[TAG_FRAMEWORK], "tag")]
    if event.type == "RunStarted" and (event.source or "").startswith("autolog:"):
        return [(event.source.split(":", 1)[1], "autolog")]
    if event.type == "ArtifactLogged" and p.kind == "model":
        suffix = "." + p.name.rsplit(".", 1)[-1].lower() if "." in p.name else ""
        if suffix in _EXTENSIONS:
            return [(_EXTENSIONS[suffix], "artifact")]
    return []
