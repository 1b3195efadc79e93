"""Every setting ModelDB reads, declared once, with the embedded defaults.

Environment variables (the public contract): MODELDB_URL, MODELDB_HOME, MODELDB_EVENT_LOG,
MODELDB_READ_DB, MODELDB_GRAPH. Unset means embedded storage inside MODELDB_HOME.
MODELDB_SERVER_KEY: the secret behind webhook signatures and audit checkpoints (default:
made once in `<home>/server.key`; see modeldb.writer.keys).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_home() -> Path:
    return Path(os.environ.get("MODELDB_HOME") or Path.home() / ".modeldb")


@dataclass(frozen=True)
class Settings:
    home: Path
    event_log: str  # a SQLite path, or kafka://host:port
    read_db: str  # an SQLAlchemy async URL
    graph: str  # "sql", or bolt://host:port
    artifacts: Path
    max_body: int = 32 * 1024 * 1024
    max_batch: int = 10_000
    server_key: str | None = None  # MODELDB_SERVER_KEY; None: <home>/server.key

    @classmethod
    def load(cls, home: str | Path | None = None) -> Settings:
        """Settings from the environment; `home` (e.g. --data-dir) overrides MODELDB_HOME."""
        root = Path(home) if home else default_home()
        env = os.environ
        return cls(
            home=root,
            event_log=env.get("MODELDB_EVENT_LOG") or str(root / "events.db"),
            read_db=env.get("MODELDB_READ_DB") or f"sqlite+aiosqlite:///{root / 'read.db'}",
            graph=env.get("MODELDB_GRAPH") or "sql",
            artifacts=Path(env.get("MODELDB_ARTIFACTS") or root / "artifacts"),
            max_body=int(env.get("MODELDB_MAX_BODY", 32 * 1024 * 1024)),
            max_batch=int(env.get("MODELDB_MAX_BATCH", 10_000)),
            server_key=env.get("MODELDB_SERVER_KEY") or None,
        )

    def key(self) -> bytes:
        from modeldb.writer.keys import server_key

        return server_key(self.home, self.server_key)

    @property
    def embedded(self) -> bool:
        return not self.event_log.startswith("kafka://")
