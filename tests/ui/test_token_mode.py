"""The web UI against a server in MODELDB_AUTH=token mode: with the token saved in the
browser, the run page reads through GraphQL and its artifact link downloads the file, which
a plain link could not (it carries no Authorization header)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from modeldb.event_schema import new_event, uuid7
from tests.helpers import ServerProcess, free_port, run_events, server_env, wire

CONTENT = b"weights that only token holders may read"


def admin_token(home: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "modeldb.infra.cli", "token", "create", "root", "--admin",
                           "--data-dir", str(home)], capture_output=True, text=True, timeout=60,
                          env=server_env({"MODELDB_AUTH": "token"}))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str, str]]:
    home = tmp_path_factory.mktemp("ui-token") / "home"
    token = admin_token(home)
    auth = {"authorization": f"Bearer {token}"}
    server = ServerProcess(home, free_port(), server_env({"MODELDB_AUTH": "token",
                                                          "MODELDB_HOME": str(home)})).start()
    try:
        digest = "sha256:" + hashlib.sha256(CONTENT).hexdigest()
        r = httpx.post(f"{server.url}/api/v1/artifacts", content=CONTENT, timeout=30,
                       headers=auth | {"x-content-digest": digest})
        assert r.status_code == 201, r.text
        run = uuid7()
        events = run_events(run, params={"lr": 0.1}, metrics={"loss": [1.0, 0.5]})
        events.insert(1, new_event("ArtifactLogged", run, {
            "name": "model.pkl", "digest": digest, "size": len(CONTENT),
            "uri": f"modeldb://artifacts/{digest}", "kind": "model"}))
        r = httpx.post(f"{server.url}/api/v1/events", json=wire(events), headers=auth, timeout=30)
        assert r.status_code == 202, r.text
        r = httpx.get(f"{server.url}/api/v1/projections", params={"wait": "true"}, headers=auth, timeout=60)
        assert r.status_code == 200, r.text
        yield server, token, run
    finally:
        server.stop()


def test_artifact_link_downloads_with_the_saved_token(
        page: Any, token_server: tuple[ServerProcess, str, str]) -> None:
    server, token, run = token_server
    page.add_init_script(f"localStorage.setItem('modeldb.token', {token!r})")
    page.goto(f"{server.url}/#/run/{run}")
    link = page.get_by_role("link", name="model.pkl")
    expect(link).to_be_visible()
    # The link's own URL is refused without the header, so the UI must not just follow it.
    assert httpx.get(f"{server.url}{link.get_attribute('href')}", timeout=30).status_code == 401
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "model.pkl"
    assert Path(download.value.path()).read_bytes() == CONTENT
    expect(link).not_to_have_attribute("aria-invalid", "true")
