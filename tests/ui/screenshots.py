"""Screenshots of the main pages of the web UI for the README, on the demo data:

    python -m tests.ui.screenshots [--out docs/screenshots]

Starts its own embedded `modeldb serve` in a temporary folder; needs Playwright and Chromium
(installed through apt-get the first time, see modeldb.infra.browser)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from tests.ui.support import VIEWPORT, browser, load_demo, ui_server


def shoot(page: Any, out: Path, name: str, url: str, ready: str) -> None:
    page.goto(url)
    page.locator(ready).first.wait_for()
    page.wait_for_timeout(300)  # let the charts settle
    page.screenshot(path=str(out / f"{name}.png"))
    print(f"wrote {out / name}.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, ui_server(Path(tmp) / "home") as server, browser() as b:
        page = b.new_page(viewport=VIEWPORT)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        load_demo(page, server)
        runs = server.graphql("""{ runs(filter: "params.model = 'SGDClassifier'",
            orderBy: ["metrics.accuracy DESC"], first: 3) { edges { node { id } } } }""")["runs"]["edges"]
        ids = [e["node"]["id"] for e in runs]
        base = server.url
        shoot(page, out, "runs", f"{base}/#/runs?filter=tags.family%20%3D%20'linear'", "#runs-table")
        shoot(page, out, "run", f"{base}/#/run/{ids[0]}", "#charts svg")
        shoot(page, out, "compare", f"{base}/#/compare?ids={','.join(ids)}", "#charts svg")
        lineage = "id=modelversion:iris-classifier/1&dir=UPSTREAM&depth=4"
        shoot(page, out, "lineage", f"{base}/#/lineage?{lineage}", ".graph svg")
        shoot(page, out, "registry", f"{base}/#/registry?model=iris-classifier", "#versions")
        shoot(page, out, "audit", f"{base}/#/audit?id=modelversion:iris-classifier/1", "#timeline")
        if errors:
            raise SystemExit(f"the UI raised errors: {errors}")


if __name__ == "__main__":
    main()
