"""The Kubernetes manifests (infra/k8s) against the Kubernetes schemas bundled in the
kubernetes-validate package (offline), and against ModelDB itself: real commands, known
settings, probes on public health routes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modeldb.infra.cli import build_parser
from modeldb.infra.guard import ROUTE_RULES

K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"
VERSION = "1.30.0"


def documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def containers() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, doc in documents():
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {})
        found += [(f"{name}:{c['name']}", c) for c in (pod or {}).get("containers", [])]
    return found


@pytest.mark.parametrize(("name", "doc"), documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_manifest_is_valid_kubernetes(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == files


def test_the_writer_projectors_and_api_run_real_commands_with_known_settings() -> None:
    settings_source = (Path(__file__).resolve().parents[2] / "infra" / "settings.py").read_text()
    known = set(re.findall(r"MODELDB_[A-Z0-9_]+", settings_source))
    commands = {}
    for _name, container in containers():
        command = container["command"]
        assert command[0] == "modeldb"
        build_parser().parse_args(command[1:])  # a real subcommand with real options
        commands[command[1]] = container
    assert {"writer", "api", "project", "migrate"} <= set(commands)
    config = next(d for _n, d in documents() if d["kind"] == "ConfigMap")
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    for key in [*config["data"], *secret["stringData"]]:
        assert key in known, f"{key} is not a setting ModelDB reads"
    assert config["data"]["MODELDB_AUTH"] == "token"  # never the local mode on a cluster
    assert config["data"]["MODELDB_EVENT_LOG"].startswith("kafka://")
    assert secret["stringData"]["MODELDB_READ_DB"].startswith("postgresql+asyncpg://")
    assert config["data"]["MODELDB_GRAPH"].startswith("bolt://")
    for role in ("writer", "api"):
        probes = commands[role]
        for probe in ("livenessProbe", "readinessProbe"):
            path = probes[probe]["httpGet"]["path"]
            assert ROUTE_RULES[("GET", path)] == "public"  # no token needed to probe
