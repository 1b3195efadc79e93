"""The browser the web UI's tests drive: Debian's Chromium, installed through apt-get the first
time (like the launcher's PostgreSQL), never a browser downloaded by Playwright."""

from __future__ import annotations

import os

# Headless and quiet: no sandbox (tests may run as root in a container), no GPU, and no calls
# home (updates, sync, QUIC), so a test run needs no network beyond loopback.
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


def chromium() -> str:
    """The Chromium executable: $MODELDB_TEST_CHROMIUM, else `chromium` on the PATH, else
    installed now with apt-get (once per machine; needs root, else says what to run)."""
    from modeldb.infra.launcher import _tool

    return os.environ.get("MODELDB_TEST_CHROMIUM") or _tool("chromium", "chromium")


if __name__ == "__main__":  # python -m modeldb.infra.browser: install if needed, print the path
    print(chromium())
