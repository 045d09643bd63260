"""The operator as the chart deploys it: its own command line (from the rendered
Deployment), the chart's ServiceAccount (a TokenRequest token) and RBAC, and
peering between two replicas. Real processes against the real API server."""

from __future__ import annotations

import base64
import http.client
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from apirecorder import ApiRecorder
from chartkit import (
    CHART,
    granted,
    of_kind,
    operator_args,
    release_name,
    render,
    values_args,
)
from kubernetes import client
from waiting import wait_for

from celeriac import permissions
from celeriac.apply import MANAGED_BY, OWNER_LABEL
from celeriac.localplane.controlplane import free_ports
from helpers import Kubectl

pytestmark = pytest.mark.integration
G, V = "celeriac.io", "v1alpha1"
# Grants this scenario cannot reach: without a node no Redis runs, so the Sentinels
# never name a master and the broker code never touches pods
# (tests/integration/test_broker.py drives those paths with the local node).
# Reached only with pods running: role labels, rollouts, and the autoscaler acting
# on a measured backlog. They are when a local node started by an earlier test runs
# the pods, not otherwise; test_broker and test_autoscaling exercise them for sure.
NEEDS_PODS = {
    ("", "pods", "patch"),
    ("", "pods", "delete"),
    ("apps", "deployments/scale", "patch"),
}


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    values: list[str]
    manifest: list[dict[str, Any]]

    def account(self) -> str:
        (account,) = of_kind(self.manifest, "ServiceAccount")
        return str(account["metadata"]["name"])


@pytest.fixture
def release(
    request: pytest.FixtureRequest, helm: Kubectl, control_plane: Any, namespace: str, crds: Any
) -> Iterator[Release]:
    """The chart installed with the `--set` values of the test's parameter (default: none)."""
    values: list[str] = getattr(request, "param", [])
    name = release_name(namespace)
    kubeconfig = ["-n", namespace, "--kubeconfig", str(control_plane.kubeconfig)]
    out = helm("install", name, str(CHART), *kubeconfig, *values_args(values))
    assert out.returncode == 0, out.stderr
    manifest = helm("get", "manifest", name, *kubeconfig)
    docs = [d for d in yaml.safe_load_all(manifest.stdout) if d]
    yield Release(name, namespace, values, docs)
    helm("uninstall", name, *kubeconfig)


def service_account_kubeconfig(
    core: client.CoreV1Api, namespace: str, account: str, server: str, path: Path, ca: Path | None
) -> Path:
    """A kubeconfig with a short-lived token of the ServiceAccount (TokenRequest API)."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = core.create_namespaced_service_account_token(account, namespace, request).status.token
    cluster: dict[str, str] = {"server": server}
    if ca is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": account}}],
                "current-context": "c",
            }
        )
    )
    return path


def start_operator(
    args: list[str], kubeconfig: Path, pod: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_ID": pod}
    return subprocess.Popen(
        [sys.executable, "-m", "celeriac.cli", "run", *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, log.read_text()[-3000:]


def chart_args(helm: Kubectl, release: Release, health: int, metrics: int) -> list[str]:
    """The Deployment's arguments, with ports free on this machine."""
    ports = [f"health.port={health}", f"metrics.port={metrics}"]
    docs = render(helm, *release.values, *ports, release=release.name, namespace=release.namespace)
    return operator_args(docs)


def http_get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def broker_status(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(G, V, ns, "workflowbrokers", name)
    return dict(obj.get("status") or {})


def create(
    custom: client.CustomObjectsApi, ns: str, kind: str, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    body = {"apiVersion": f"{G}/{V}", "kind": kind, "metadata": {"name": name}, "spec": spec}
    plural = {"WorkflowBroker": "workflowbrokers", "WorkerPool": "workerpools"}[kind]
    return dict(custom.create_namespaced_custom_object(G, V, ns, plural, body))


def plant_strays(api: client.ApiClient, ns: str, owner_uid: str) -> None:
    """Objects labelled as the broker's that it does not render: pruning must delete
    them, which needs `list` and `delete` on every kind it prunes."""
    labels = {MANAGED_BY: "celeriac", OWNER_LABEL: owner_uid}
    meta = {"name": "stray", "labels": labels}
    selector = {"matchLabels": {"app": "stray"}}
    template = {
        "metadata": {"labels": {"app": "stray"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    policy = client.PolicyV1Api(api)
    core.create_namespaced_config_map(ns, {"metadata": meta})
    core.create_namespaced_service_account(ns, {"metadata": meta})
    core.create_namespaced_service(ns, {"metadata": meta, "spec": {"ports": [{"port": 80}]}})
    workload = {"replicas": 0, "selector": selector, "template": template}
    apps.create_namespaced_stateful_set(ns, {"metadata": meta, "spec": workload})
    apps.create_namespaced_deployment(ns, {"metadata": meta, "spec": workload})
    policy.create_namespaced_pod_disruption_budget(
        ns, {"metadata": meta, "spec": {"maxUnavailable": 1, "selector": selector}}
    )


def strays_left(api: client.ApiClient, ns: str, owner_uid: str) -> list[str]:
    selector = f"{OWNER_LABEL}={owner_uid}"
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    policy = client.PolicyV1Api(api)
    found = [
        *core.list_namespaced_config_map(ns, label_selector=selector).items,
        *core.list_namespaced_service_account(ns, label_selector=selector).items,
        *core.list_namespaced_service(ns, label_selector=selector).items,
        *apps.list_namespaced_stateful_set(ns, label_selector=selector).items,
        *apps.list_namespaced_deployment(ns, label_selector=selector).items,
        *policy.list_namespaced_pod_disruption_budget(ns, label_selector=selector).items,
    ]
    return [f"{type(o).__name__}/{o.metadata.name}" for o in found if o.metadata.name == "stray"]


@pytest.mark.parametrize(
    "release", [[], ["rbac.scope=namespace"]], indirect=True, ids=["cluster", "namespace"]
)
def test_operator_reconciles_under_the_chart_rbac_and_uses_every_grant(
    helm: Kubectl,
    control_plane: Any,
    kube_api: client.ApiClient,
    custom: client.CustomObjectsApi,
    namespace: str,
    release: Release,
    tmp_path: Path,
) -> None:
    """Sufficient and necessary, measured rather than asserted: the operator runs
    with the chart's arguments and a token of the chart's ServiceAccount, through a
    recording proxy that stands in for the API server's audit log. A sentinel broker
    (plus stray objects for pruning, and a WorkerPool whose broker is missing, which
    posts an Event) must reconcile with no request refused; every request must be one
    the chart grants; and every grant in celeriac.permissions that is not pending
    must show up among the requests, unless NEEDS_PODS says why this scenario may not
    reach it. So a grant added to the chart and permissions.py without code that
    needs it fails here, and so does one whose code stops using it."""
    core = client.CoreV1Api(kube_api)
    cluster_scope = not release.values
    (role,) = of_kind(release.manifest, "ClusterRole" if cluster_scope else "Role")
    health, metrics = free_ports(2)
    args = chart_args(helm, release, health, metrics)
    assert f"--peering={release.name}" in args and "--no-local" in args
    assert cluster_scope != (f"--namespace={namespace}" in args)
    assert cluster_scope != ("--no-scan" in args)

    log = tmp_path / "operator.log"
    with ApiRecorder(control_plane.server, control_plane.ca_cert) as recorder:
        kubeconfig = service_account_kubeconfig(
            core, namespace, release.account(), recorder.url, tmp_path / "sa", None
        )
        proc = start_operator(args, kubeconfig, "op-0", log)
        try:
            wait_for(lambda: "operator running" in log.read_text(), 60, 0.2, "operator start")
            broker = create(custom, namespace, "WorkflowBroker", "b", {"mode": "sentinel"})
            uid = broker["metadata"]["uid"]
            orphan = {"brokerRef": {"name": "missing"}, "image": "w", "app": "a:app"}
            create(custom, namespace, "WorkerPool", "orphan", orphan)
            # A pool of broker b, autoscaled: its Deployment, ConfigMap and budget
            # are applied, its pods listed, the broker's Secret read.
            pool = {
                "brokerRef": {"name": "b"},
                "image": "w",
                "app": "a:app",
                "autoscaling": {"minReplicas": 1, "maxReplicas": 2},
            }
            create(custom, namespace, "WorkerPool", "w", pool)
            st = wait_for(
                lambda: (
                    (s := broker_status(custom, namespace, "b")).get("observedGeneration") == 1
                    and s
                ),
                90,
                0.2,
                "broker status",
            )
            assert {c["type"] for c in st["conditions"]} >= {"Ready", "Progressing", "Degraded"}
            apps = client.AppsV1Api(kube_api)
            assert apps.read_namespaced_stateful_set("b-redis", namespace).metadata.owner_references
            assert core.read_namespaced_secret("b-auth", namespace).data["password"]
            wait_for(
                lambda: any(
                    d.metadata.name == "w" for d in apps.list_namespaced_deployment(namespace).items
                ),
                60,
                0.2,
                "the pool's Deployment",
            )
            plant_strays(kube_api, namespace, uid)
            wait_for(lambda: not strays_left(kube_api, namespace, uid), 90, 0.5, "pruning")
            wait_for(
                lambda: [
                    e
                    for e in core.list_namespaced_event(namespace).items
                    if e.source and e.source.component == "kopf"
                ],
                30,
                0.5,
                "an Event from the operator",
            )
            assert http_get(health, "/healthz")[0] == 200
            status, text = http_get(metrics, "/metrics")
            assert status == 200 and "celeriac_" in text
        finally:
            stop(proc, log)
        requests = [r for r in recorder.requests if r.namespace in (namespace, None)]

    refused = sorted({r.triple for r in requests if r.status in (401, 403)})
    assert not refused, refused
    used = {r.triple for r in requests}
    beyond = used - granted(role)
    assert not beyond, f"requests the chart does not grant: {beyond}"
    grants = (
        permissions.cluster_role(all_namespaces=True, peering=True)
        if cluster_scope
        else permissions.role(peering=True)
    )
    idle = {t for g in grants if not g.pending for t in g.triples()} - NEEDS_PODS - used
    assert not idle, f"granted but never requested: {idle}"


def test_only_one_replica_acts_and_the_other_takes_over(
    helm: Kubectl,
    control_plane: Any,
    kube_api: client.ApiClient,
    custom: client.CustomObjectsApi,
    namespace: str,
    release: Release,
    tmp_path: Path,
) -> None:
    """Two replicas with the chart's arguments (random peering priorities): the
    higher one reconciles, the other stays paused but alive (its liveness endpoint
    answers); when the active one stops, the other resumes and reconciles."""
    core = client.CoreV1Api(kube_api)
    server, ca = control_plane.server, control_plane.ca_cert
    kubeconfig = service_account_kubeconfig(
        core, namespace, release.account(), server, tmp_path / "k", ca
    )
    peers: dict[str, tuple[subprocess.Popen[bytes], Path, int]] = {}

    def text(pod: str) -> str:
        return peers[pod][1].read_text()

    def reconciles(pod: str) -> int:
        # Since its last pause: a replica active alone at first may have reconciled
        # leftovers of other tests (all namespaces) before it gave way.
        since = text(pod).rsplit("Pausing operations", 1)[-1]
        return sum("'reconcile_broker' succeeded" in line for line in since.splitlines())

    def peering() -> dict[str, Any]:
        plural = "clusterkopfpeerings"
        obj = custom.get_cluster_custom_object("kopf.dev", "v1", plural, release.name)
        return dict(obj.get("status") or {})

    try:
        # One after the other, so the logs tell when the pecking order is settled.
        for pod in ("op-a", "op-b"):
            health, metrics = free_ports(2)
            log = tmp_path / f"{pod}.log"
            args = chart_args(helm, release, health, metrics)
            peers[pod] = (start_operator(args, kubeconfig, pod, log), log, health)
            wait_for(lambda p=pod: p in peering(), 60, 0.2, f"{pod} in the peering object")
        wait_for(lambda: "Resuming operations" in text("op-a"), 30, 0.2, "op-a active alone")
        priorities = {pod: int(v["priority"]) for pod, v in peering().items()}
        active, standby = sorted(priorities, key=priorities.__getitem__, reverse=True)
        if active == "op-b":  # op-a gives way: it says so
            wait_for(lambda: "Pausing operations" in text("op-a"), 30, 0.2, "op-a pausing")
            wait_for(lambda: "Resuming operations" in text("op-b"), 30, 0.2, "op-b resuming")
        create(custom, namespace, "WorkflowBroker", "b", {"mode": "standalone"})
        wait_for(
            lambda: broker_status(custom, namespace, "b").get("observedGeneration") == 1,
            60,
            0.2,
            "reconcile by the active replica",
        )
        # The 5 s timer fires again; the standby still does nothing, but is alive.
        wait_for(lambda: reconciles(active) >= 3, 30, 0.5, "a later timer reconcile")
        assert reconciles(standby) == 0, text(standby)[-3000:]
        assert http_get(peers[standby][2], "/healthz")[0] == 200

        proc, log, _ = peers.pop(active)
        stop(proc, log)
        custom.patch_namespaced_custom_object(
            G, V, namespace, "workflowbrokers", "b", {"spec": {"redis": {"maxmemory": "64Mi"}}}
        )
        wait_for(
            lambda: broker_status(custom, namespace, "b").get("observedGeneration") == 2,
            90,
            0.5,
            "the standby replica taking over",
        )
        assert reconciles(standby) > 0
    finally:
        for proc, log, _ in peers.values():
            stop(proc, log)
