"""Signed checkpoints of the audit chain: the head of each partition's hash chain, signed
with the server key (HMAC-SHA256), as a JSON document an auditor keeps.

The chain already makes any edit, gap or reordering visible, unless whoever made it also
rewrote every later hash (or the log and the audit store together). A checkpoint pins the
chain as it was: `modeldb verify --checkpoint FILE` recomputes the chain and requires the
hash at each checkpointed position to be the one signed, so nothing before it can have
changed since; a checkpoint that was altered or made without the key fails its signature.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from modeldb.projectors.audit import AuditStore, Verdict, hash_at, heads
from modeldb.writer.keys import key_id

FORMAT = "modeldb-audit-checkpoint/1"


def _signed_bytes(doc: Mapping[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in doc.items() if k != "signature"},
                        option=orjson.OPT_SORT_KEYS)


def sign(doc: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, _signed_bytes(doc), hashlib.sha256).hexdigest()


async def make_checkpoint(audit: AuditStore, key: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "key_id": key_id(key),
        "heads": [{"partition": part, "position": position, "hash": digest}
                  for part, (position, digest) in sorted((await heads(audit)).items())],
    }
    doc["signature"] = sign(doc, key)
    return doc


def signature_valid(doc: Mapping[str, Any], key: bytes) -> bool:
    given = doc.get("signature")
    return isinstance(given, str) and hmac.compare_digest(given, sign(doc, key))


async def check(audit: AuditStore, doc: Mapping[str, Any], key: bytes, checked: int = 0) -> Verdict:
    """Compare a (chain-verified) audit store with one checkpoint."""
    if doc.get("format") != FORMAT or not isinstance(doc.get("heads"), list):
        return Verdict(False, checked, reason=f"not a {FORMAT} document")
    if not signature_valid(doc, key):
        return Verdict(False, checked, reason="checkpoint signature invalid: the checkpoint was "
                       "altered, forged, or signed with another server key "
                       f"(this server's key id is {key_id(key)})")
    for head in doc["heads"]:
        part, position = int(head["partition"]), int(head["position"])
        found = await hash_at(audit, part, position)
        if found is None:
            return Verdict(False, checked, part, position, "the checkpointed record is missing "
                           f"(checkpoint of {doc.get('created_at')})")
        if found != head["hash"]:
            return Verdict(False, checked, part, position, "chain differs from the signed "
                           f"checkpoint of {doc.get('created_at')}: a record at or before this "
                           "position was altered, removed or reordered")
    return Verdict(True, checked)
