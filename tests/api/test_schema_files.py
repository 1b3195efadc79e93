"""The published contracts are files in the repository; these tests fail when the code and
the files drift apart (regenerate them with the commands in each message)."""

from __future__ import annotations

import json
from pathlib import Path

from modeldb.event_schema import json_schema
from modeldb.query_api.app import SCHEMA_FILE, export_schema

ROOT = Path(__file__).resolve().parents[2]


def test_graphql_schema_file_matches_the_code() -> None:
    assert SCHEMA_FILE.read_text() == export_schema(), (
        "regenerate: python -m modeldb.query_api.app > query_api/schema.graphql")


def test_event_json_schema_file_matches_the_code() -> None:
    published = json.loads((ROOT / "event_schema" / "events.schema.json").read_text())
    assert published == json.loads(json.dumps(json_schema())), (
        "regenerate: python -c 'import json; from modeldb.event_schema import json_schema; "
        "print(json.dumps(json_schema(), indent=2, sort_keys=True))' > event_schema/events.schema.json")
