"""autolog() itself: names, lazy patching, safe_patch's rules, and the events' source."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import modeldb
from modeldb.ingest_adapters import _patch
from modeldb.ingest_adapters.autolog import FRAMEWORKS, enabled
from tests.ingest_adapters.conftest import Logged


def test_unknown_names_are_refused() -> None:
    with pytest.raises(modeldb.InvalidArgument, match=r"'tensorflow'.*known: sklearn, xgboost"):
        modeldb.autolog(["sklearn", "tensorflow"])
    assert enabled() == []


def test_no_list_means_every_installed_framework() -> None:
    modeldb.autolog()
    assert enabled() == list(FRAMEWORKS)  # all six are installed for the tests
    modeldb.autolog(["keras"], disable=True)
    assert "keras" not in enabled()
    modeldb.autolog("sklearn", disable=True)  # one name alone is a list of one
    assert enabled() == ["xgboost", "lightgbm", "lightning", "transformers"]
    modeldb.autolog(disable=True)
    assert enabled() == []


@pytest.mark.slow  # a fresh interpreter imports torch, Keras and transformers: ~9 s
def test_frameworks_are_patched_when_imported_not_before(tmp_path: Path) -> None:
    # A fresh interpreter: here every framework is imported already.
    script = textwrap.dedent(f"""
        import sys
        import modeldb
        modeldb.init({str(tmp_path / "home")!r})
        modeldb.autolog()
        heavy = [m for m in ("sklearn", "torch", "keras", "xgboost", "lightgbm", "lightning",
                             "transformers") if m in sys.modules]
        assert heavy == [], heavy
        import transformers  # the package alone: no Trainer, so no torch
        assert "torch" not in sys.modules and "transformers.trainer" not in sys.modules
        from sklearn.linear_model import LinearRegression
        LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0])
        assert modeldb.flush(10)
        from modeldb.writer.sqlite_log import SQLiteEventLog
        events = SQLiteEventLog({str(tmp_path / "home" / "events.db")!r}).read_sync(0)
        print(sorted({{e.raw["source"] for e in events if e.raw["type"] == "RunStarted"}}))
        # Each framework's hooks are in place once it is imported, by whatever route.
        import os
        os.environ["KERAS_BACKEND"] = "torch"
        import keras, lightgbm, xgboost, pytorch_lightning
        from lightning.pytorch import Trainer as LightningTrainer
        from transformers import Trainer
        mark = lambda f: getattr(f, "__modeldb_autolog__", None)
        print(mark(keras.Model.fit), mark(lightgbm.train), mark(xgboost.XGBClassifier.fit),
              mark(pytorch_lightning.Trainer.fit), mark(LightningTrainer.fit), mark(Trainer.train))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELDB_")}
    env["MODELDB_AUTOLOG_STRICT"] = "1"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "['autolog:sklearn']", "keras lightgbm xgboost lightning lightning transformers"]


# -- safe_patch ------------------------------------------------------------------------------


class Model:
    def fit(self, x: Any) -> str:
        if x == "bad":
            raise ValueError("the user's own error")
        return f"trained on {x}"


@pytest.fixture
def patched() -> Iterator[Callable[[Callable[..., Any]], None]]:
    """Patch Model.fit with a given hook under the framework name "sklearn"."""
    original = Model.__dict__["fit"]

    def install(hook: Callable[..., Any]) -> None:
        _patch.enable("sklearn", _patch.Config())
        _patch.safe_patch("sklearn", Model, "fit", hook)

    yield install
    _patch.disable("sklearn")
    assert Model.__dict__["fit"] is original


def test_the_users_error_propagates_unchanged(patched: Callable[..., None]) -> None:
    seen: list[BaseException] = []

    def hook(original: Any, *args: Any) -> Any:
        try:
            return original(*args)
        except ValueError as exc:
            seen.append(exc)
            raise RuntimeError("the hook's cleanup failed") from None

    patched(hook)
    with pytest.raises(ValueError, match="the user's own error") as raised:
        Model().fit("bad")
    assert raised.value is seen[0]


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_hook_error_is_logged_once_and_training_happens(
        patched: Callable[..., None], when: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("MODELDB_AUTOLOG_STRICT")
    calls: list[str] = []

    def hook(original: Any, model: Model, x: Any) -> Any:
        if when == "before":
            raise KeyError("hook broke before training")
        result = original(model, x)
        calls.append(result)
        raise KeyError("hook broke after training")

    patched(hook)
    _patch._warned.clear()
    with caplog.at_level(logging.DEBUG, logger="modeldb.autolog"):
        assert Model().fit(1) == "trained on 1"
        assert Model().fit(2) == "trained on 2"
    assert calls == ([] if when == "before" else ["trained on 1", "trained on 2"])
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.DEBUG]  # once, then quietly
    assert "hook broke" in caplog.records[0].getMessage()


def test_strict_mode_raises_the_hooks_error(patched: Callable[..., None]) -> None:
    def hook(original: Any, *args: Any) -> Any:
        raise KeyError("hook broke")

    patched(hook)
    with pytest.raises(KeyError, match="hook broke"):
        Model().fit(1)


def test_only_the_outermost_call_is_hooked(patched: Callable[..., None]) -> None:
    depth: list[int] = []

    def hook(original: Any, model: Model, x: Any) -> Any:
        depth.append(x)
        return original(model, x) if x == 0 else model.fit(x - 1)

    patched(hook)
    assert Model().fit(3) == "trained on 2"  # the hook's inner fit(2) is not hooked again
    assert depth == [3]


# -- the source of events ------------------------------------------------------------------------


def test_a_runs_source_is_on_every_event_of_the_run(logged: Callable[[], Logged]) -> None:
    with modeldb.start_run(name="auto", source="autolog:test") as run:
        run.log_params({"a": 1})
        run.log_metric("loss", 0.5, step=1)
        run.log_metrics({"acc": 0.9})
        run.set_tag("t", "v")
        run.log_input([1, 2, 3], name="numbers")
        child = modeldb.start_run(parent=run)
        child.end()
    with modeldb.start_run(name="plain") as plain:
        plain.log_metric("loss", 1.0)

    log = logged()
    auto, child_run, plain_run = log.runs
    assert auto.sources == {"autolog:test"} and run.source == "autolog:test"
    assert child_run.sources == {"sdk"} and plain_run.sources == {"sdk"}
    by_aggregate = {e["aggregate"]["id"]: e["source"] for e in log.events
                    if e["type"] == "DatasetVersionCreated"}
    assert by_aggregate == {"numbers": "sdk"}  # the dataset is not the run's


@pytest.mark.parametrize("source", ["", "x" * 101, None])
def test_a_bad_source_is_refused(home: Path, source: Any) -> None:
    with pytest.raises(modeldb.InvalidArgument, match="source"):
        modeldb.start_run(source=source)


def test_silent_keeps_hook_errors_at_debug(patched: Callable[..., None],
                                           monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("MODELDB_AUTOLOG_STRICT")

    def hook(original: Any, *args: Any) -> Any:
        raise KeyError("hook broke")

    patched(hook)
    _patch.enable("sklearn", _patch.Config(silent=True))
    _patch._warned.clear()
    with caplog.at_level(logging.DEBUG, logger="modeldb.autolog"):
        assert Model().fit(1) == "trained on 1"
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
