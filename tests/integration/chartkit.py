"""Helpers for the Helm chart tests (no fixtures here)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from helpers import Kubectl

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/celeriac"
KOPF_CRDS = CHART / "crds/kopf"

Triple = tuple[str, str, str]


def values_args(values: Iterable[str]) -> list[str]:
    return [arg for v in values for arg in ("--set", v)]


def render(
    helm: Kubectl, *values: str, release: str = "r", namespace: str = "celeriac-system"
) -> list[dict[str, Any]]:
    """The chart's objects for these `--set` values."""
    out = helm("template", release, str(CHART), "-n", namespace, *values_args(values))
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def granted(role: dict[str, Any]) -> set[Triple]:
    """(apiGroup, resource, verb) a Role or ClusterRole grants; wildcards fail."""
    out = set()
    for rule in role.get("rules") or []:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        for part in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[part], f"wildcard in {rule}"
        out |= {
            (g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
        }
    return out


def operator_args(docs: list[dict[str, Any]]) -> list[str]:
    """The operator container's arguments (the image's entrypoint is `celeriac run`)."""
    (deployment,) = of_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return [str(a) for a in container["args"]]


def sources(exclude: Path) -> str:
    """The operator's Python sources, as one text to search for evidence."""
    package = ROOT / "operator/celeriac"
    return "\n".join(p.read_text() for p in sorted(package.rglob("*.py")) if p != exclude)


def release_name(namespace: str) -> str:
    """A release name unique per test namespace (cluster-scoped objects carry it)."""
    return "celeriac-" + re.sub(r"[^a-z0-9]", "", namespace)[-5:]
