"""How every hook logs the same things: params, numeric metrics, the trained model and the
training data. Only the public SDK is called.

Model tags (the run's, set when the model is logged; one model per run is the common case):
`modeldb.model.framework`, `.framework_version`, `.media_type`, `.class`, `.artifact`.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import modeldb
from modeldb.ingest_adapters._patch import Config, config

_KEY_MAX = 250  # the schema's limit on param, metric and tag keys
_VALUE_MAX = 500  # a param is a setting, not a document: long reprs are cut here

TAG_FRAMEWORK = "modeldb.model.framework"
TAG_VERSION = "modeldb.model.framework_version"
TAG_MEDIA_TYPE = "modeldb.model.media_type"
TAG_CLASS = "modeldb.model.class"
TAG_ARTIFACT = "modeldb.model.artifact"

TRAIN = "train"  # dataset names of the training features and targets
TRAIN_TARGETS = "train-targets"


def qualified_name(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _scalar(value: Any) -> str | int | float | bool:
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value[:_VALUE_MAX]
    item = getattr(value, "item", None)  # numpy scalars, 0-d tensors
    if callable(item) and getattr(value, "ndim", None) == 0:
        try:
            return _scalar(item())
        except (TypeError, ValueError):
            pass
    if isinstance(value, type):
        return qualified_name(value)
    return str(value)[:_VALUE_MAX]


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Params as loggable scalars; nested mappings become `outer.inner` keys."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flat_params(value, f"{name}."))
        elif len(name) <= _KEY_MAX:
            out[name] = _scalar(value)
    return out


def numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The entries that are numbers (floats, ints, numpy scalars, 0-d tensors)."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(key, str) or not 0 < len(key) <= _KEY_MAX:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError, RuntimeError):  # strings, lists, tensors of many values
            continue
        out[key] = number
    return out


def log_metric_series(run: modeldb.Run, series: Mapping[str, Iterable[Any]]) -> None:
    """Per-iteration histories kept by a model (`evals_result()`, `loss_curve_` …): the
    i-th value is step i."""
    for key, values in series.items():
        for step, value in enumerate(values):
            number = float(value[0] if isinstance(value, tuple) else value)  # (mean, std) in cv
            run.log_metric(key, number, step=step)


def log_eval_history(run: modeldb.Run, estimator: Any) -> None:
    """A boosting wrapper's `evals_result_` ({"valid_0": {"logloss": [...]}}, empty without an
    eval_set) as `<data>-<metric>` series, as the native callbacks name them."""
    history = getattr(estimator, "evals_result_", None) or {}
    log_metric_series(run, {f"{data}-{metric}": values
                            for data, metrics in history.items()
                            for metric, values in metrics.items()})


def log_model(run: modeldb.Run, framework: str, version: str, model: Any,
              save: Callable[[Path], None], filename: str, media_type: str) -> None:
    """`save(path)` writes the model; the file is logged as kind "model" and described in
    the run's tags. Does nothing when autolog was enabled with log_models=False."""
    if not (config(framework) or Config()).log_models:
        return
    with tempfile.TemporaryDirectory(prefix="modeldb-model-") as folder:
        path = Path(folder) / filename
        save(path)
        run.log_artifact(path, name=filename, kind="model")  # stores the file now
    run.set_tags({TAG_FRAMEWORK: framework, TAG_VERSION: version, TAG_MEDIA_TYPE: media_type,
                  TAG_CLASS: qualified_name(model), TAG_ARTIFACT: filename})


def log_training_data(run: modeldb.Run, framework: str, features: Any,
                      targets: Any = None) -> None:
    """The training data as content-addressed dataset versions the run USED: features as
    dataset "train", targets (when apart from the features) as "train-targets". Data of a
    kind that cannot be fingerprinted (a generator, a streaming loader) is skipped."""
    if not (config(framework) or Config()).log_datasets:  # torch's helper: no config
        return
    for name, data in ((TRAIN, features), (TRAIN_TARGETS, targets)):
        plain = fingerprintable(data)
        if plain is not None:
            run.log_input(plain, name=name)


def fingerprintable(data: Any) -> Any:
    """`data` in a form `run.log_input` fingerprints, or None. Tensors and sparse matrices
    become numpy arrays (their content, not their repr); lists and dicts are converted
    item by item."""
    if data is None:
        return None
    if isinstance(data, str | bytes | os.PathLike):
        return data
    module = type(data).__module__.partition(".")[0]
    if module in ("numpy", "pandas"):
        return data
    if module == "torch" and callable(getattr(data, "detach", None)):
        return data.detach().cpu().numpy()
    if module == "scipy" and callable(getattr(data, "tocsr", None)):
        csr = data.tocsr()
        return {"sparse": "csr", "shape": list(csr.shape), "data": csr.data,
                "indices": csr.indices, "indptr": csr.indptr}
    if isinstance(data, list | tuple):
        items = [fingerprintable(item) for item in data]
        return None if _lost_any(data, items) else items
    if isinstance(data, Mapping):
        values = [fingerprintable(v) for v in data.values()]
        return None if _lost_any(data.values(), values) else dict(
            zip(map(str, data), values, strict=True))
    if isinstance(data, bool | int | float):
        return data if math.isfinite(data) else repr(data)
    return None


def _lost_any(given: Iterable[Any], converted: list[Any]) -> bool:
    # One part that cannot be fingerprinted makes the whole unnamable: hashing the rest
    # would give different data the same version.
    return any(c is None and g is not None for g, c in zip(given, converted, strict=True))
