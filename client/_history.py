"""get_metric_history: one metric series of a run, as columns (GraphQL `metricSeries`).

A million-point series is one JSON value on the wire (three arrays), not a million
objects: the fast read of a long history (see modeldb.query_api.series)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modeldb._client import current
from modeldb._errors import QueryError
from modeldb._search import READ_YOUR_WRITES_TIMEOUT

SERIES_QUERY = """
query MetricSeries($id: ID!, $key: String!, $maxPoints: Int) {
  run(id: $id) { metricSeries(key: $key, maxPoints: $maxPoints) }
}
"""


@dataclass(frozen=True)
class MetricHistory:
    """One metric series of a run, column by column, in (step, timestamp) order.

    `values[i]` is NaN where the logged value was not finite (NaN or ±inf); `timestamps`
    are epoch milliseconds. `sampled` is True when `max_points` downsampled the series
    (first and last points, and each bucket's smallest and largest finite value)."""

    run_id: str
    key: str
    steps: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    sampled: bool = False

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[tuple[int, int, float]]:
        """(step, timestamp, value) of each point."""
        return zip(self.steps, self.timestamps, self.values, strict=True)

    def to_pandas(self) -> Any:
        """A DataFrame with columns step, timestamp, value (needs pandas)."""
        import pandas as pd

        return pd.DataFrame({"step": self.steps, "timestamp": self.timestamps, "value": self.values})


def get_metric_history(run_id: str, key: str, max_points: int | None = None) -> MetricHistory:
    """Every point logged for `key` in the run (empty if none), or at most `max_points` of
    them keeping the series' shape. An unknown run raises QueryError."""
    client = current()
    client.flush(READ_YOUR_WRITES_TIMEOUT)
    data = client.query(SERIES_QUERY, {"id": run_id, "key": key, "maxPoints": max_points})
    return parse_series(run_id, key, data)


def parse_series(run_id: str, key: str, data: dict[str, Any]) -> MetricHistory:
    """SERIES_QUERY's answer (its `data`) as a MetricHistory."""
    run = data.get("run")
    if run is None:
        raise QueryError(f"no run {run_id!r}")
    try:
        series = run["metricSeries"]
        nan = math.nan
        return MetricHistory(
            run_id=run_id, key=key, steps=list(series["steps"]), timestamps=list(series["timestamps"]),
            values=[nan if v is None else float(v) for v in series["values"]],
            sampled=bool(series.get("sampled")))
    except (KeyError, TypeError, ValueError) as exc:
        raise QueryError(f"unexpected answer to the metricSeries query: {exc!r}") from None
