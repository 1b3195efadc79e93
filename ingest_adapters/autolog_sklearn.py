"""scikit-learn autolog: `fit` (and a class's own `fit_transform` / `fit_predict`) of every
scikit-learn estimator, pipeline and search.

Logged per training: `get_params(deep=True)`; the training data; per-iteration losses where
the estimator keeps them (`loss_curve_`, `train_score_`); training metrics (`score` on the
training data, accuracy/f1 for classifiers, r2/mse for regressors); the pickled estimator.
A search (GridSearchCV, RandomizedSearchCV …) also gets one child run per candidate with
its params and cross-validated scores, and `best_*` on its own run.

Classes are patched where they are defined: those that exist now, and those defined later
(through BaseEstimator.__init_subclass__), so autolog need not import all of scikit-learn.
Only scikit-learn's own classes: the XGBoost and LightGBM wrappers have adapters of their own.
"""

from __future__ import annotations

import contextlib
import inspect
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import modeldb
from modeldb.ingest_adapters import _log, _patch

FRAMEWORK = "sklearn"
_METHODS = ("fit", "fit_transform", "fit_predict")
_MEDIA_TYPE = "application/x-pickle"
_SERIES = {"loss_curve_": "training_loss", "train_score_": "training_loss",
           "validation_scores_": "validation_score"}


def patch(base: ModuleType) -> None:
    """Patch the estimator classes of `sklearn.base` (the trigger module)."""
    root = base.BaseEstimator
    for cls in _subclasses(root):
        _patch_class(cls)
    previous = root.__dict__.get("__init_subclass__")

    def __init_subclass__(cls: type, /, **kwargs: Any) -> None:
        if previous is not None:
            previous.__func__(cls, **kwargs)
        else:
            super(root, cls).__init_subclass__(**kwargs)
        with _patch.guard(FRAMEWORK):  # never let a class definition (an import) fail
            _patch_class(cls)

    if getattr(getattr(previous, "__func__", None), _patch.MARK, None) != FRAMEWORK:
        setattr(__init_subclass__, _patch.MARK, FRAMEWORK)
        _patch.replace(FRAMEWORK, root, "__init_subclass__", classmethod(__init_subclass__))


def _subclasses(cls: type) -> Iterator[type]:
    sub: type
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _patch_class(cls: type) -> None:
    if not cls.__module__.startswith("sklearn."):
        return
    for name in _METHODS:
        # Plain functions only: Pipeline.fit_transform is an `available_if` descriptor,
        # which a function would replace with one that always exists.
        if inspect.isfunction(cls.__dict__.get(name)):
            _patch.safe_patch(FRAMEWORK, cls, name, _fit)


def _fit(original: Any, estimator: Any, *args: Any, **kwargs: Any) -> Any:
    features, targets = data_arguments(original.function, args, kwargs)
    with _patch.training_run(FRAMEWORK, type(estimator).__name__) as run:
        if run is None:
            return original(estimator, *args, **kwargs)
        with _patch.guard(FRAMEWORK):
            run.log_params(_log.flat_params(estimator.get_params(deep=True)))
            _log.log_training_data(run, FRAMEWORK, features, targets)
        result = original(estimator, *args, **kwargs)
        with _patch.guard(FRAMEWORK):
            log_results(run, estimator, features, targets, kwargs.get("sample_weight"))
        with _patch.guard(FRAMEWORK):  # apart: the model is worth logging even if scoring failed
            log_pickled_model(run, estimator)
    return result


def data_arguments(function: Any, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """The training features and targets of a `fit(self, X, y=None, ...)` call."""
    try:
        bound = inspect.signature(function).bind(None, *args, **kwargs)
    except (TypeError, ValueError):
        return None, None  # fit itself will say what is wrong with the call
    names = list(bound.signature.parameters)[1:3]
    features = bound.arguments.get(names[0]) if names else None
    targets = bound.arguments.get(names[1]) if len(names) > 1 and names[1] in ("y", "Y") else None
    return features, targets


def log_results(run: modeldb.Run, estimator: Any, features: Any, targets: Any,
                sample_weight: Any) -> None:
    if hasattr(estimator, "cv_results_"):
        _log_search(run, estimator)
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    _log.log_metric_series(run, {key: getattr(final, attr) for attr, key in _SERIES.items()
                                 if getattr(final, attr, None) is not None})
    metrics = training_metrics(estimator, features, targets, sample_weight)
    if metrics:
        run.log_metrics(metrics)


def log_pickled_model(run: modeldb.Run, estimator: Any, framework: str = FRAMEWORK,
                      version: str | None = None) -> None:
    def save(path: Path) -> None:
        with path.open("wb") as file:
            pickle.dump(estimator, file)

    import sklearn

    _log.log_model(run, framework, version or sklearn.__version__, estimator, save,
                   "model.pkl", _MEDIA_TYPE)


def boosting_fit(framework: str, original: Any, estimator: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any], finish: Callable[[modeldb.Run, Any], None]) -> Any:
    """`fit` of a boosting library's scikit-learn estimator (XGBoost, LightGBM): params,
    training data, per-iteration eval history and training metrics alike; `finish` logs
    the best iteration and the model in the library's own format."""
    features, targets = data_arguments(original.function, args, kwargs)
    with _patch.training_run(framework, type(estimator).__name__) as run:
        if run is None:
            return original(estimator, *args, **kwargs)
        with _patch.guard(framework):
            run.log_params(_log.flat_params(estimator.get_params()))
            _log.log_training_data(run, framework, features, targets)
        result = original(estimator, *args, **kwargs)
        with _patch.guard(framework):
            _log.log_eval_history(run, estimator)
            finish(run, estimator)
            metrics = training_metrics(estimator, features, targets, kwargs.get("sample_weight"))
            if metrics:
                run.log_metrics(metrics)
    return result


def training_metrics(estimator: Any, features: Any, targets: Any,
                     sample_weight: Any = None) -> dict[str, float]:
    """Scores of the fitted estimator on its own training data (supervised only).

    A metric that does not apply (f1 of a multi-output model, say) is left out quietly:
    that is not a tracking failure.
    """
    if targets is None or features is None or not hasattr(estimator, "predict"):
        return {}
    from sklearn import metrics
    from sklearn.base import is_classifier, is_regressor

    weights = {} if sample_weight is None else {"sample_weight": sample_weight}
    out: dict[str, float] = {}
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        out["training_score"] = float(estimator.score(features, targets, **weights))
    scorers: dict[str, Any] = {}
    if is_classifier(estimator):
        scorers = {"training_accuracy": metrics.accuracy_score,
                   "training_f1": lambda t, p, **w: metrics.f1_score(t, p, average="weighted", **w)}
    elif is_regressor(estimator):
        scorers = {"training_r2": metrics.r2_score, "training_mse": metrics.mean_squared_error}
    if scorers:
        try:
            predicted = estimator.predict(features)
        except (TypeError, ValueError, AttributeError):
            return out
        for key, scorer in scorers.items():
            with contextlib.suppress(TypeError, ValueError):
                out[key] = float(scorer(targets, predicted, **weights))
    return out


def _log_search(run: modeldb.Run, search: Any) -> None:
    """One child run per candidate: its params and its cross-validation scores."""
    results = search.cv_results_
    keys = [k for k in results if k.startswith(("mean_", "std_", "rank_"))]
    for i, params in enumerate(results["params"]):
        child = modeldb.start_run(name=f"{run.name or 'search'}-{i}", parent=run,
                                  params=_log.flat_params(params), source=f"autolog:{FRAMEWORK}")
        try:
            child.log_metrics(_log.numbers({k: results[k][i] for k in keys}))
        finally:
            child.end()
    if hasattr(search, "best_params_"):
        run.log_params(_log.flat_params(search.best_params_, "best_"))
    if hasattr(search, "best_score_"):
        run.log_metric("best_cv_score", float(search.best_score_))
