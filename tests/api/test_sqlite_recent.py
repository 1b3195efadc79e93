"""The SQLite log keeps its newest events for the next reader: every reader still gets exactly
the log's events in order, whatever was kept, evicted, or written by another process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from modeldb.event_schema import to_wire
from modeldb.writer import sqlite_log
from modeldb.writer.sqlite_log import SQLiteEventLog
from tests.helpers import run_events


def _forms(run_id: str) -> list[dict]:
    forms = []
    for event in run_events(run_id, metrics={"loss": [0.5, 0.25, 0.125]}, params={"lr": 0.1}):
        form = to_wire(event)
        form["recorded_at"], form["actor"] = form["occurred_at"], "t"
        forms.append(form)
    return forms


def _ids(events: list) -> list[str]:
    return [e.raw["event_id"] for e in events]


def test_readers_share_decoded_events_and_still_see_the_whole_log(tmp_path: Path) -> None:
    log = SQLiteEventLog(tmp_path / "log.db")
    other = SQLiteEventLog(tmp_path / "log.db")  # another process's writer, in effect
    first = _forms("r1")
    log.append_sync(first)
    behind = log.subscribe("slow-projection", None)  # still at 0: what is read stays kept
    a = log.read_sync(0, 3)
    b = log.read_sync(0, 3)
    assert [e.position for e in a] == [1, 2, 3]
    assert all(x is y for x, y in zip(a, b, strict=True))  # one parse, one decode for both
    assert a[0].event is b[0].event
    second = _forms("r2")
    other.append_sync(second)  # not seen by `log` when written: read from the file
    everything = log.read_sync(0, 1000)
    assert _ids(everything) == [f["event_id"] for f in first + second]
    assert [e.position for e in everything] == list(range(1, len(everything) + 1))
    assert _ids(log.read_sync(2, 2)) == _ids(everything[2:4])
    assert log._recent.events  # kept for the subscriber …
    asyncio.run(behind.close())
    log.read_sync(0, 1000)
    assert not log._recent.events  # … and dropped once no subscriber still needs them


def test_eviction_keeps_only_the_newest_within_the_budget(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sqlite_log, "RECENT_BYTES", 2000)
    log = SQLiteEventLog(tmp_path / "log.db")
    forms = _forms("r1") + _forms("r2")
    log.append_sync(forms)
    behind = log.subscribe("slow-projection", None)
    assert _ids(log.read_sync(0, 1000)) == [f["event_id"] for f in forms]
    kept = log._recent
    assert 0 < kept.size <= 2000 and len(kept.events) < len(forms)
    assert max(kept.events) == len(forms)  # the newest stay
    assert _ids(log.read_sync(0, 1000)) == [f["event_id"] for f in forms]  # evicted: from the file
    assert behind._position == 0


def test_a_read_decodes_a_bounded_number_of_bytes_and_still_returns_everything(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sqlite_log, "MAX_READ_BYTES", 1500)
    log = SQLiteEventLog(tmp_path / "log.db")
    forms = _forms("r1") + _forms("r2") + _forms("r3")
    log.append_sync(forms)
    seen, after, reads = [], 0, 0
    while batch := log.read_sync(after, 1000):  # fresh from the file, then from the kept ones
        sizes = [len(orjson.dumps(e.raw)) for e in batch]
        assert len(batch) == 1 or sum(sizes[:-1]) < 1500
        seen += batch
        after, reads = batch[-1].position, reads + 1
    assert _ids(seen) == [f["event_id"] for f in forms]
    assert reads > 1
    again = log.read_sync(0, 1000)  # the kept events count against the budget too
    assert 0 < len(again) < len(forms)
