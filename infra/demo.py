"""`modeldb demo`: train a few small, real scikit-learn models and track them, so a fresh
install has something worth looking at. Uses only the public SDK."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path
from typing import Any

import modeldb


def _datasets() -> dict[str, Any]:
    from sklearn.datasets import load_breast_cancer, load_iris, load_wine

    return {"iris": load_iris(), "wine": load_wine(), "breast_cancer": load_breast_cancer()}


def _sgd_run(name: str, data: Any, version: Any, alpha: float, parent: Any, out: Path) -> tuple[Any, Any]:
    """A model trained epoch by epoch, so its metrics have a history worth charting."""
    import numpy as np
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, random_state=0, stratify=data.target)
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    classes = np.unique(data.target)
    model = SGDClassifier(loss="log_loss", alpha=alpha, random_state=0)
    with modeldb.start_run(name=f"{name}-sgd-alpha{alpha}", parent=parent,
                           tags={"dataset": name, "family": "linear"}) as run:
        run.log_params({"model": "SGDClassifier", "alpha": alpha, "loss": "log_loss",
                        "epochs": 30, "test_size": 0.3})
        run.log_input(version, name="training data")
        for epoch in range(30):
            model.partial_fit(x_train, y_train, classes=classes)
            run.log_metrics({
                "train_loss": log_loss(y_train, model.predict_proba(x_train), labels=classes),
                "val_loss": log_loss(y_test, model.predict_proba(x_test), labels=classes),
                "accuracy": accuracy_score(y_test, model.predict(x_test)),
            }, step=epoch)
        return run, _log_model(run, model, out / f"{run.id}.pkl")


def _forest_run(name: str, data: Any, trees: int, parent: Any) -> None:
    """Autolog does the tracking here: params, training metrics, the model, the data."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, random_state=0, stratify=data.target)
    with modeldb.start_run(name=f"{name}-forest-{trees}", parent=parent,
                           tags={"dataset": name, "family": "trees"}) as run:
        model = RandomForestClassifier(n_estimators=trees, max_depth=6, random_state=0)
        model.fit(x_train, y_train)
        predicted = model.predict(x_test)
        run.log_metrics({"accuracy": accuracy_score(y_test, predicted),
                         "f1_macro": f1_score(y_test, predicted, average="macro")})


def _log_model(run: Any, model: Any, path: Path) -> Any:
    path.write_bytes(pickle.dumps(model))
    return run.log_artifact(path, name="model.pkl", kind="model")


def _register(trained: list[tuple[Any, Any]]) -> None:
    """Two registered versions of the iris model, approval required for Production and one
    request waiting for it: the registry page has something to decide (by someone else than
    the requester, i.e. the user running this demo)."""
    from modeldb._registry import _command  # the SDK's registry command path (no public wrapper yet)

    first, second = (modeldb.register_model(MODEL, run, artifact, description=f"SGD on iris, run {run.id}")
                     for run, artifact in trained[:2])
    modeldb.set_stage(MODEL, first.version, "Staging", comment="offline eval ok")
    modeldb.set_alias(MODEL, "champion", first.version)
    _command("set_rules", {"name": MODEL, "single_production": True, "approval_required": ["Production"]})
    _command("request_transition", {"name": MODEL, "version": first.version, "stage": "Production",
                                    "comment": "best validation loss of the sweep"})
    print(f"demo: registered {MODEL} versions {first.version} and {second.version}; "
          f"version {first.version} awaits approval for Production")


MODEL = "iris-classifier"


def run_demo(url: str | None = None) -> None:
    modeldb.init(url=url, project="demo", experiment="classifiers")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        trained: dict[str, list[tuple[Any, Any]]] = {}
        for name, data in _datasets().items():
            version = modeldb.log_dataset(name, data.data)
            with modeldb.start_run(name=f"{name}-sweep", tags={"dataset": name}) as sweep:
                sweep.log_param("dataset", name)
                for alpha in (0.0001, 0.01):
                    trained.setdefault(name, []).append(_sgd_run(name, data, version, alpha, sweep, out))
                # Autolog only around the forests: it would also track the SGD runs' scaler.
                modeldb.autolog(frameworks=["sklearn"], silent=True)
                for trees in (10, 50):
                    _forest_run(name, data, trees, sweep)
                modeldb.autolog(disable=True)
            print(f"demo: trained 4 models on {name}")
        _register(trained["iris"])
        if not modeldb.flush(timeout=60):
            raise SystemExit("demo: could not deliver every event within 60 s")
    print("demo: done — open the UI or query runs through /graphql")
