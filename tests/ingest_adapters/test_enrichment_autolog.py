"""From training code to derived attributes and search: real scikit-learn autolog into an
embedded home, then the SDK's queries (which project the home's log on the way)."""

from __future__ import annotations

from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import modeldb

X, Y = load_iris(return_X_y=True)


def test_autologged_models_get_framework_and_type_and_are_searchable(home: Path) -> None:
    modeldb.autolog(["sklearn"])
    RandomForestClassifier(n_estimators=5, max_depth=2, random_state=0).fit(X, Y)
    LogisticRegression(max_iter=300).fit(X, Y)
    with modeldb.start_run(name="hand-made", tags={"purpose": "forest comparison"}) as run:
        run.log_metrics({"loss": 1.0}, step=0)
        run.log_metric("loss", float("nan"), step=1)

    forests = modeldb.search_runs("attributes.framework = 'sklearn' and "
                                  "attributes.model_type = 'RandomForestClassifier'")
    assert [r.name for r in forests] == ["RandomForestClassifier"]
    assert len(modeldb.search_runs("attributes.framework = 'sklearn'")) == 2
    assert [r.name for r in modeldb.search_runs("attributes.anomaly = 'nan'")] == ["hand-made"]

    hits = modeldb.search("randomfor")  # the model class tag, by prefix
    assert [(h["kind"], h["name"]) for h in hits] == [("Run", "RandomForestClassifier")]
    hits = modeldb.search("forest", kinds=["Run"])  # its class and the hand-made run's tag
    assert {h["name"] for h in hits} == {"RandomForestClassifier", "hand-made"}
