"""Every setting ModelDB reads, declared once, with the embedded defaults.

Environment variables (the public contract): MODELDB_URL, MODELDB_HOME, MODELDB_EVENT_LOG,
MODELDB_READ_DB, MODELDB_GRAPH. Unset means embedded storage inside MODELDB_HOME.
MODELDB_ARTIFACT_STORE (s3://bucket/prefix) and MODELDB_S3_ENDPOINT_URL: artifacts on S3.
MODELDB_SERVER_KEY: the secret behind webhook signatures and audit checkpoints (default:
made once in `<home>/server.key`; see modeldb.writer.keys). MODELDB_KEY_STORE: where the
data keys of sensitive values live (default: the read model's PostgreSQL database, else
`<home>/keys.db`; see modeldb.writer.vault).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modeldb.writer.vault import Vault


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
    # MODELDB_ARTIFACT_STORE: "" (the folder `artifacts`) or s3://bucket/prefix, then
    # `artifacts` only stages incoming files; MODELDB_S3_ENDPOINT_URL: a non-AWS S3 server.
    artifact_store: str = ""
    s3_endpoint_url: str | None = None
    key_store: str = ""  # "" → default_key_store(); see the module docstring
    # Security and operations (README "Security model"): MODELDB_AUTH local|token|proxy,
    # MODELDB_AUTH_PROXY_HEADER (proxy mode), MODELDB_RATE_LIMIT (requests/s per caller,
    # 0: none), MODELDB_LOG_FORMAT text|json, MODELDB_READY_LAG (events a projection may
    # trail the log by and still be ready).
    auth: str = "local"
    auth_proxy_header: str = "x-forwarded-user"
    rate_limit: float = 0.0
    log_format: str = "text"
    ready_lag: int = 1000

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
            artifact_store=env.get("MODELDB_ARTIFACT_STORE") or "",
            s3_endpoint_url=env.get("MODELDB_S3_ENDPOINT_URL") or None,
            key_store=env.get("MODELDB_KEY_STORE") or "",
            auth=(env.get("MODELDB_AUTH") or "local").strip().lower(),
            auth_proxy_header=env.get("MODELDB_AUTH_PROXY_HEADER") or "x-forwarded-user",
            rate_limit=float(env.get("MODELDB_RATE_LIMIT") or 0),
            log_format=(env.get("MODELDB_LOG_FORMAT") or "text").strip().lower(),
            ready_lag=int(env.get("MODELDB_READY_LAG") or 1000),
        )

    def key(self) -> bytes:
        from modeldb.writer.keys import server_key

        return server_key(self.home, self.server_key)

    def vault(self) -> Vault:
        """The sealer of sensitive values; keys default to the read model's PostgreSQL
        database (a table no replay touches), else a SQLite file in the home."""
        from modeldb.writer.vault import Vault, open_key_store

        where = self.key_store or (self.read_db if self.read_db.startswith("postgresql")
                                   else str(self.home / "keys.db"))
        return Vault(open_key_store(where), self.key())

    @property
    def embedded(self) -> bool:
        return not self.event_log.startswith("kafka://")
