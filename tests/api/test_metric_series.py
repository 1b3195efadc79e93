"""metricSeries, the columnar read of a metric history: the same points as metricHistory
(non-finite values included), downsampled alike, on both stacks, in process and over HTTP
through the SDK's get_metric_history (embedded SDK: tests/client/test_history.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest

import modeldb
from modeldb import _client
from modeldb.event_schema import uuid7
from modeldb.infra.system import System
from modeldb.query_api import series as series_module
from tests.api.test_analysis import gql, gql_error, metric_events, series
from tests.helpers import ServerProcess, run_events, wire

BOTH = """query($id: ID!, $key: String!, $m: Int) { run(id: $id) {
  metricHistory(key: $key, maxPoints: $m) { step timestamp value }
  metricSeries(key: $key, maxPoints: $m) } }"""


def as_points(columns: dict[str, Any]) -> list[dict[str, Any]]:
    assert columns["count"] == len(columns["steps"]) == len(columns["timestamps"]) == len(columns["values"])
    return [{"step": s, "timestamp": float(t), "value": v}
            for s, t, v in zip(columns["steps"], columns["timestamps"], columns["values"], strict=True)]


async def logged(system: System, n: int = 5000) -> str:
    run = uuid7()
    events = run_events(run, status=None) + metric_events(run, "loss", series(n))
    await system.writer.ingest(wire(events), "t")
    await system.catch_up()
    return run


async def test_metric_series_equals_metric_history(system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(series_module, "CHUNK", 700)  # several driver fetches and JSON pieces
    run = await logged(system)
    for m in (None, 6000, 500, 64, 3, 2):
        data = (await gql(system, BOTH, id=run, key="loss", m=m))["run"]
        columns = data["metricSeries"]
        assert as_points(columns) == data["metricHistory"]
        assert columns["key"] == "loss" and columns["sampled"] == (m is not None and m < 5000)
    whole = (await gql(system, BOTH, id=run, key="loss", m=None))["run"]["metricSeries"]
    assert whole["count"] == 5000 and whole["steps"] == list(range(5000))
    # NaN and ±inf read as null, exactly where they were logged; everything else as logged.
    expected = series(5000)
    assert [i for i, v in enumerate(whole["values"]) if v is None] == \
        [i for i, v in enumerate(expected) if not math.isfinite(v)]
    assert all(v == e for v, e in zip(whole["values"], expected, strict=True) if v is not None)
    # An unknown key is an empty series; an unknown run is null; a bad maxPoints is named.
    empty = (await gql(system, BOTH, id=run, key="nope", m=None))["run"]["metricSeries"]
    assert empty == {"key": "nope", "count": 0, "sampled": False, "steps": [], "timestamps": [], "values": []}
    assert (await gql(system, BOTH, id=uuid7(), key="loss", m=None))["run"] is None
    assert "maxPoints must be at least 2" in await gql_error(system, BOTH, id=run, key="loss", m=1)


def test_get_metric_history_over_http(modeldb_server: ServerProcess, tmp_path: Path) -> None:
    """Over HTTP metricSeries is pre-encoded JSON: it must read exactly as metricHistory."""
    modeldb.init(modeldb_server.url, project="p", experiment="e", spool_dir=tmp_path / "spool")
    try:
        _read_back(modeldb_server)
    finally:
        _client.shutdown(timeout=5)


def _read_back(modeldb_server: ServerProcess) -> None:
    values = [0.5, float("nan"), float("inf"), -1.25, float("-inf"), 3.0] * 300
    with modeldb.start_run(name="s") as run:
        for step, value in enumerate(values):
            run.log_metric("loss", value, step=step)
    assert modeldb.flush(30)
    # The read model follows the log: wait until it has applied everything sent.
    waited = httpx.get(f"{modeldb_server.url}/api/v1/projections", params={"wait": "true"}, timeout=60)
    assert waited.status_code == 200, waited.text
    history = modeldb.get_metric_history(run.id, "loss")
    assert len(history) == len(values) and history.steps == list(range(len(values)))
    assert not history.sampled
    for got, logged_value in zip(history.values, values, strict=True):
        assert got == logged_value if math.isfinite(logged_value) else math.isnan(got)
    sampled = modeldb.get_metric_history(run.id, "loss", max_points=50)
    assert sampled.sampled and 2 < len(sampled) <= 50
    assert max(v for _, _, v in sampled if not math.isnan(v)) == 3.0
    assert len(modeldb.get_metric_history(run.id, "other")) == 0
    with pytest.raises(modeldb.QueryError, match="no run"):
        modeldb.get_metric_history(uuid7(), "loss")
    r = httpx.post(f"{modeldb_server.url}/graphql", timeout=30,
                   json={"query": BOTH, "variables": {"id": run.id, "key": "loss", "m": None}})
    data = r.json()["data"]["run"]
    assert as_points(data["metricSeries"]) == data["metricHistory"]


def test_graphql_responses_encode_with_orjson_and_fall_back_for_what_it_cannot() -> None:
    import orjson

    from modeldb.query_api.encoding import encode

    fragment = orjson.Fragment(b'{"values":[1.5,null]}')
    expected = '{"data":{"s":{"values":[1.5,null]},"t":"é"}}'.encode()
    assert encode({"data": {"s": fragment, "t": "é"}}) == expected
    # An integer beyond 64 bits (in a JSON value) is written by json.dumps, fragments included.
    assert orjson.loads(encode({"data": {"big": 2**70, "s": fragment}})) == \
        {"data": {"big": 2**70, "s": {"values": [1.5, None]}}}
