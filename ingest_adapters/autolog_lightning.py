"""PyTorch Lightning autolog (`lightning.pytorch` and `pytorch_lightning`): `Trainer.fit` gets
a callback that logs `trainer.callback_metrics` at the end of every training epoch
(step = epoch; validation metrics of that epoch included).

Logged: the module's `hparams`, max_epochs and the optimizer's settings, the training data
when the loader reads a TensorDataset, and the module's `state_dict` (`model.pt`, written by
`torch.save`). Only the global rank zero logs, so a multi-process fit makes one run.
Metrics logged in `LightningModule.on_train_epoch_end` itself arrive after the callback's
hook runs; log them from `training_step(..., on_epoch=True)` to have them per epoch.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import modeldb
from modeldb.ingest_adapters import _log, _patch

FRAMEWORK = "lightning"
_MEDIA_TYPE = "application/zip"  # torch.save's format


def patch(lightning: ModuleType) -> None:
    # The two packages have distinct Trainer and Callback classes: each gets its own.
    _patch.safe_patch(FRAMEWORK, lightning.Trainer, "fit", functools.partial(_fit, lightning))


def _callback(lightning: ModuleType, run: modeldb.Run) -> Any:
    class ModelDBCallback(lightning.Callback):  # type: ignore[misc,name-defined,unused-ignore]
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.is_global_zero:
                return
            with _patch.guard(FRAMEWORK):
                params: dict[str, Any] = {"max_epochs": trainer.max_epochs,
                                          "accumulate_grad_batches": trainer.accumulate_grad_batches}
                for i, optimizer in enumerate(trainer.optimizers):
                    prefix = "optimizer" if i == 0 else f"optimizer_{i}"
                    params[prefix] = type(optimizer).__name__
                    group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
                    params.update(_log.flat_params(group, f"{prefix}."))
                run.log_params({**_log.flat_params(dict(pl_module.hparams)),
                                **_log.flat_params(params)})
                dataset = getattr(trainer.train_dataloader, "dataset", None)
                tensors = getattr(dataset, "tensors", None)  # a TensorDataset
                if isinstance(tensors, tuple) and 1 <= len(tensors) <= 2:
                    _log.log_training_data(run, FRAMEWORK, *tensors)

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.is_global_zero:
                return
            with _patch.guard(FRAMEWORK):
                run.log_metrics(_log.numbers(trainer.callback_metrics), step=trainer.current_epoch)

    return ModelDBCallback()


def _fit(lightning: ModuleType, original: Any, trainer: Any, model: Any, *args: Any,
         **kwargs: Any) -> Any:
    if not trainer.is_global_zero:
        return original(trainer, model, *args, **kwargs)
    with _patch.training_run(FRAMEWORK, type(model).__name__) as run:
        if run is None:
            return original(trainer, model, *args, **kwargs)
        callback = None
        with _patch.guard(FRAMEWORK):
            callback = _callback(lightning, run)
            trainer.callbacks.append(callback)
        try:
            result = original(trainer, model, *args, **kwargs)
        finally:
            if callback in trainer.callbacks:  # the trainer may be fitted again later
                trainer.callbacks.remove(callback)
        with _patch.guard(FRAMEWORK):
            _log.log_model(run, FRAMEWORK, _version(lightning), model, _saver(model), "model.pt",
                           _MEDIA_TYPE)
    return result


def _version(lightning: ModuleType) -> str:
    top = importlib.import_module(lightning.__name__.partition(".")[0])
    return str(getattr(top, "__version__", "unknown"))


def _saver(model: Any) -> Any:
    def save(path: Path) -> None:
        import torch

        torch.save(model.state_dict(), path)

    return save
