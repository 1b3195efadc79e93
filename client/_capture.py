"""What a run ran with: the git code version, and the Python environment.

Both must be cheap because they happen on every start_run: git is three short
subprocesses (a few ms, 2 s timeout each, silently skipped without git or a repository);
the environment is read from distribution metadata once per process (~5 ms).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

GIT_TIMEOUT = 2.0
# The schema's limits for EnvironmentRecorded.packages.
_MAX_PACKAGES, _MAX_NAME, _MAX_VERSION = 5000, 250, 100


def _git(cwd: Path, *args: str) -> bytes | None:
    import subprocess  # here, not at the top: `import modeldb` stays quick

    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, timeout=GIT_TIMEOUT,
            stdin=subprocess.DEVNULL, check=False,
        )
    except (OSError, subprocess.SubprocessError):  # no git, no such folder, too slow
        return None
    return done.stdout if done.returncode == 0 else None


def _candidates() -> list[Path]:
    # The script being run names the project better than the working folder does, but a
    # notebook or `python -c` has no script: then the working folder it is.
    found: list[Path] = []
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    installed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    if main:
        folder = Path(main).resolve().parent
        # A script inside the Python installation is a tool's launcher (pytest, ipykernel),
        # not the user's code.
        if not any(folder.is_relative_to(p) for p in installed):
            found.append(folder)
    with contextlib.suppress(OSError):  # the working folder was deleted
        found.append(Path.cwd())
    return found


def redact_url(url: str) -> str:
    """A remote URL without credentials (https://user:token@host/… is common in CI)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def code_version(where: Path | None = None) -> dict[str, Any] | None:
    """A CodeVersionRecorded payload for the repository at `where` (default: the running
    script's, else the working folder's), or None outside a git repository."""
    for folder in [where] if where else _candidates():
        head = _git(folder, "rev-parse", "HEAD", "--abbrev-ref", "HEAD")
        if head is None:
            continue
        lines = head.decode(errors="replace").split()
        if not lines:
            continue
        commit, branch = lines[0], (lines[1] if len(lines) > 1 else None)
        remote = _git(folder, "config", "--get", "remote.origin.url")
        diff = _git(folder, "diff", "HEAD", "--no-ext-diff", "--no-color", "--binary")
        dirty = bool(diff)
        return {
            "commit": commit,
            "branch": None if branch in (None, "HEAD") else branch,  # "HEAD": detached
            "repository": redact_url(remote.decode().strip()) if remote and remote.strip() else None,
            "dirty": dirty,
            "diff_digest": f"sha256:{hashlib.sha256(diff).hexdigest()}" if diff else None,
        }
    return None


@functools.cache
def environment() -> dict[str, Any]:
    """An EnvironmentRecorded payload; cached, since installed packages rarely change."""
    import platform

    return {
        "python": platform.python_version(),
        "platform": platform.platform()[:200],
        "packages": installed_packages(),
    }


def installed_packages() -> dict[str, str]:
    # Reading "Name:" and "Version:" lines ourselves is ~10x faster than dist.metadata,
    # which parses the whole file as an e-mail message.
    import importlib.metadata

    packages: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        name = version = None
        for line in text.split("\n", 30)[:30]:
            if line.startswith("Name:"):
                name = line[5:].strip()
            elif line.startswith("Version:"):
                version = line[8:].strip()
            if name and version:
                break
        if name and version and len(name) <= _MAX_NAME:
            packages.setdefault(name, version[:_MAX_VERSION])  # first on sys.path wins
        if len(packages) >= _MAX_PACKAGES:
            break
    return dict(sorted(packages.items()))
