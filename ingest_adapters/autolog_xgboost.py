"""XGBoost autolog: `xgboost.train` through a TrainingCallback (each eval metric at each
iteration, as it happens), and the scikit-learn wrappers' `fit` (their `evals_result()`
after fit, plus the training metrics of autolog_sklearn).

Logged: the booster params and num_boost_round (wrappers: `get_params()`), `<data>-<metric>`
per iteration, `best_iteration` and `best_score` under early stopping, the training data
(a DMatrix's data and labels), and the model in XGBoost's own format (`model.ubj`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

import modeldb
from modeldb.ingest_adapters import _log, _patch

FRAMEWORK = "xgboost"
_MEDIA_TYPE = "application/ubjson"  # XGBoost's default model format since 2.0


def patch(xgboost: ModuleType) -> None:
    _patch.safe_patch(FRAMEWORK, xgboost, "train", _train)
    for name in ("XGBModel", "XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier",
                 "XGBRFRegressor"):
        cls = getattr(xgboost.sklearn, name, None)
        if cls is not None and inspect.isfunction(cls.__dict__.get("fit")):
            _patch.safe_patch(FRAMEWORK, cls, "fit", _fit)


def _version() -> str:
    import xgboost

    return str(xgboost.__version__)


def _callback(run: modeldb.Run) -> Any:
    from xgboost.callback import TrainingCallback

    class ModelDBCallback(TrainingCallback):  # type: ignore[misc,unused-ignore]
        """Logs the latest value of each eval metric after every boosting round."""

        def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
            with _patch.guard(FRAMEWORK):
                for data, metrics in evals_log.items():
                    for metric, values in metrics.items():
                        value = values[-1]
                        value = value[0] if isinstance(value, tuple) else value  # cv: (mean, std)
                        run.log_metric(f"{data}-{metric}", float(value), step=epoch)
            return False  # never stop training

    return ModelDBCallback()


def _train(original: Any, params: dict[str, Any], dtrain: Any, *args: Any, **kwargs: Any) -> Any:
    bound = inspect.signature(original.function).bind(params, dtrain, *args, **kwargs)
    arguments = bound.arguments
    with _patch.training_run(FRAMEWORK, "xgboost") as run:
        if run is None:
            return original(params, dtrain, *args, **kwargs)
        with _patch.guard(FRAMEWORK):
            run.log_params(_log.flat_params({
                **(params or {}),
                "num_boost_round": arguments.get("num_boost_round", 10),
                "early_stopping_rounds": arguments.get("early_stopping_rounds"),
            }))
            _log.log_training_data(run, FRAMEWORK, *_contents(dtrain))
            arguments["callbacks"] = [*(arguments.get("callbacks") or []), _callback(run)]
        booster = original(*bound.args, **bound.kwargs)
        with _patch.guard(FRAMEWORK):
            _log_best(run, booster)
            _log.log_model(run, FRAMEWORK, _version(), booster, _saver(booster), "model.ubj",
                           _MEDIA_TYPE)
    return booster


def _fit(original: Any, estimator: Any, *args: Any, **kwargs: Any) -> Any:
    from modeldb.ingest_adapters import autolog_sklearn

    def finish(run: modeldb.Run, fitted: Any) -> None:
        _log_best(run, fitted.get_booster())
        _log.log_model(run, FRAMEWORK, _version(), fitted, _saver(fitted), "model.ubj", _MEDIA_TYPE)

    return autolog_sklearn.boosting_fit(FRAMEWORK, original, estimator, args, kwargs, finish)


def _log_best(run: modeldb.Run, booster: Any) -> None:
    # Set only when early stopping was on; reading a missing one raises AttributeError.
    attributes = booster.attributes()
    if "best_iteration" in attributes:
        run.log_metrics({"best_iteration": float(attributes["best_iteration"]),
                         "best_score": float(attributes["best_score"])})


def _saver(model: Any) -> Any:
    def save(path: Path) -> None:
        model.save_model(str(path))

    return save


def _contents(dmatrix: Any) -> tuple[Any, Any]:
    """A DMatrix's data (a CSR matrix) and labels; (None, None) for the kinds that do not
    keep their data (QuantileDMatrix, external memory): those go unlogged, quietly."""
    try:
        return dmatrix.get_data(), dmatrix.get_label()
    except Exception:  # XGBoostError, and whatever a custom DMatrix raises
        return None, None
