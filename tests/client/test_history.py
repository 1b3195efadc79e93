"""get_metric_history on an embedded home (over HTTP on both stacks:
tests/api/test_metric_series.py); NaN and ±inf come back as NaN."""

from __future__ import annotations

import math
from pathlib import Path

import modeldb


def test_get_metric_history_embedded(tmp_path: Path) -> None:
    modeldb.init(tmp_path / "home", project="p", experiment="e")
    values = [1.0, float("nan"), 2.0, float("-inf")] * 400
    with modeldb.start_run() as run:
        for step, value in enumerate(values):
            run.log_metric("acc", value, step=step)
    history = modeldb.get_metric_history(run.id, "acc")
    assert history.steps == list(range(1600)) and len(set(history.timestamps)) >= 1
    assert [v for v in history.values if not math.isnan(v)] == [1.0, 2.0] * 400
    assert [step for step, _, v in history if math.isnan(v)] == list(range(1, 1600, 2))
    frame = history.to_pandas()
    assert list(frame.columns) == ["step", "timestamp", "value"] and len(frame) == 1600
    sampled = modeldb.get_metric_history(run.id, "acc", max_points=10)
    assert sampled.sampled and len(sampled) <= 10 and sampled.steps[0] == 0 and sampled.steps[-1] == 1599
