"""Hugging Face autolog: `transformers.Trainer.train` gets a TrainerCallback that logs what
the Trainer logs (`on_log`: loss, learning_rate, eval_*, and the final train_runtime,
train_loss …) at step = the global step. `logging_strategy="epoch"` makes that per epoch.

Logged: the TrainingArguments and the model's config (as `config.*`), the training data
when it is in memory (a list of examples, a TensorDataset), and the model as written by
`save_pretrained` (config and safetensors weights), zipped into `model.zip`.
Only the main process logs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import modeldb
from modeldb.ingest_adapters import _log, _patch

FRAMEWORK = "transformers"
_MEDIA_TYPE = "application/zip"


def patch(trainer_module: ModuleType) -> None:
    _patch.safe_patch(FRAMEWORK, trainer_module.Trainer, "train", _train)


def _callback(run: modeldb.Run) -> Any:
    from transformers import TrainerCallback

    class ModelDBCallback(TrainerCallback):  # type: ignore[misc,unused-ignore]
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            with _patch.guard(FRAMEWORK):
                run.log_metrics(_log.numbers(logs or {}), step=state.global_step)

    return ModelDBCallback()


def _train(original: Any, trainer: Any, *args: Any, **kwargs: Any) -> Any:
    if not trainer.is_world_process_zero():
        return original(trainer, *args, **kwargs)
    with _patch.training_run(FRAMEWORK, type(trainer.model).__name__) as run:
        if run is None:
            return original(trainer, *args, **kwargs)
        callback = None
        with _patch.guard(FRAMEWORK):
            run.log_params(_params(trainer))
            _log.log_training_data(run, FRAMEWORK, *_contents(trainer.train_dataset))
            callback = _callback(run)
            trainer.add_callback(callback)
        try:
            output = original(trainer, *args, **kwargs)
        finally:
            if callback is not None:  # the trainer may train again later
                trainer.remove_callback(callback)
        with _patch.guard(FRAMEWORK):
            _log.log_model(run, FRAMEWORK, _version(), trainer.model, _saver(trainer.model),
                           "model.zip", _MEDIA_TYPE)
    return output


def _params(trainer: Any) -> dict[str, Any]:
    arguments = {k: v for k, v in trainer.args.to_dict().items() if v is not None}
    params: dict[str, Any] = _log.flat_params(arguments)
    config = getattr(trainer.model, "config", None)
    if config is not None:
        params.update(_log.flat_params(config.to_dict(), "config."))
    return params


def _contents(dataset: Any) -> tuple[Any, Any]:
    """What of a train_dataset can be fingerprinted: a list of examples as it is, a
    TensorDataset's tensors; nothing of a lazily loaded dataset (reading it all to hash it
    could take longer than the training)."""
    if isinstance(dataset, list | tuple):
        return dataset, None
    tensors = getattr(dataset, "tensors", None)
    if isinstance(tensors, tuple) and 1 <= len(tensors) <= 2:
        return tensors[0], tensors[1] if len(tensors) == 2 else None
    return None, None


def _version() -> str:
    import transformers

    return str(transformers.__version__)


def _saver(model: Any) -> Any:
    def save(path: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="modeldb-hf-") as folder:
            model.save_pretrained(folder)
            shutil.make_archive(str(path.with_suffix("")), "zip", folder)

    return save
