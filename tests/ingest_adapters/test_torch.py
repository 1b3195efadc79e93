"""PyTorch: Lightning's Trainer.fit, and the helper for a hand-written loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import modeldb
from modeldb.ingest_adapters import torch as tracking
from tests.ingest_adapters.conftest import Logged, assert_model_logged, dataset_id

# Lightning's advice (num_workers …) and torch's deprecations of what Lightning still uses.
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

torch.manual_seed(0)
X = torch.randn(64, 4)
Y = (X.sum(dim=1, keepdim=True) > 0).float()


class Tiny(pl.LightningModule):
    def __init__(self, hidden: int = 8, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, 1))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.binary_cross_entropy_with_logits(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _trainer(epochs: int = 2) -> pl.Trainer:
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)


def test_lightning_fit_logs_every_epoch(logged: Callable[[], Logged]) -> None:
    modeldb.autolog(["lightning"])
    model = Tiny(hidden=8, lr=0.1)
    loader = DataLoader(TensorDataset(X, Y), batch_size=16)
    trainer = _trainer()
    trainer.fit(model, loader, DataLoader(TensorDataset(X, Y), batch_size=32))

    log = logged()
    run = log.only_run()
    assert (run.name, run.status, run.sources) == ("Tiny", "FINISHED", {"autolog:lightning"})
    assert run.params["hidden"] == 8 and run.params["lr"] == 0.1
    assert run.params["max_epochs"] == 2 and run.params["optimizer"] == "SGD"
    assert run.params["optimizer.lr"] == 0.1
    assert run.steps("train_loss") == [0, 1] and run.steps("val_loss") == [0, 1]
    assert run.last("val_loss") == pytest.approx(float(trainer.callback_metrics["val_loss"]))
    assert run.inputs == {"train": dataset_id("train", X), "train-targets": dataset_id("train-targets", Y)}
    assert_model_logged(run, "lightning", "model.pt")
    state = torch.load(log.artifact_path(run, "model.pt"), weights_only=True)
    assert torch.equal(state["net.0.weight"], model.net[0].weight)
    assert not any(type(c).__name__ == "ModelDBCallback" for c in trainer.callbacks)


def test_lightning_user_errors_propagate(logged: Callable[[], Logged]) -> None:
    class Broken(Tiny):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            raise ArithmeticError("bad step")

    modeldb.autolog(["lightning"])
    with pytest.raises(ArithmeticError, match="bad step"):
        _trainer().fit(Broken(), DataLoader(TensorDataset(X, Y), batch_size=16))
    assert logged().only_run().status == "FAILED"


def test_a_hand_written_loop(logged: Callable[[], Logged]) -> None:
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with tracking.training(model, params={"lr": 0.1}, data=(X, Y), name="loop") as run:
        assert run is not None and modeldb.active_run() is run
        for epoch in range(3):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(X), Y)
            loss.backward()
            optimizer.step()
            tracking.log_epoch(epoch, {"loss": loss.detach(), "note": "not a number"})

    run_ = logged().only_run()
    assert (run_.name, run_.status, run_.sources) == ("loop", "FINISHED", {"autolog:torch"})
    assert run_.params == {"lr": 0.1} and run_.steps("loss") == [0, 1, 2]
    assert "note" not in run_.metrics
    assert run_.inputs["train"] == dataset_id("train", X)
    assert_model_logged(run_, "torch", "model.pt")


def test_a_hand_written_loop_that_fails(logged: Callable[[], Logged]) -> None:
    with pytest.raises(KeyError), tracking.training(torch.nn.Linear(4, 1)):
        raise KeyError("data")
    run = logged().only_run()
    assert run.status == "FAILED" and run.artifacts == {}
