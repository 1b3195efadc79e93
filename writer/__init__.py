"""The command side: validate, stamp and append events; the EventLog port and adapters;
the artifact store. Imports event_schema only."""

from modeldb.writer.artifacts import ArtifactStore, LocalArtifactStore
from modeldb.writer.log import Batch, EventLog, Subscription, open_event_log
from modeldb.writer.service import BatchTooLarge, Writer

__all__ = [
    "ArtifactStore",
    "Batch",
    "BatchTooLarge",
    "EventLog",
    "LocalArtifactStore",
    "Subscription",
    "Writer",
    "open_event_log",
]
