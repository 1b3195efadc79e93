"""Plain PyTorch: a training loop you write yourself has nothing to patch, so two calls.

    from modeldb.ingest_adapters import torch as tracking

    with tracking.training(model, params={"lr": 0.01}, data=(x, y)) as run:
        for epoch in range(3):
            loss = train_one_epoch(model, x, y)
            tracking.log_epoch(epoch, {"loss": loss})
    # the block's end logged model.state_dict() as model.pt (kind "model")

`training` starts a run (source "autolog:torch") unless one is active, and logs the params
and the data (a tensor, or a (features, targets) pair); the run ends with the block,
FAILED if it raised. `log_epoch` logs numbers (floats or 0-d tensors) at step = epoch.
Like the autolog hooks, neither ever fails the training because tracking failed
(MODELDB_AUTOLOG_STRICT=1 makes them raise).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import modeldb
from modeldb.ingest_adapters import _log, _patch

FRAMEWORK = "torch"
_MEDIA_TYPE = "application/zip"  # torch.save's format


@contextlib.contextmanager
def training(model: Any, *, params: Mapping[str, Any] | None = None, data: Any = None,
             name: str | None = None) -> Iterator[modeldb.Run | None]:
    """A run for the block (or the active run); the model's state_dict is logged at its end.

    Yields None only when tracking itself failed; the block runs all the same.
    """
    with _patch.training_run(FRAMEWORK, name or type(model).__name__) as run:
        if run is not None:
            with _patch.guard(FRAMEWORK):
                if params:
                    run.log_params(_log.flat_params(params))
                features, targets = data if isinstance(data, tuple) and len(data) == 2 else (
                    data, None)
                _log.log_training_data(run, FRAMEWORK, features, targets)
        yield run
        if run is not None:
            log_model(model, run)


def log_epoch(epoch: int, metrics: Mapping[str, Any], run: modeldb.Run | None = None) -> None:
    """Log `metrics` at step `epoch` to `run` (default: the active run)."""
    with _patch.guard(FRAMEWORK):
        target = run or modeldb.active_run()
        if target is None:
            raise modeldb.InvalidArgument("log_epoch needs a run: use training(...) or "
                                          "modeldb.start_run() first")
        target.log_metrics(_log.numbers(metrics), step=epoch)


def log_model(model: Any, run: modeldb.Run | None = None) -> None:
    """Log `model.state_dict()` as `model.pt` (kind "model") to `run` (default: the active run)."""
    import torch

    def save(path: Path) -> None:
        torch.save(model.state_dict(), path)

    with _patch.guard(FRAMEWORK):
        target = run or modeldb.active_run()
        if target is None:
            raise modeldb.InvalidArgument("log_model needs a run")
        _log.log_model(target, FRAMEWORK, torch.__version__, model, save, "model.pt",
                       _MEDIA_TYPE)
