"""compare_runs in the SDK, on an embedded home."""

from __future__ import annotations

from pathlib import Path

import pytest

import modeldb


def test_compare_runs_embedded(tmp_path: Path) -> None:
    modeldb.init(tmp_path / "home", project="p", experiment="e")
    runs = []
    for i in range(2):
        with modeldb.start_run(name=f"r{i}", params={"lr": 0.1, "depth": i}) as run:
            for step in range(1200):
                run.log_metric("loss", 1 / (step + 1) + (5.0 if (i, step) == (1, 600) else 0), step=step)
        runs.append(run)
    found = modeldb.compare_runs([r.id for r in runs], max_points=100)
    assert [r.name for r in found.runs] == ["r0", "r1"]
    assert found.params == {"depth": ["0", "1"], "lr": ["0.1", "0.1"]}
    assert found.differs == {"params.depth"}  # both end on the same loss
    assert found.metrics["loss"] == [1 / 1200, 1 / 1200]
    spiky = found.histories[(runs[1].id, "loss")]
    assert len(spiky) <= 100 and spiky[0] == (0, 1.0) and spiky[-1][0] == 1199
    assert max(v for _, v in spiky) == 5.0 + 1 / 601
    with pytest.raises(modeldb.QueryError, match="unknown run id"):
        modeldb.compare_runs([runs[0].id, "nope"])
