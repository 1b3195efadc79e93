"""The redaction command: erase a run's sensitive values by destroying its data keys.

It records the redaction first (a `ValuesRedacted` event: who, when, why, and for each
erased value the digest of the sealed token the log keeps), then destroys the keys. If
the destruction fails, the event still makes every projection show the values as
redacted, and running the command again destroys the keys (it is idempotent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modeldb.event_schema import types as t
from modeldb.writer.registry import ADMIN_ROLE, Args, CommandRefused, Decision, Forbidden, NotFound, RunFacts
from modeldb.writer.vault import is_token, key_id_of, token_digest

if TYPE_CHECKING:
    from modeldb.writer.commands import CommandService
    from modeldb.writer.registry import Principal


class RedactRun(Args):
    run_id: t.Key
    reason: t.Text


def redact_run(run: RunFacts, a: RedactRun, who: Principal, _reads: Any,
               service: CommandService) -> Decision:
    if ADMIN_ROLE not in who.roles:
        raise Forbidden(f"a redaction needs the {ADMIN_ROLE} role")
    if service.writer.vault is None:
        raise CommandRefused("this writer has no key store: nothing it wrote can be redacted")
    if not run.exists:
        raise NotFound(f"no run {a.run_id!r}")
    if not a.reason.strip():
        raise CommandRefused("a redaction needs a reason (it is kept in the audit trail)")
    live = {path: [v for v in values if is_token(v) and key_id_of(v) not in run.redacted_keys]
            for path, values in run.sealed.items()}
    live = {path: values for path, values in live.items() if values}
    if not live:
        return Decision([], {"redacted": []})
    return Decision([("ValuesRedacted", {
        "reason": a.reason,
        # The value a reader saw last is the one a marker replaces.
        "redacted": {path: token_digest(values[-1]) for path, values in sorted(live.items())},
        "key_ids": sorted({key_id_of(v) for values in live.values() for v in values}),
    })], {"redacted": sorted(live)})


async def destroy_keys(a: RedactRun, service: CommandService) -> dict[str, Any]:
    assert service.writer.vault is not None
    return {"keys_destroyed": len(await service.writer.vault.destroy(a.run_id))}
