"""The web UI against a server in MODELDB_AUTH=token mode, with an admin's token saved in
the browser: "Load demo data" trains the demo as that user, and artifact links download the
file, which a plain link could not (it carries no Authorization header)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.helpers import ServerProcess, free_port, server_env
from tests.ui.support import DEMO_RUNS, VIEWPORT

USER = "root"


def admin_token(home: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "modeldb.infra.cli", "token", "create", USER, "--admin",
                           "--data-dir", str(home)], capture_output=True, text=True, timeout=60,
                          env=server_env({"MODELDB_AUTH": "token"}))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


class TokenServer:
    def __init__(self, server: ServerProcess, token: str):
        self.server, self.token = server, token
        self.auth = {"authorization": f"Bearer {token}"}

    def gql(self, query: str) -> dict[str, Any]:
        r = httpx.post(f"{self.server.url}/graphql", json={"query": query}, headers=self.auth, timeout=30)
        assert r.status_code == 200 and "errors" not in r.json(), r.text
        return r.json()["data"]

    def open(self, page: Any, route: str) -> None:
        page.add_init_script(f"localStorage.setItem('modeldb.token', {self.token!r})")
        page.goto(f"{self.server.url}/#/{route}")


@pytest.fixture(scope="module")
def token_demo(tmp_path_factory: pytest.TempPathFactory, ui_browser: Any) -> Iterator[TokenServer]:
    """An empty token-mode server whose demo was loaded by pressing the UI's button."""
    home = tmp_path_factory.mktemp("ui-token") / "home"
    token = admin_token(home)
    server = ServerProcess(home, free_port(), server_env({"MODELDB_AUTH": "token",
                                                          "MODELDB_HOME": str(home)})).start()
    try:
        world = TokenServer(server, token)
        page = ui_browser.new_page(viewport=VIEWPORT)
        try:
            world.open(page, "runs")
            page.get_by_role("button", name="Load demo data").click()
            expect(page.locator("#run-count")).to_contain_text(f"of {DEMO_RUNS} runs", timeout=120_000)
        finally:
            page.close()
        deadline = time.monotonic() + 120
        while not world.gql('{ transitionRequests(status: "pending") { id } }')["transitionRequests"]:
            assert time.monotonic() < deadline, "the demo registered no transition request"
            time.sleep(0.5)
        yield world
    finally:
        server.stop()


def test_the_demo_runs_as_the_user_who_pressed_the_button(token_demo: TokenServer) -> None:
    runs = token_demo.gql('{ runs(project: "demo") { totalCount edges { node { id } } } }')["runs"]
    assert runs["totalCount"] == DEMO_RUNS
    first = runs["edges"][0]["node"]["id"]
    actors = {e["actor"] for e in token_demo.gql(f'{{ history(id: "run:{first}") {{ actor }} }}')["history"]}
    assert actors == {USER}


def test_artifact_link_downloads_with_the_saved_token(page: Any, token_demo: TokenServer) -> None:
    runs = token_demo.gql('{ runs(filter: "params.model = \'SGDClassifier\'", first: 1) '
                          '{ edges { node { id } } } }')["runs"]["edges"]
    token_demo.open(page, f"run/{runs[0]['node']['id']}")
    link = page.get_by_role("link", name="model.pkl")
    expect(link).to_be_visible()
    href = f"{token_demo.server.url}{link.get_attribute('href')}"
    # The link's own URL is refused without the header, so the UI must not just follow it.
    assert httpx.get(href, timeout=30).status_code == 401
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "model.pkl"
    expected = httpx.get(href, headers=token_demo.auth, timeout=30)
    assert expected.status_code == 200 and len(expected.content) > 100
    assert Path(download.value.path()).read_bytes() == expected.content
