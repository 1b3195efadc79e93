"""XGBoost and LightGBM autolog: the native train() with its callbacks, and the
scikit-learn wrappers."""

from __future__ import annotations

from collections.abc import Callable

import lightgbm
import numpy as np
import pytest
import xgboost
from sklearn.datasets import load_breast_cancer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modeldb
from tests.ingest_adapters.conftest import Logged, assert_model_logged, dataset_id

X, Y = load_breast_cancer(return_X_y=True)
X_TRAIN, Y_TRAIN, X_VALID, Y_VALID = X[:400], Y[:400], X[400:], Y[400:]


def test_xgboost_train_logs_every_iteration(logged: Callable[[], Logged]) -> None:
    modeldb.autolog(["xgboost"])
    dtrain = xgboost.DMatrix(X_TRAIN, label=Y_TRAIN)
    dvalid = xgboost.DMatrix(X_VALID, label=Y_VALID)
    params = {"objective": "binary:logistic", "max_depth": 2, "eta": 0.3,
              "eval_metric": "logloss"}
    booster = xgboost.train(params, dtrain, num_boost_round=6, early_stopping_rounds=3,
                            evals=[(dtrain, "train"), (dvalid, "valid")], verbose_eval=False)

    log = logged()
    run = log.only_run()
    assert (run.name, run.status, run.sources) == ("xgboost", "FINISHED", {"autolog:xgboost"})
    assert run.params["max_depth"] == 2 and run.params["num_boost_round"] == 6
    rounds = booster.num_boosted_rounds()
    assert run.steps("train-logloss") == list(range(rounds))
    assert run.steps("valid-logloss") == list(range(rounds))
    assert run.last("best_iteration") == booster.best_iteration
    assert "best_score" in run.metrics
    assert run.inputs == {"train": dataset_id("train", dtrain.get_data()),
                          "train-targets": dataset_id("train-targets", dtrain.get_label())}
    assert_model_logged(run, "xgboost", "model.ubj")
    restored = xgboost.Booster()
    restored.load_model(bytearray(log.artifact_path(run, "model.ubj").read_bytes()))
    np.testing.assert_allclose(restored.predict(dvalid), booster.predict(dvalid))


def test_xgboost_classifier_is_one_run(logged: Callable[[], Logged]) -> None:
    modeldb.autolog(["xgboost"])
    model = xgboost.XGBClassifier(n_estimators=4, max_depth=2)
    model.fit(X_TRAIN, Y_TRAIN, eval_set=[(X_VALID, Y_VALID)], verbose=False)

    run = logged().only_run()  # fit's inner train() is part of it
    assert run.name == "XGBClassifier"
    assert run.params["n_estimators"] == 4
    assert run.steps("validation_0-logloss") == [0, 1, 2, 3]
    assert run.last("training_accuracy") == pytest.approx(model.score(X_TRAIN, Y_TRAIN))
    assert run.inputs["train"] == dataset_id("train", X_TRAIN)
    assert_model_logged(run, "xgboost", "model.ubj")


def test_a_wrapper_inside_a_pipeline_is_logged_once(logged: Callable[[], Logged]) -> None:
    modeldb.autolog(["sklearn", "xgboost"])
    make_pipeline(StandardScaler(), xgboost.XGBClassifier(n_estimators=2)).fit(X_TRAIN, Y_TRAIN)
    run = logged().only_run()
    assert run.sources == {"autolog:sklearn"} and run.params["xgbclassifier__n_estimators"] == 2


def test_lightgbm_train_logs_every_iteration(logged: Callable[[], Logged]) -> None:
    modeldb.autolog(["lightgbm"])
    train = lightgbm.Dataset(X_TRAIN, label=Y_TRAIN)
    valid = lightgbm.Dataset(X_VALID, label=Y_VALID, reference=train)
    params = {"objective": "binary", "num_leaves": 4, "verbose": -1, "metric": "binary_logloss"}
    booster = lightgbm.train(params, train, num_boost_round=8, valid_sets=[train, valid],
                             valid_names=["train", "valid"],
                             callbacks=[lightgbm.early_stopping(2, verbose=False)])

    log = logged()
    run = log.only_run()
    assert (run.name, run.status, run.sources) == ("lightgbm", "FINISHED", {"autolog:lightgbm"})
    assert run.params["num_leaves"] == 4 and run.params["num_boost_round"] == 8
    assert run.steps("valid-binary_logloss") == list(range(booster.current_iteration()))
    assert run.last("best_iteration") == booster.best_iteration
    assert run.inputs == {"train": dataset_id("train", X_TRAIN),
                          "train-targets": dataset_id("train-targets", Y_TRAIN)}
    assert_model_logged(run, "lightgbm", "model.txt")
    restored = lightgbm.Booster(model_file=str(log.artifact_path(run, "model.txt")))
    np.testing.assert_allclose(restored.predict(X_VALID), booster.predict(X_VALID))


def test_lightgbm_classifier_is_one_run(logged: Callable[[], Logged]) -> None:
    modeldb.autolog(["lightgbm"])
    model = lightgbm.LGBMClassifier(n_estimators=5, num_leaves=4, verbose=-1)
    model.fit(X_TRAIN, Y_TRAIN, eval_X=(X_VALID,), eval_y=(Y_VALID,))

    run = logged().only_run()
    assert run.name == "LGBMClassifier" and run.params["n_estimators"] == 5
    assert run.steps("valid_0-binary_logloss") == [0, 1, 2, 3, 4]
    assert run.last("training_accuracy") == pytest.approx(model.score(X_TRAIN, Y_TRAIN))
    assert run.inputs["train-targets"] == dataset_id("train-targets", Y_TRAIN)
    assert_model_logged(run, "lightgbm", "model.txt")


def test_a_failing_callback_never_fails_training(logged: Callable[[], Logged],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELDB_AUTOLOG_STRICT")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot log")

    monkeypatch.setattr(modeldb.Run, "log_metrics", broken)
    modeldb.autolog(["lightgbm"])
    booster = lightgbm.train({"objective": "binary", "verbose": -1},
                             lightgbm.Dataset(X_TRAIN, label=Y_TRAIN), num_boost_round=3,
                             valid_sets=[lightgbm.Dataset(X_VALID, label=Y_VALID)])
    assert booster.current_iteration() == 3
    assert logged().only_run().status == "FINISHED"
