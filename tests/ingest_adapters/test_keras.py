"""Keras 3 autolog, on the torch backend (CPU): set in conftest before Keras is imported."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import pytest

import modeldb
from tests.ingest_adapters.conftest import Logged, assert_model_logged, dataset_id


def _model() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")], name="tiny")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_fit_logs_every_epoch_the_model_and_the_data(logged: Callable[[], Logged]) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.integers(0, 3, size=64)
    modeldb.autolog(["keras"])
    model = _model()
    history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0)

    log = logged()
    run = log.only_run()
    assert (run.name, run.status, run.sources) == ("tiny", "FINISHED", {"autolog:keras"})
    assert run.params["epochs"] == 3 and run.params["batch_size"] == 16
    assert run.params["optimizer.learning_rate"] == pytest.approx(0.01)
    assert run.params["loss_function"] == "sparse_categorical_crossentropy"
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert run.steps(key) == [0, 1, 2]
        assert [v for _, v in run.metrics[key]] == pytest.approx(history.history[key])
    assert run.inputs == {"train": dataset_id("train", x), "train-targets": dataset_id("train-targets", y)}
    assert_model_logged(run, "keras", "model.keras")
    saved = log.artifact_path(run, "model.keras")
    restored = keras.models.load_model(saved.rename(saved.with_suffix(".keras")))
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


def test_a_failing_hook_never_fails_fit(logged: Callable[[], Logged],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELDB_AUTOLOG_STRICT")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot log")

    monkeypatch.setattr(modeldb.Run, "log_metrics", broken)
    monkeypatch.setattr(modeldb.Run, "log_params", broken)
    modeldb.autolog(["keras"])
    x = np.ones((8, 4), dtype="float32")
    history = _model().fit(x, np.zeros(8), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    run = logged().only_run()
    assert run.status == "FINISHED" and "model.keras" in run.artifacts
