"""The kafka:// transport: the SDK is its own writer and produces straight to the log.

Events are validated and stamped (actor = the local user) in-process, exactly as the
embedded transport does, then appended through the writer's Kafka adapter (idempotent,
acks=all, one transaction per batch). There is no server on this path, so artifacts go
to the artifact store named by `$MODELDB_ARTIFACT_STORE` (s3://bucket/prefix) or else
`$MODELDB_ARTIFACTS` (a folder every reader can reach), and
queries go to the API named by `$MODELDB_API_URL`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modeldb import _settings
from modeldb._errors import UnsupportedTransport
from modeldb._transports import SelfWritingTransport, Target, local_user


class KafkaTransport(SelfWritingTransport):
    def __init__(self, target: Target, options: _settings.Options) -> None:
        # Only kafka:// users pay for aiokafka and the writer.
        from modeldb.writer import Writer
        from modeldb.writer.artifacts import open_artifact_store
        from modeldb.writer.kafka_log import KafkaEventLog

        self.url = target.url
        self.actor = local_user()
        self._log = KafkaEventLog(target.url)
        self._writer = Writer(self._log, vault=_vault())
        artifacts = os.environ.get("MODELDB_ARTIFACTS") or _settings.home() / "artifacts"
        # The server's setting: s3://bucket/prefix puts artifacts where the server reads them.
        self._store = open_artifact_store(os.environ.get("MODELDB_ARTIFACT_STORE") or "", Path(artifacts),
                                          s3_endpoint_url=os.environ.get("MODELDB_S3_ENDPOINT_URL"))
        self._api = os.environ.get("MODELDB_API_URL")

    def query(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        if not self._api:
            raise UnsupportedTransport(
                "queries need a ModelDB API when logging straight to Kafka: set MODELDB_API_URL "
                "to its http://host:port")
        from modeldb._http import HttpTransport

        api = HttpTransport(Target("http", self._api.rstrip("/")), _settings.Options.load())
        try:
            return api.query(query, variables)
        finally:
            api.close()

    def command(self, command: str, args: Mapping[str, Any]) -> dict[str, Any]:
        # Registry commands are checked against the model's history by a writer: they go to
        # the API too, never straight to the log.
        if not self._api:
            raise UnsupportedTransport(
                "registry calls need a ModelDB API when logging straight to Kafka: set "
                "MODELDB_API_URL to its http://host:port")
        from modeldb._http import HttpTransport

        api = HttpTransport(Target("http", self._api.rstrip("/")), _settings.Options.load())
        try:
            return api.command(command, args)
        finally:
            api.close()

    def close(self) -> None:
        self._log.close_sync()


def _vault() -> Any:
    """The server's key store, when this job is given it: values marked sensitive are sealed
    here, before they reach Kafka. Without MODELDB_KEY_STORE (or a PostgreSQL
    MODELDB_READ_DB) and MODELDB_SERVER_KEY, such values are refused, never sent in clear."""
    from modeldb.writer.vault import Vault, open_key_store

    where = os.environ.get("MODELDB_KEY_STORE") or os.environ.get("MODELDB_READ_DB") or ""
    key = os.environ.get("MODELDB_SERVER_KEY")
    if not key or not where.startswith("postgresql"):
        return None
    return Vault(open_key_store(where), key.encode())
