"""What the UI tests and the screenshot script share: a real `modeldb serve` with the demo
data loaded through the UI's own button, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modeldb.infra.browser import CHROMIUM_ARGS, chromium
from tests.helpers import ServerProcess, free_port, server_env

DEMO_RUNS = 15
VIEWPORT = {"width": 1440, "height": 900}  # a laptop screen


@contextmanager
def ui_server(home: Path) -> Iterator[ServerProcess]:
    """An embedded `modeldb serve` in `home` (stopped on exit)."""
    server = ServerProcess(home, free_port(), server_env()).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium(), args=list(CHROMIUM_ARGS))
        try:
            yield launched
        finally:
            launched.close()


def load_demo(page: Any, server: ServerProcess, timeout: float = 120.0) -> None:
    """Press the empty runs page's "Load demo data" and wait until the demo (15 runs, the
    registered model and its pending request) is trained and projected."""
    from playwright.sync_api import expect

    page.goto(f"{server.url}/#/runs")
    page.get_by_role("button", name="Load demo data").click()
    expect(page.locator("#run-count")).to_contain_text(f"of {DEMO_RUNS} runs", timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # the registry part comes after the last run
        server.wait_projected()
        pending = server.graphql('{ transitionRequests(status: "pending") { id } }')["transitionRequests"]
        if pending:
            return
        time.sleep(0.5)
    raise TimeoutError("the demo registered no transition request")
