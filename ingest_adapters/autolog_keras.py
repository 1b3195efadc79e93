"""Keras 3 autolog (any backend): `keras.Model.fit` gets a callback that logs every epoch's
logs (loss, metrics, val_*) at step = epoch.

Logged: fit's settings (epochs, batch_size …), the optimizer's config, the training data
when it is in memory (arrays, tensors, DataFrames; not a tf.data pipeline or a generator),
and the model in Keras's own format (`model.keras`, a zip archive).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

import modeldb
from modeldb.ingest_adapters import _log, _patch

FRAMEWORK = "keras"
_MEDIA_TYPE = "application/zip"
_FIT_PARAMS = ("epochs", "batch_size", "validation_split", "shuffle", "initial_epoch",
               "steps_per_epoch", "validation_freq")


def patch(keras: ModuleType) -> None:
    # Model inherits fit from its backend's trainer; patched on Model, it covers all three.
    _patch.safe_patch(FRAMEWORK, keras.Model, "fit", _fit)


def _callback(run: modeldb.Run) -> Any:
    import keras

    class ModelDBCallback(keras.callbacks.Callback):  # type: ignore[misc,unused-ignore]
        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            with _patch.guard(FRAMEWORK):
                optimizer = self.model.optimizer  # compiled and built by now
                if optimizer is not None:
                    run.log_params(_log.flat_params(optimizer.get_config(), "optimizer."))
                run.log_param("loss_function", getattr(self.model, "loss", None))

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            with _patch.guard(FRAMEWORK):
                run.log_metrics(_log.numbers(logs or {}), step=epoch)

    return ModelDBCallback()


def _fit(original: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        bound = inspect.signature(original.function).bind(model, *args, **kwargs)
    except TypeError:
        return original(model, *args, **kwargs)  # fit itself says what is wrong
    bound.apply_defaults()
    arguments = bound.arguments
    with _patch.training_run(FRAMEWORK, model.name) as run:
        if run is None:
            return original(model, *args, **kwargs)
        with _patch.guard(FRAMEWORK):
            run.log_params(_log.flat_params({k: arguments[k] for k in _FIT_PARAMS}))
            _log.log_training_data(run, FRAMEWORK, arguments["x"], arguments["y"])
            arguments["callbacks"] = [*(arguments["callbacks"] or []), _callback(run)]
        history = original(*bound.args, **bound.kwargs)
        with _patch.guard(FRAMEWORK):
            _log.log_model(run, FRAMEWORK, _version(), model, _saver(model), "model.keras",
                           _MEDIA_TYPE)
    return history


def _version() -> str:
    import keras

    return str(keras.__version__)


def _saver(model: Any) -> Any:
    def save(path: Path) -> None:
        model.save(path)

    return save
