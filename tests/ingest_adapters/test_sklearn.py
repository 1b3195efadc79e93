"""scikit-learn autolog against the real library and an embedded home."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modeldb
from modeldb import _client
from tests.ingest_adapters.conftest import Logged, assert_model_logged, dataset_id

X, Y = load_iris(return_X_y=True)


def test_an_estimator_logs_params_metrics_model_and_data(logged: Callable[[], Logged]) -> None:
    modeldb.autolog(["sklearn"])
    model = LogisticRegression(C=0.5, max_iter=500).fit(X, Y)

    log = logged()
    run = log.only_run()
    assert (run.name, run.status, run.sources) == ("LogisticRegression", "FINISHED",
                                                   {"autolog:sklearn"})
    assert run.params["C"] == 0.5 and run.params["max_iter"] == 500
    assert run.last("training_score") == pytest.approx(model.score(X, Y))
    assert {"training_accuracy", "training_f1"} <= set(run.metrics)
    assert run.inputs == {"train": dataset_id("train", X),
                          "train-targets": dataset_id("train-targets", Y)}
    assert_model_logged(run, "sklearn", "model.pkl")
    assert run.tags["modeldb.model.class"] == "sklearn.linear_model._logistic.LogisticRegression"
    restored = pickle.loads(log.artifact_path(run, "model.pkl").read_bytes())
    assert (restored.predict(X) == model.predict(X)).all()


def test_a_pipeline_is_one_run_with_nested_params(logged: Callable[[], Logged]) -> None:
    modeldb.autolog(["sklearn"])
    make_pipeline(StandardScaler(), LogisticRegression(C=2.0)).fit(X, Y)

    run = logged().only_run()  # the inner fits are part of the pipeline's
    assert run.name == "Pipeline"
    assert run.params["logisticregression__C"] == 2.0
    assert run.params["standardscaler__with_mean"] is True
    assert run.tags["modeldb.model.class"] == "sklearn.pipeline.Pipeline"


def test_a_search_has_one_child_run_per_candidate(logged: Callable[[], Logged]) -> None:
    modeldb.autolog(["sklearn"])
    search = GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.1, 1.0, 10.0]}, cv=3)
    search.fit(X, Y)

    log = logged()
    parent, *children = log.runs
    assert parent.name == "GridSearchCV" and parent.parent is None
    assert [c.parent for c in children] == [parent.id] * 3
    assert [c.params for c in children] == [{"C": 0.1}, {"C": 1.0}, {"C": 10.0}]
    for i, child in enumerate(children):
        assert child.last("mean_test_score") == pytest.approx(search.cv_results_["mean_test_score"][i])
        assert child.last("std_test_score") == pytest.approx(search.cv_results_["std_test_score"][i])
        assert child.sources == {"autolog:sklearn"} and child.status == "FINISHED"
    assert parent.params["best_C"] == search.best_params_["C"]
    assert parent.last("best_cv_score") == pytest.approx(search.best_score_)
    assert "training_accuracy" in parent.metrics
    assert_model_logged(parent, "sklearn", "model.pkl")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_per_iteration_losses_and_regressor_metrics(logged: Callable[[], Logged]) -> None:
    x, y = load_diabetes(return_X_y=True)
    modeldb.autolog(["sklearn"])
    model = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(x, y)

    run = logged().only_run()
    assert run.steps("training_loss") == [0, 1, 2]
    assert [v for _, v in run.metrics["training_loss"]] == pytest.approx(model.loss_curve_)
    assert {"training_r2", "training_mse", "training_score"} <= set(run.metrics)


def test_inside_an_active_run_it_logs_there(logged: Callable[[], Logged]) -> None:
    modeldb.autolog(["sklearn"])
    with modeldb.start_run(name="mine") as mine:
        LogisticRegression(max_iter=500).fit(X, Y)
        assert modeldb.active_run() is mine  # autolog neither ended nor replaced it

    run = logged().only_run()
    assert (run.id, run.sources, run.status) == (mine.id, {"sdk"}, "FINISHED")
    assert "C" in run.params and "model.pkl" in run.artifacts


def test_an_error_in_training_propagates_and_fails_the_run(logged: Callable[[], Logged]) -> None:
    modeldb.autolog(["sklearn"])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        LogisticRegression().fit(X, Y[:10])
    assert logged().only_run().status == "FAILED"


def test_a_tracking_failure_never_fails_fit(logged: Callable[[], Logged], caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELDB_AUTOLOG_STRICT")

    def broken(*args: object) -> None:
        raise OSError("artifact store is gone")

    monkeypatch.setattr(_client.Client, "store_artifact", broken)
    modeldb.autolog(["sklearn"])
    with caplog.at_level(logging.WARNING, logger="modeldb.autolog"):
        first = LogisticRegression(max_iter=500).fit(X, Y)
        second = LogisticRegression(max_iter=500, C=0.1).fit(X, Y)
    assert first.score(X, Y) > 0.9 and second.coef_.shape == (3, 4)  # both trained
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "artifact store is gone" in warnings[0].getMessage()
    runs = logged().runs
    assert [r.status for r in runs] == ["FINISHED", "FINISHED"]
    assert all("C" in r.params and "training_score" in r.metrics for r in runs)


def test_training_goes_on_untracked_when_no_run_can_start(
        logged: Callable[[], Logged], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELDB_AUTOLOG_STRICT")
    modeldb.autolog(["sklearn"])
    modeldb.flush()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("queue is broken")

    monkeypatch.setattr(_client.Client, "emit", broken)
    with caplog.at_level(logging.WARNING, logger="modeldb.autolog"):
        model = LogisticRegression(max_iter=500).fit(X, Y)
    assert model.score(X, Y) > 0.9
    assert "queue is broken" in caplog.text
    monkeypatch.undo()
    assert logged().runs == []


def test_strict_mode_raises_the_hooks_error(logged: Callable[[], Logged],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise OSError("artifact store is gone")

    monkeypatch.setattr(_client.Client, "store_artifact", broken)
    modeldb.autolog(["sklearn"])
    with pytest.raises(OSError, match="artifact store is gone"):
        LogisticRegression(max_iter=500).fit(X, Y)


def test_models_and_datasets_can_be_left_out(logged: Callable[[], Logged]) -> None:
    modeldb.autolog(["sklearn"], log_models=False, log_datasets=False)
    LogisticRegression(max_iter=500).fit(X, Y)
    run = logged().only_run()
    assert run.artifacts == {} and run.inputs == {}
    assert "training_score" in run.metrics


def test_disable_puts_the_original_fit_back(logged: Callable[[], Logged]) -> None:
    original = LogisticRegression.__dict__["fit"]
    modeldb.autolog(["sklearn"])
    assert LogisticRegression.__dict__["fit"] is not original
    modeldb.autolog(["sklearn"], disable=True)
    assert LogisticRegression.__dict__["fit"] is original
    LogisticRegression(max_iter=500).fit(X, Y)
    assert logged().runs == []


def test_sparse_training_data_is_fingerprinted(logged: Callable[[], Logged]) -> None:
    from scipy import sparse

    modeldb.autolog(["sklearn"])
    features = sparse.csr_matrix(np.where(X > 3, X, 0))
    LogisticRegression(max_iter=500).fit(features, Y)
    assert logged().only_run().inputs["train"] == dataset_id("train", features)


def test_a_dataframe_is_a_dataset_version_with_its_schema(logged: Callable[[], Logged]) -> None:
    import pandas as pd

    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    modeldb.autolog(["sklearn"])
    LogisticRegression(max_iter=500).fit(frame, pd.Series(Y, name="species"))
    log = logged()
    assert log.only_run().inputs["train"] == dataset_id("train", frame)
    version = next(e for e in log.events if e["type"] == "DatasetVersionCreated")
    assert version["payload"]["schema"]["columns"] == {c: "float64" for c in frame.columns}
