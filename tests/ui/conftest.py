"""One real server with the demo data and one Chromium for the whole UI module (fast), a
fresh page per test, and a screenshot of the page under tests/ui/artifacts/ when a test fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ServerProcess
from tests.ui.support import VIEWPORT, browser, load_demo, ui_server

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.ui_failed = report.failed  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def ui_browser() -> Iterator[Any]:
    with browser() as launched:
        yield launched


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory, ui_browser: Any) -> Iterator[ServerProcess]:
    """A server whose demo data was loaded by pressing the UI's "Load demo data" button."""
    with ui_server(tmp_path_factory.mktemp("ui") / "home") as server:
        page = ui_browser.new_page(viewport=VIEWPORT)
        try:
            load_demo(page, server)
        finally:
            page.close()
        yield server


@pytest.fixture
def page(ui_browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = ui_browser.new_context(viewport=VIEWPORT)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.set_default_timeout(10_000)
    yield opened
    if getattr(request.node, "ui_failed", False):
        ARTIFACTS.mkdir(exist_ok=True)
        opened.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
