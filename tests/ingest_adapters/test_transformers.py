"""Hugging Face Trainer autolog with a tiny BERT built from a config: no hub, no tokenizer."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import modeldb
from tests.ingest_adapters.conftest import Logged, assert_model_logged, dataset_id


def _examples(n: int = 32, length: int = 8) -> list[dict[str, list[int] | int]]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (n, length), generator=generator)
    return [{"input_ids": row.tolist(), "attention_mask": [1] * length,
             "labels": int(row[0] > 25)} for row in ids]


def _trainer(output: Path, train: list[dict[str, list[int] | int]]) -> Trainer:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2)
    args = TrainingArguments(output_dir=str(output), num_train_epochs=2, per_device_train_batch_size=8,
                             learning_rate=1e-3, logging_strategy="epoch", eval_strategy="epoch",
                             save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
    return Trainer(model=BertForSequenceClassification(config), args=args, train_dataset=train,
                   eval_dataset=train[:8])


def test_trainer_logs_per_epoch_the_model_and_the_data(logged: Callable[[], Logged],
                                                       tmp_path: Path) -> None:
    modeldb.autolog(["transformers"])
    train = _examples()
    trainer = _trainer(tmp_path / "out", train)
    output = trainer.train()

    log = logged()
    run = log.only_run()
    assert (run.name, run.status, run.sources) == ("BertForSequenceClassification", "FINISHED",
                                                   {"autolog:transformers"})
    assert run.params["learning_rate"] == 1e-3 and run.params["num_train_epochs"] == 2
    assert run.params["config.hidden_size"] == 16 and run.params["config.num_hidden_layers"] == 2
    steps_per_epoch = 4  # 32 examples, batches of 8
    assert run.steps("loss") == [steps_per_epoch, 2 * steps_per_epoch]
    assert run.steps("eval_loss") == [steps_per_epoch, 2 * steps_per_epoch]
    assert run.last("train_loss") == pytest.approx(output.training_loss)
    assert "train_runtime" in run.metrics
    assert run.inputs == {"train": dataset_id("train", train)}
    assert_model_logged(run, "transformers", "model.zip")
    with zipfile.ZipFile(log.artifact_path(run, "model.zip")) as archive:
        assert {"config.json", "model.safetensors"} <= set(archive.namelist())
    assert not any(type(c).__name__ == "ModelDBCallback"
                   for c in trainer.callback_handler.callbacks)


def test_a_failing_callback_never_fails_training(logged: Callable[[], Logged], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELDB_AUTOLOG_STRICT")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot log")

    monkeypatch.setattr(modeldb.Run, "log_metrics", broken)
    modeldb.autolog(["transformers"])
    output = _trainer(tmp_path / "out", _examples(16)).train()
    assert output.global_step == 4
    assert logged().only_run().status == "FINISHED"
