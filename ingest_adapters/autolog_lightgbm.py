"""LightGBM autolog: `lightgbm.train` through a callback (each validation metric at each
iteration, as it happens), and the scikit-learn wrappers' `fit` (their `evals_result_`
after fit, plus the training metrics of autolog_sklearn).

Logged: params and num_boost_round (wrappers: `get_params()`), `<data>-<metric>` per
iteration, `best_iteration` (and `best_score` per metric) under early stopping, the
training data (a Dataset's raw data while it still holds it, and its labels), and the
model in LightGBM's text format (`model.txt`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import modeldb
from modeldb.ingest_adapters import _log, _patch

FRAMEWORK = "lightgbm"
_MEDIA_TYPE = "text/plain"


def patch(lightgbm: ModuleType) -> None:
    _patch.safe_patch(FRAMEWORK, lightgbm, "train", _train)
    for name in ("LGBMModel", "LGBMClassifier", "LGBMRegressor", "LGBMRanker"):
        cls = getattr(lightgbm.sklearn, name, None)
        if cls is not None and inspect.isfunction(cls.__dict__.get("fit")):
            _patch.safe_patch(FRAMEWORK, cls, "fit", _fit)


def _version() -> str:
    import lightgbm

    return str(lightgbm.__version__)


def _callback(run: modeldb.Run) -> Callable[[Any], None]:
    def log_iteration(env: Any) -> None:
        with _patch.guard(FRAMEWORK):
            # (data name, metric name, value, is_higher_better[, stdv in cv])
            run.log_metrics({f"{item[0]}-{item[1]}": float(item[2])
                             for item in env.evaluation_result_list or ()},
                            step=env.iteration)

    # Before early_stopping (order 30): it raises to stop, also at the last iteration, and
    # the callbacks after it would miss that iteration.
    log_iteration.order = 25  # type: ignore[attr-defined]
    return log_iteration


def _train(original: Any, params: dict[str, Any], train_set: Any, *args: Any,
           **kwargs: Any) -> Any:
    bound = inspect.signature(original.function).bind(params, train_set, *args, **kwargs)
    arguments = bound.arguments
    with _patch.training_run(FRAMEWORK, "lightgbm") as run:
        if run is None:
            return original(params, train_set, *args, **kwargs)
        with _patch.guard(FRAMEWORK):
            run.log_params(_log.flat_params({
                **(params or {}), "num_boost_round": arguments.get("num_boost_round", 100)}))
            # The raw data is there until the Dataset is constructed (inside train) and
            # then freed, unless the user built it beforehand: then only labels are left.
            _log.log_training_data(run, FRAMEWORK, train_set.data, train_set.label)
            arguments["callbacks"] = [*(arguments.get("callbacks") or []), _callback(run)]
        booster = original(*bound.args, **bound.kwargs)
        with _patch.guard(FRAMEWORK):
            _log_best(run, booster.best_iteration, booster.best_score)
            _log.log_model(run, FRAMEWORK, _version(), booster, _saver(booster), "model.txt",
                           _MEDIA_TYPE)
    return booster


def _fit(original: Any, estimator: Any, *args: Any, **kwargs: Any) -> Any:
    from modeldb.ingest_adapters import autolog_sklearn

    def finish(run: modeldb.Run, fitted: Any) -> None:
        _log_best(run, fitted.best_iteration_, fitted.best_score_)
        booster = fitted.booster_
        _log.log_model(run, FRAMEWORK, _version(), booster, _saver(booster), "model.txt", _MEDIA_TYPE)

    return autolog_sklearn.boosting_fit(FRAMEWORK, original, estimator, args, kwargs, finish)


def _log_best(run: modeldb.Run, best_iteration: int | None, best_score: Any) -> None:
    # best_iteration is 0 (or None) unless early stopping chose one.
    if not best_iteration:
        return
    scores = {f"best_score-{data}-{metric}": value for data, metrics in (best_score or {}).items()
              for metric, value in metrics.items()}
    run.log_metrics({"best_iteration": float(best_iteration), **_log.numbers(scores)})


def _saver(booster: Any) -> Callable[[Path], None]:
    def save(path: Path) -> None:
        booster.save_model(str(path))

    return save
