"""compare_runs: the `compareRuns` GraphQL query, parsed into plain Python values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modeldb._client import current
from modeldb._errors import QueryError
from modeldb._search import READ_YOUR_WRITES_TIMEOUT, RunInfo, parse_run

COMPARE_QUERY = """
query CompareRuns($ids: [ID!]!, $metricKeys: [String!], $maxPoints: Int!) {
  compareRuns(ids: $ids, metricKeys: $metricKeys, maxPoints: $maxPoints) {
    runs { id name status startTime endTime params { key value } metrics { key value step }
           tags { key value } }
    params { key values differs }
    metrics { key values differs }
    histories { runId key points { step timestamp value } }
  }
}
"""


@dataclass(frozen=True)
class RunComparison:
    """Runs side by side. `params[key]` and `metrics[key]` are lists aligned with `runs`
    (None where a run lacks the key or, for metrics, its latest value is not finite);
    `differs` names the keys ("params.lr", "metrics.acc") whose values are not all equal;
    `histories[(run_id, key)]` is a list of (step, value) pairs, downsampled to at most
    `max_points` keeping the shape (NaN where a value is not finite)."""

    runs: list[RunInfo]
    params: dict[str, list[str | None]] = field(default_factory=dict)
    metrics: dict[str, list[float | None]] = field(default_factory=dict)
    differs: set[str] = field(default_factory=set)
    histories: dict[tuple[str, str], list[tuple[int, float]]] = field(default_factory=dict)


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def compare_runs(ids: Sequence[str], metric_keys: Sequence[str] | None = None,
                 max_points: int = 500) -> RunComparison:
    """Compare up to 50 runs: params, latest metrics and metric histories (all metric keys,
    or `metric_keys`). Unknown ids raise QueryError naming them."""
    client = current()
    client.flush(READ_YOUR_WRITES_TIMEOUT)
    data = client.query(COMPARE_QUERY, {"ids": list(ids), "maxPoints": max_points,
                                        "metricKeys": list(metric_keys) if metric_keys is not None
                                        else None})
    try:
        answer = data["compareRuns"]
        differs = ({f"params.{p['key']}" for p in answer["params"] if p["differs"]}
                   | {f"metrics.{m['key']}" for m in answer["metrics"] if m["differs"]})
        return RunComparison(
            runs=[parse_run(r) for r in answer["runs"]],
            params={p["key"]: list(p["values"]) for p in answer["params"]},
            metrics={m["key"]: [None if v is None else float(v) for v in m["values"]]
                     for m in answer["metrics"]},
            differs=differs,
            histories={(h["runId"], h["key"]): [(p["step"], _number(p["value"])) for p in h["points"]]
                       for h in answer["histories"]},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise QueryError(f"unexpected answer to the compareRuns query: {exc!r}") from None
