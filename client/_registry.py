"""The model registry from training code: register a run's model, move it between stages,
point an alias at it. Each call is one registry command, checked by the writer against the
model's history (see modeldb.writer.commands) and answered with the version as it now is.

A refused command raises RequestRejected with the writer's reason and an HTTP-like status:
404 (no such model, version or run), 403 (needs an approval, or a role), 409 (locked,
already decided, or changed meanwhile), 422 (invalid arguments).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modeldb._client import current
from modeldb._errors import InvalidArgument, QueryError
from modeldb._run import Artifact, Run

STAGES = ("None", "Staging", "Production", "Archived")
READ_YOUR_WRITES_TIMEOUT = 10.0


@dataclass(frozen=True)
class ModelVersion:
    """A registered model's version, as the registry holds it."""

    name: str
    version: int
    stage: str
    aliases: tuple[str, ...] = ()
    run_id: str | None = None
    artifact_name: str | None = None
    artifact_digest: str | None = None
    source_uri: str | None = None
    description: str = ""


def _command(command: str, args: Mapping[str, Any]) -> dict[str, Any]:
    client = current()
    # The command may name what this process logged (a run, its artifact): deliver it first.
    client.flush(READ_YOUR_WRITES_TIMEOUT)
    return client.transport().command(command, args)


def _version_of(answer: Mapping[str, Any], number: int) -> ModelVersion:
    state = answer.get("state") or {}
    for v in state.get("versions", []):
        if v.get("version") == number:
            return ModelVersion(
                name=state["name"], version=number, stage=v["stage"],
                aliases=tuple(v.get("aliases", ())), run_id=v.get("run_id"),
                artifact_name=v.get("artifact_name"), artifact_digest=v.get("artifact_digest"),
                source_uri=v.get("source_uri"), description=v.get("description", ""))
    raise QueryError(f"the registry's answer has no version {number}: {answer!r:.300}")


def _number(version: Any) -> int:
    if isinstance(version, ModelVersion):
        return version.version
    if isinstance(version, bool) or not isinstance(version, int | str) or not str(version).isdigit():
        raise InvalidArgument(f"version must be a positive number, not {version!r}")
    return int(version)


def register_model(name: str, run: Run | str | None = None, artifact: Artifact | str | None = None,
                   *, source_uri: str | None = None, description: str = "") -> ModelVersion:
    """Register a new version of model `name` (made if new) from `run`'s `artifact` (an
    Artifact from run.log_artifact, or its name), or from `source_uri` for a model stored
    elsewhere. Version numbers are assigned by the registry, never twice."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("register_model needs a model name")
    run_id = run.id if isinstance(run, Run) else run
    if artifact is not None and run_id is None:
        raise InvalidArgument("artifact names an artifact of a run: pass run too")
    if run_id is None and source_uri is None:
        raise InvalidArgument("register_model needs a run (and its artifact) or a source_uri")
    wanted = artifact.digest if isinstance(artifact, Artifact) else artifact
    answer = _command("create_version", {
        "name": name, "run_id": run_id, "artifact": wanted, "source_uri": source_uri,
        "description": description, "create_model": True})
    return _version_of(answer, int(answer["result"]["version"]))


def set_stage(name: str, version: int | str | ModelVersion, stage: str, *,
              comment: str = "") -> ModelVersion:
    """Move a version to a stage (None, Staging, Production, Archived). A model whose rules
    require approval for that stage refuses this (403): request the transition instead."""
    if stage not in STAGES:
        raise InvalidArgument(f"stage must be one of {', '.join(STAGES)}, not {stage!r}")
    number = _number(version)
    answer = _command("set_stage", {"name": name, "version": number, "stage": stage,
                                    "comment": comment})
    return _version_of(answer, number)


def set_alias(name: str, alias: str, version: int | str | ModelVersion) -> ModelVersion:
    """Point `alias` (e.g. "champion") at a version; an alias names one version at a time."""
    number = _number(version)
    answer = _command("set_alias", {"name": name, "alias": alias, "version": number})
    return _version_of(answer, number)


def redact_run(run: Run | str, reason: str) -> list[str]:
    """Erase the values `run` logged with `sensitive=True`: its data keys are destroyed, so
    every projection and answer shows a redaction marker instead (needs the admin role).
    The redaction itself (who, when, why) stays in the audit trail. The paths erased."""
    run_id = run.id if isinstance(run, Run) else run
    return list(_command("redact_run", {"run_id": run_id, "reason": reason})["result"]["redacted"])
