"""The local control plane is a real cluster: real controllers, real authn/authz."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from waiting import wait_for

from celeriac.localplane.binaries import find_bin_dir
from celeriac.localplane.controlplane import ControlPlane
from helpers import Kubectl, https_get, listening_tcp_addresses

pytestmark = pytest.mark.integration


def _template(app: str) -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": app}),
        # No node carries this label, so the pods stay Pending even when the local
        # node runs: these tests are about the controllers, not about running pods.
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="busybox")],
            node_selector={"celeriac.io/test-no-such-node": "true"},
        ),
    )


def _deployment(name: str, replicas: int) -> client.V1Deployment:
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=_template(name),
        ),
    )


def _pods(core: client.CoreV1Api, namespace: str, app: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(namespace, label_selector=f"app={app}").items


def _replicasets(apps: client.AppsV1Api, namespace: str, app: str) -> list[client.V1ReplicaSet]:
    return apps.list_namespaced_replica_set(namespace, label_selector=f"app={app}").items


def _meta(obj: client.V1Pod | client.V1ReplicaSet) -> client.V1ObjectMeta:
    assert obj.metadata is not None
    return obj.metadata


def _owner_kind(obj: client.V1Pod | client.V1ReplicaSet) -> str:
    owners = _meta(obj).owner_references
    assert owners, f"{_meta(obj).name} has no owner"
    return owners[0].kind


def test_apiserver_ready(control_plane: ControlPlane) -> None:
    status, body = https_get(
        f"{control_plane.server}/readyz", control_plane.ca_cert, control_plane.admin_token
    )
    assert (status, body) == (200, "ok")


def test_kubectl_uses_admin_kubeconfig(kubectl: Kubectl) -> None:
    result = kubectl("get", "namespace", "kube-system", "-o", "name")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "namespace/kube-system"


def test_everything_listens_on_loopback_only(control_plane: ControlPlane) -> None:
    seen: set[int] = set()
    for name, pid in control_plane.pids.items():
        addresses = listening_tcp_addresses(pid)
        assert addresses, f"{name} listens nowhere?"
        assert {ip for ip, _ in addresses} == {"127.0.0.1"}, (name, addresses)
        seen |= {port for _, port in addresses}
    assert set(control_plane.ports.values()) <= seen


def test_deployment_gets_replicaset_and_pods(kube_api: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, _deployment("web", 2))

    rs = wait_for(lambda: _replicasets(apps, namespace, "web"), what="ReplicaSet of web")[0]
    assert _owner_kind(rs) == "Deployment"

    def two_pods() -> list[client.V1Pod] | None:
        pods = _pods(core, namespace, "web")
        return pods if len(pods) == 2 else None

    pods = wait_for(two_pods, what="2 pods of web")
    assert {_owner_kind(p) for p in pods} == {"ReplicaSet"}
    # Unschedulable: the pods exist but stay Pending.
    assert {p.status.phase for p in pods if p.status} == {"Pending"}

    def rs_replicas() -> int | None:
        status = apps.read_namespaced_replica_set(str(_meta(rs).name), namespace).status
        return status.replicas if status else None

    wait_for(lambda: rs_replicas() == 2, what="ReplicaSet status.replicas == 2")


def test_statefulset_creates_first_pod(kube_api: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    apps.create_namespaced_stateful_set(
        namespace,
        client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name="db"),
            spec=client.V1StatefulSetSpec(
                service_name="db",
                replicas=1,
                selector=client.V1LabelSelector(match_labels={"app": "db"}),
                template=_template("db"),
            ),
        ),
    )

    def pod() -> client.V1Pod | None:
        try:
            return core.read_namespaced_pod("db-0", namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    assert _owner_kind(wait_for(pod, what="pod db-0")) == "StatefulSet"


def test_pdb_gets_status_from_disruption_controller(
    kube_api: client.ApiClient, namespace: str
) -> None:
    apps, policy = client.AppsV1Api(kube_api), client.PolicyV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, _deployment("guarded", 2))
    policy.create_namespaced_pod_disruption_budget(
        namespace,
        client.V1PodDisruptionBudget(
            metadata=client.V1ObjectMeta(name="guarded"),
            spec=client.V1PodDisruptionBudgetSpec(
                min_available=1,
                selector=client.V1LabelSelector(match_labels={"app": "guarded"}),
            ),
        ),
    )

    def status() -> client.V1PodDisruptionBudgetStatus | None:
        s = policy.read_namespaced_pod_disruption_budget("guarded", namespace).status
        return s if s and s.observed_generation == 1 and s.expected_pods == 2 else None

    st = wait_for(status, what="PDB status with expectedPods=2")
    # Pending pods are not healthy, so no disruption is allowed.
    assert (st.current_healthy, st.desired_healthy, st.disruptions_allowed) == (0, 1, 0)


def test_new_namespace_gets_root_ca_and_default_serviceaccount(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)

    def root_ca() -> str | None:
        found = core.list_namespaced_config_map(
            namespace, field_selector="metadata.name=kube-root-ca.crt"
        ).items
        return (found[0].data or {}).get("ca.crt") if found else None

    assert wait_for(root_ca, what="kube-root-ca.crt") == control_plane.ca_cert.read_text()

    def default_sa() -> list[client.V1ServiceAccount]:
        selector = "metadata.name=default"
        return core.list_namespaced_service_account(namespace, field_selector=selector).items

    wait_for(default_sa, what="default ServiceAccount")


def test_deleting_deployment_collects_its_replicaset(
    kube_api: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, _deployment("doomed", 1))
    wait_for(lambda: _replicasets(apps, namespace, "doomed"), what="ReplicaSet of doomed")
    wait_for(lambda: _pods(core, namespace, "doomed"), what="pod of doomed")

    apps.delete_namespaced_deployment("doomed", namespace, propagation_policy="Background")
    wait_for(lambda: not _replicasets(apps, namespace, "doomed"), what="ReplicaSet collected")
    wait_for(lambda: not _pods(core, namespace, "doomed"), what="pods collected")


def test_authentication_and_rbac_are_enforced(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str
) -> None:
    url = f"{control_plane.server}/api/v1/namespaces/{namespace}/pods"
    ca = control_plane.ca_cert
    assert https_get(url, ca)[0] == 401
    assert https_get(url, ca, "not-a-real-token")[0] == 401
    assert https_get(url, ca, control_plane.admin_token)[0] == 200

    core = client.CoreV1Api(kube_api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    issued = core.create_namespaced_service_account_token("nobody", namespace, request).status
    assert issued is not None
    status, body = https_get(url, ca, issued.token)
    assert status == 403, body
    assert f"system:serviceaccount:{namespace}:nobody" in body


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_stop_leaves_nothing_behind() -> None:
    # A plane of its own: stopping the session plane would break the other tests.
    plane = ControlPlane(bin_dir=find_bin_dir())
    plane.start()
    pids, ports, workdir = plane.pids, plane.ports, plane.workdir
    try:
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
        assert all(Path(f"/proc/{pid}").exists() for pid in pids.values())
        assert all(_port_open(port) for port in ports.values())
    finally:
        plane.stop()

    for name, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # neither the leader nor anything else in its group
        assert not Path(f"/proc/{pid}").exists(), name
    assert not any(_port_open(port) for port in ports.values())
    assert not workdir.exists()
    plane.stop()  # idempotent
