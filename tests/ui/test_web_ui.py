"""The web UI in a real browser (Debian's Chromium through Playwright) against a real
`modeldb serve` holding the demo data: the runs table, a run's charts, comparing runs, the
lineage from a model version to its dataset, approving a transition, the audit timeline."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
from playwright.sync_api import expect

from modeldb.event_schema import new_event, uuid7
from tests.helpers import ServerProcess, run_events, wire

SGD_ON = "params.model = 'SGDClassifier' and tags.dataset = '{}'"
DASH = "\N{EN DASH}"  # the runs summary reads f"1{DASH}15 of 15 runs"


def open_runs(page: Any, server: ServerProcess, query: str = "") -> None:
    page.goto(f"{server.url}/#/runs{query}")
    expect(page.locator("#runs-table")).to_be_visible()


def test_ui_files_are_served_and_confined(demo_server: ServerProcess) -> None:
    app = httpx.get(f"{demo_server.url}/ui/app.js")
    assert app.status_code == 200 and app.headers["content-type"].startswith("text/javascript")
    assert "import" in app.text
    for bad in ("../app.py", "..%2Fapp.py", "app.py", "nope.js"):
        assert httpx.get(f"{demo_server.url}/ui/{bad}").status_code == 404, bad


def test_runs_table_filters_sorts_pages_and_picks_columns(page: Any, demo_server: ServerProcess) -> None:
    open_runs(page, demo_server, "?project=demo")  # other tests add runs of their own projects
    expect(page.locator("#run-count")).to_have_text(f"1{DASH}15 of 15 runs")

    page.get_by_label("Filter", exact=True).fill("tags.family = 'linear' and metrics.accuracy >")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_contain_text("column")  # the API's own message, inline

    page.get_by_label("Filter", exact=True).fill("tags.family = 'linear'")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#run-count")).to_have_text(f"1{DASH}6 of 6 runs")
    expect(page.locator("#runs-table tbody tr")).to_have_count(6)

    page.get_by_role("button", name="Name").click()
    expect(page.locator("th[aria-sort=ascending]")).to_contain_text("Name")
    names = page.locator("#runs-table tbody td:nth-child(2)").all_inner_texts()
    assert names == sorted(names) and all("-sgd-" in n for n in names)

    page.get_by_text("Columns (").click()
    page.get_by_label("val_loss").check()
    expect(page.locator("#runs-table thead")).to_contain_text("metrics.val_loss")

    open_runs(page, demo_server, "?project=demo&size=5&order=attributes.start_time")
    expect(page.locator("#run-count")).to_have_text(f"1{DASH}5 of 15 runs")
    first_page = page.locator("#runs-table tbody tr").first.get_attribute("data-run-id")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#run-count")).to_have_text(f"6{DASH}10 of 15 runs")
    assert page.locator("#runs-table tbody tr").first.get_attribute("data-run-id") != first_page


def test_run_page_charts_a_metric_and_links_its_artifacts(page: Any, demo_server: ServerProcess) -> None:
    open_runs(page, demo_server, "?filter=" + quote(SGD_ON.format("iris")))
    page.locator("#runs-table tbody a").first.click()
    expect(page.locator("#run-title")).to_contain_text("iris-sgd-alpha")
    chart = page.locator("figure[data-metric=accuracy]")
    expect(chart.locator("path.series")).to_have_attribute("data-points", "30")
    assert len(chart.locator("path.series").get_attribute("d")) > 100
    chart.get_by_role("button", name="Log scale").click()
    expect(chart.get_by_role("button", name="Log scale")).to_have_attribute("aria-pressed", "true")
    before = chart.locator("path.series").get_attribute("d")
    chart.get_by_role("button", name="zoom in on accuracy").click()
    assert chart.locator("path.series").get_attribute("d") != before
    chart.get_by_label("Smoothing").fill("0.6")
    expect(chart.locator("path.raw")).to_have_count(1)  # the raw line shows beneath the smoothed one

    expect(page.locator("#latest-metrics")).to_contain_text("val_loss")
    expect(page.locator("#inputs")).to_contain_text("DatasetVersion")
    download = page.get_by_role("link", name="model.pkl")
    href = download.get_attribute("href")
    assert re.fullmatch(r"/api/v1/artifacts/sha256%3A[0-9a-f]{64}", href)
    assert page.request.get(f"{demo_server.url}{href}").status == 200


def test_compare_two_runs(page: Any, demo_server: ServerProcess) -> None:
    open_runs(page, demo_server, "?filter=" + quote(SGD_ON.format("wine")))
    expect(page.locator("#runs-table tbody tr")).to_have_count(2)
    for box in page.locator("#runs-table tbody input[type=checkbox]").all():
        box.check()
    page.get_by_role("button", name="Compare selected (2)").click()
    expect(page.locator("figure[data-metric=val_loss] path.series")).to_have_count(2)
    expect(page.locator("#compare-params tr.differs")).to_have_attribute("data-key", "alpha")
    page.get_by_label("Only differences").check()
    expect(page.locator("#compare-params tbody tr")).to_have_count(1)
    expect(page.locator("#parallel polyline")).to_have_count(2)
    page.get_by_label("Colour by metric").select_option("val_loss")
    expect(page.locator("#parallel svg")).to_contain_text("val_loss")


def test_lineage_walks_from_a_model_version_to_its_dataset(page: Any, demo_server: ServerProcess) -> None:
    page.goto(f"{demo_server.url}/#/registry")
    page.locator("#models").get_by_role("link", name="iris-classifier").click()
    page.locator("#versions tr[data-version='1']").get_by_role("link", name="Lineage", exact=True).click()
    graph = page.locator(".graph svg")
    expect(graph.locator("a.node.root")).to_have_attribute("data-node", "modelversion:iris-classifier/1")
    dataset = graph.locator("a.node[data-node^='datasetversion:iris@']")
    expect(dataset).to_have_count(1)
    expect(graph.locator("a.node[data-node^='run:']").first).to_be_visible()

    dataset.focus()  # the nodes are links: keyboard users re-centre with Enter
    page.keyboard.press("Enter")
    expect(page.locator("h2").first).to_contain_text("DatasetVersion iris")
    page.get_by_role("button", name="Downstream").click()
    expect(page.get_by_role("button", name="Downstream")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#lineage-nodes")).to_contain_text("iris-sgd-alpha")
    page.get_by_label("Depth").fill("1")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#lineage-nodes")).not_to_contain_text("modelversion:")


def test_approving_a_transition_needs_someone_else(page: Any, demo_server: ServerProcess) -> None:
    page.goto(f"{demo_server.url}/#/registry")
    request = page.locator("#pending-requests tbody tr").first
    requester = request.locator("td").nth(3).inner_text()
    assert requester

    page.get_by_label("Acting as").fill(requester)
    page.get_by_role("button", name="Set").click()
    page.locator("#pending-requests tbody tr").first.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("alert")).to_contain_text("cannot approve")

    page.get_by_label("Acting as").fill("reviewer")
    page.get_by_role("button", name="Set").click()
    expect(page.get_by_text("acting as reviewer")).to_be_visible()
    row = page.locator("#pending-requests tbody tr").first
    row.get_by_label(re.compile("comment on request")).fill("lgtm")
    row.get_by_role("button", name="Approve").click()
    expect(page.locator("#registry-note")).to_contain_text("Approved by reviewer")
    expect(page.locator("#no-requests")).to_be_visible()
    assert page.evaluate("localStorage.getItem('modeldb.actingAs')") == "reviewer"

    page.locator("#models").get_by_role("link", name="iris-classifier").click()
    expect(page.locator("#versions tr[data-version='1']")).to_contain_text("Production")
    expect(page.locator("#transitions tbody tr").first).to_contain_text("reviewer")


def test_audit_timeline_and_state_as_of_an_event(page: Any, demo_server: ServerProcess) -> None:
    page.goto(f"{demo_server.url}/#/registry?model=iris-classifier")
    page.locator("#versions tr[data-version='1']").get_by_role("link", name="Audit").click()
    timeline = page.locator("#timeline")
    expect(timeline.locator("li[data-event=ModelVersionCreated]").first).to_be_visible()
    expect(timeline.locator("li[data-event=StageTransitionRequested]")).to_contain_text("by")
    timeline.locator("li[data-event=ModelVersionCreated]").first.get_by_role(
        "link", name=re.compile("state after ModelVersionCreated")).click()
    expect(page.locator("#as-of-state")).to_contain_text("iris-classifier v1 None")
    page.locator("#view").get_by_role("link", name="Lineage").click()
    root = page.locator(".graph svg a.node.root")
    expect(root).to_have_attribute("data-node", "modelversion:iris-classifier/1")


def test_a_running_run_updates_live(page: Any, demo_server: ServerProcess) -> None:
    run_id = uuid7()
    started = run_events(run_id, project="live", name="still-training", metrics={"loss": [1.0, 0.8, 0.6]},
                         status=None)
    assert httpx.post(f"{demo_server.url}/api/v1/events", json=wire(started)).status_code < 300
    demo_server.wait_projected()
    page.goto(f"{demo_server.url}/#/run/{run_id}")
    series = page.locator("figure[data-metric=loss] path.series")
    expect(series).to_have_attribute("data-points", "3")
    expect(page.locator("#live")).to_contain_text("live")

    more = new_event("MetricsLogged", run_id, {"points": [
        {"key": "loss", "value": v, "step": 3 + i, "timestamp": 2000 + i} for i, v in enumerate([0.5, 0.4])]})
    assert httpx.post(f"{demo_server.url}/api/v1/events", json=wire([more])).status_code < 300
    expect(series).to_have_attribute("data-points", "5", timeout=10_000)  # polled, no reload


def test_long_histories_are_downsampled_by_the_server(page: Any, demo_server: ServerProcess) -> None:
    run_id = uuid7()
    events = run_events(run_id, project="long", name="long-run",
                        metrics={"loss": [1 / (1 + i) for i in range(5000)]})
    assert httpx.post(f"{demo_server.url}/api/v1/events", json=wire(events)).status_code < 300
    demo_server.wait_projected()
    page.goto(f"{demo_server.url}/#/run/{run_id}")
    chart = page.locator("figure[data-metric=loss]")
    expect(chart).to_contain_text("of 5000 points")
    assert 2 <= int(chart.locator("path.series").get_attribute("data-points")) <= 500
