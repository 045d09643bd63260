"""The Helm chart with the Go-built helm, against the real API server: lint, a
server-side dry run of what it renders, an install under the restricted Pod
Security Standard, values refused with a message naming the field, and RBAC equal
to the operator's reasoned list of permissions (celeriac.permissions)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chartkit import CHART, KOPF_CRDS, granted, of_kind, release_name, render, sources
from kubernetes import client
from waiting import wait_for

from celeriac import permissions
from helpers import Kubectl

pytestmark = pytest.mark.integration

VALUE_SETS = {
    "defaults": [],
    "namespace-scope": ["rbac.scope=namespace", "watchNamespaces={team-a,team-b}"],
    "cluster-scope-some-namespaces": ["watchNamespaces={team-a}"],
    "single-standalone": ["replicaCount=1", "peering.enabled=false"],
    "service-monitor": ["metrics.serviceMonitor.enabled=true"],
}


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_passes(helm: Kubectl, values: list[str]) -> None:
    args = [a for v in values for a in ("--set", v)]
    out = helm("lint", "--strict", str(CHART), *args)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


@pytest.fixture
def kopf_crds(kubectl: Kubectl) -> None:
    """The peering CRDs, really applied: a dry run cannot create the kinds it uses."""
    out = kubectl("apply", "--server-side", "-f", str(KOPF_CRDS))
    assert out.returncode == 0, out.stderr
    out = kubectl("wait", "--for=condition=Established", "-f", str(KOPF_CRDS))
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_rendered_chart_passes_a_server_side_dry_run(
    helm: Kubectl, kubectl: Kubectl, namespace: str, crds: Any, kopf_crds: None, scope: str
) -> None:
    out = helm(
        "template", "dry", str(CHART), "-n", namespace, "--include-crds",
        "--set", f"rbac.scope={scope}",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    applied = kubectl(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-n", namespace,
        "-f", "-", input=out.stdout,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    kinds = {line.split("/")[0] for line in applied.stdout.splitlines()}
    assert {"deployment.apps", "serviceaccount", "service"} <= kinds, applied.stdout
    role = "clusterrole" if scope == "cluster" else "role"
    assert f"{role}.rbac.authorization.k8s.io" in kinds, applied.stdout
    assert all(line.endswith("(server dry run)") for line in applied.stdout.splitlines())


@pytest.fixture
def restricted_namespace(kube_api: client.ApiClient, namespace: str) -> str:
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}
    client.CoreV1Api(kube_api).patch_namespace(namespace, {"metadata": {"labels": labels}})
    return namespace


@pytest.fixture
def release(
    helm: Kubectl, control_plane: Any, restricted_namespace: str
) -> Iterator[tuple[str, str]]:
    """(release, namespace); uninstalled afterwards, as it holds cluster-scoped objects."""
    name = release_name(restricted_namespace)
    yield name, restricted_namespace
    helm(
        "uninstall", name, "-n", restricted_namespace, "--kubeconfig", str(control_plane.kubeconfig)
    )


def test_install_is_admitted_under_restricted_pod_security(
    helm: Kubectl,
    kubectl: Kubectl,
    kube_api: client.ApiClient,
    control_plane: Any,
    crds: Any,
    release: tuple[str, str],
) -> None:
    name, ns = release
    core = client.CoreV1Api(kube_api)
    # Control: the namespace really enforces `restricted` (a root pod is refused).
    bad = kubectl("run", "root", "-n", ns, "--image=busybox", "--restart=Never")
    assert bad.returncode != 0 and "violates PodSecurity" in bad.stderr, bad.stderr

    out = helm("install", name, str(CHART), "-n", ns, "--kubeconfig", str(control_plane.kubeconfig))
    assert out.returncode == 0, out.stderr
    assert "PodSecurity" not in out.stderr, out.stderr  # the `warn` label reports violations
    assert "kubectl apply -f examples/broker-sentinel.yaml" in out.stdout  # NOTES.txt
    # The ReplicaSet controller creates the pods only if admission lets them in; they
    # stay Pending, as no node runs them.
    selector = f"app.kubernetes.io/instance={name}"
    pods = wait_for(
        lambda: (
            len(items := core.list_namespaced_pod(ns, label_selector=selector).items) == 2 and items
        ),
        60,
        0.2,
        "two operator pods",
    )
    assert {p.spec.service_account_name for p in pods} == {name}
    refused = [
        e.message
        for e in core.list_namespaced_event(ns).items
        if e.reason == "FailedCreate" and "PodSecurity" in (e.message or "")
    ]
    assert not refused, refused


BAD_VALUES = {
    "replicaCount=-1": "'/replicaCount': minimum",
    "image.pullPolicy=Sometimes": "'/image/pullPolicy': value must be one of",
    "rbac.scope=bogus": "'/rbac/scope': value must be one of 'cluster', 'namespace'",
    "watchNamespaces={Not_A_Namespace}": "'/watchNamespaces/0'",
    "metrics.port=70000": "'/metrics/port': maximum",
    "replicas=3": "additional properties 'replicas' not allowed",
    "peering.enabled=false": "'/peering/enabled': value must be true",  # with 2 replicas
    "metrics.serviceMonitor.enabled=true,metrics.enabled=false": "'/metrics/enabled'",
    "health.port=9090": "metrics.port and health.port must differ",
}
# helm lint turns a template's `fail` into an INFO line, by design.
LINT_BLIND = {"health.port=9090"}


@pytest.mark.parametrize("bad", BAD_VALUES.keys())
def test_bad_values_are_refused_naming_the_field(
    helm: Kubectl, control_plane: Any, namespace: str, bad: str
) -> None:
    message = BAD_VALUES[bad]
    kubeconfig = str(control_plane.kubeconfig)
    install = ["install", release_name(namespace), str(CHART), "-n", namespace]
    commands = [["template", "r", str(CHART)], [*install, "--kubeconfig", kubeconfig]]
    if bad not in LINT_BLIND:
        commands.append(["lint", str(CHART)])
    for command in commands:
        out = helm(*command, "--set", bad)
        assert out.returncode != 0, f"helm {command[0]} accepted {bad}"
        assert message in out.stdout + out.stderr, out.stdout + out.stderr
    listed = helm("list", "-n", namespace, "-q", "--kubeconfig", kubeconfig)
    assert listed.stdout.strip() == "", listed.stdout


RBAC_CASES: dict[str, tuple[list[str], str, tuple[permissions.Grant, ...]]] = {
    "cluster-all-namespaces": (
        [],
        "ClusterRole",
        permissions.cluster_role(all_namespaces=True, peering=True),
    ),
    "cluster-some-namespaces": (
        ["watchNamespaces={team-a}"],
        "ClusterRole",
        permissions.cluster_role(all_namespaces=False, peering=True),
    ),
    "cluster-standalone": (
        ["replicaCount=1", "peering.enabled=false"],
        "ClusterRole",
        permissions.cluster_role(all_namespaces=True, peering=False),
    ),
    "namespace": (["rbac.scope=namespace"], "Role", permissions.role(peering=True)),
    "namespace-standalone": (
        ["rbac.scope=namespace", "replicaCount=1", "peering.enabled=false"],
        "Role",
        permissions.role(peering=False),
    ),
}


@pytest.mark.parametrize("case", RBAC_CASES.keys())
def test_chart_rbac_equals_the_permission_list(helm: Kubectl, case: str) -> None:
    """Both ways: the chart grants nothing celeriac.permissions does not list (with its
    reason and evidence), and lists nothing the chart leaves out."""
    values, kind, grants = RBAC_CASES[case]
    docs = render(helm, *values)
    roles = of_kind(docs, kind)
    assert roles, f"no {kind} rendered"
    expected = permissions.triples(grants)
    for role in roles:
        got = granted(role)
        assert not got - expected, f"granted but not in celeriac.permissions: {got - expected}"
        assert not expected - got, f"in celeriac.permissions but not granted: {expected - got}"
    other = "Role" if kind == "ClusterRole" else "ClusterRole"
    assert not of_kind(docs, other), f"unexpected {other}"


def test_every_permission_is_used_by_the_code() -> None:
    """Each grant that is not pending names the code that needs it; a grant whose
    code is gone fails here (and then the chart test above fails once it is removed)."""
    text = sources(exclude=Path(permissions.__file__))
    every = {
        *permissions.NAMESPACED,
        permissions.CRDS,
        permissions.NAMESPACES,
        permissions.CLUSTER_PEERING,
        permissions.NAMESPACED_PEERING,
    }
    unused = [
        g for g in every if not g.pending and not (g.evidence and re.search(g.evidence, text))
    ]
    assert not unused, "\n".join(f"{g.group}/{g.resource} {g.verbs}: {g.why}" for g in unused)
