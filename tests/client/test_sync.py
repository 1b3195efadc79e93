"""Offline mode: log into a folder, then `modeldb sync` it to a real server, exactly once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

import modeldb
from modeldb import _client
from modeldb._sync import read_cursor, sync
from modeldb.infra.cli import main as cli
from tests.client.conftest import of_type, read_events
from tests.helpers import ServerProcess


def _log_offline(folder: Path, tmp_path: Path, runs: int = 3) -> str:
    model = tmp_path / "model.bin"
    model.write_bytes(b"offline weights")
    modeldb.init(f"offline://{folder}", project="p", experiment="e")
    for i in range(runs):
        with modeldb.start_run(name=f"r{i}", params={"i": i}) as run:
            for step in range(5):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
            run.log_artifact(model, kind="model")
    assert modeldb.flush(10)
    _client.shutdown(5)
    return "sha256:" + hashlib.sha256(b"offline weights").hexdigest()


def _ids(events: list[dict]) -> list[str]:
    return [e["event_id"] for e in events]


def test_sync_uploads_everything_once_and_a_rerun_sends_nothing(
        tmp_path: Path, server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "offline"
    digest = _log_offline(folder, tmp_path)
    local = read_events(folder / "events.db")

    assert cli(["sync", str(folder), "--url", server.url, "--batch-size", "7"]) == 0
    assert f"synced {len(local)} events and 1 artifacts" in capsys.readouterr().out
    remote = read_events(server.home / "events.db")
    assert _ids(remote) == _ids(local)  # every event, once, in log order
    assert len(of_type(remote, "RunFinished")) == 3
    blob = httpx.get(f"{server.url}/api/v1/artifacts/{digest}")
    assert blob.status_code == 200 and blob.content == b"offline weights"
    assert read_cursor(folder, server.url) == local[-1]["_position"]

    again = sync(folder, server.url)
    assert (again.sent, again.artifacts, again.complete) == (0, 0, True)
    assert read_events(server.home / "events.db")[-1]["_position"] == remote[-1]["_position"]

    # New offline work later: only that is sent.
    modeldb.init(folder)
    with modeldb.start_run(name="later") as run:
        run.log_metric("loss", 0.1)
    assert modeldb.flush(10)
    _client.shutdown(5)
    more = sync(folder, server.url)
    assert more.sent == len(read_events(folder / "events.db")) - len(local)
    assert _ids(read_events(server.home / "events.db")) == _ids(read_events(folder / "events.db"))


def test_an_interrupted_sync_resumes_exactly_once(tmp_path: Path, server: ServerProcess) -> None:
    folder = tmp_path / "offline"
    _log_offline(folder, tmp_path)
    local = read_events(folder / "events.db")

    first = sync(folder, server.url, batch_size=5, max_batches=2)  # "killed" after 2 batches
    assert (first.sent, first.complete) == (10, False)
    assert _ids(read_events(server.home / "events.db")) == _ids(local)[:10]

    # A crash after the server stored a batch but before the cursor moved: it is resent,
    # and the server's event_id dedupe keeps it once.
    (folder / "sync-cursors.json").write_text(f'{{"{server.url}": {local[4]["_position"]}}}')
    rest = sync(folder, server.url, batch_size=5)
    assert rest.complete and rest.sent == len(local) - 5
    assert _ids(read_events(server.home / "events.db")) == _ids(local)


def test_sync_refuses_what_is_not_a_folder_or_a_server(tmp_path: Path) -> None:
    with pytest.raises(modeldb.ConfigError, match=r"no events\.db"):
        sync(tmp_path / "nothing", "http://127.0.0.1:1")
    folder = tmp_path / "offline"
    modeldb.init(folder)
    with modeldb.start_run():
        pass
    assert modeldb.flush(10)
    with pytest.raises(modeldb.ConfigError, match="sends to a server"):
        sync(folder, str(tmp_path / "elsewhere"))
