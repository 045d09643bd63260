"""The local node's Node objects and their Leases (development and tests only).

Nodes `localnode-1..N` carry the labels the scheduler's spreading needs
(hostname, zone `zone-k`), an InternalIP on the pod bridge and podCIDR
10.250.k.0/24. `NodeRegistry` creates them Ready, lifts the not-ready taint
that admission puts on new Nodes (no node lifecycle controller runs to do it),
renews their Leases and reports them NotReady when the agent stops.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
import uuid
from typing import Any

from . import network
from .fields import NODE_ALLOCATABLE
from .kubeapi import MERGE_PATCH, ApiError, Kube
from .status import now

log = logging.getLogger("celeriac.localnode")

NODE_PREFIX = "localnode-"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
LEASE_RENEW_SECONDS = 10.0
NODE_STATUS_SECONDS = 60.0
VERSION = "v0.1.0-localnode"


def node_names(count: int) -> list[str]:
    return [f"{NODE_PREFIX}{k}" for k in range(1, count + 1)]


def micro_time() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def node_object(name: str, index: int) -> dict[str, Any]:
    cidr = network.node_cidr(index)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": f"zone-{index}",
                "celeriac.io/localnode": "true",
            },
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
    }


def node_status(name: str, ready: bool, boot_id: str) -> dict[str, Any]:
    stamp = now()
    condition = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": "KubeletReady" if ready else "AgentStopped",
        "message": "celeriac local node agent is " + ("running" if ready else "stopped"),
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
    }
    pressure = [
        {
            "type": t,
            "status": "False",
            "reason": f"KubeletHas{r}",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
        for t, r in (
            ("MemoryPressure", "SufficientMemory"),
            ("DiskPressure", "NoDiskPressure"),
            ("PIDPressure", "SufficientPID"),
        )
    ]
    return {
        "capacity": dict(NODE_ALLOCATABLE),
        "allocatable": dict(NODE_ALLOCATABLE),
        "addresses": [
            {"type": "InternalIP", "address": network.BRIDGE_ADDRESS},
            {"type": "Hostname", "address": name},
        ],
        "conditions": [condition, *pressure],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex,
            "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
            "bootID": boot_id,
            "kernelVersion": platform.release(),
            "osImage": "celeriac local node (processes, development only)",
            "containerRuntimeVersion": f"localnode://{VERSION}",
            "kubeletVersion": VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


class NodeRegistry:
    def __init__(self, kube: Kube, names: list[str]) -> None:
        self.kube = kube
        self.names = names
        self._boot_id = str(uuid.uuid4())

    def register(self) -> None:
        for index, name in enumerate(self.names, start=1):
            self._register(name, index)

    def mark_not_ready(self) -> None:
        for name in self.names:
            try:
                self._patch_node_status(name, ready=False, timeout=2)
            except Exception as e:  # the plane may be gone already
                log.info("could not mark node %s NotReady: %s", name, e)

    def heartbeat(self, stopping: threading.Event) -> None:
        """Renew the Leases (and now and then the Ready condition) until stopping."""
        last_status = time.monotonic()
        while not stopping.wait(LEASE_RENEW_SECONDS):
            status_due = time.monotonic() - last_status >= NODE_STATUS_SECONDS
            for name in self.names:
                try:
                    self._renew_lease(name)
                    if status_due:
                        self._patch_node_status(name, ready=True)
                except Exception as e:
                    log.warning("heartbeat of %s failed: %s", name, e)
            if status_due:
                last_status = time.monotonic()

    def _register(self, name: str, index: int) -> None:
        body = node_object(name, index)
        try:
            self.kube.request("POST", "/api/v1/nodes", body=body)
        except ApiError as e:
            if e.status != 409:
                raise
            self.kube.request(
                "PATCH",
                f"/api/v1/nodes/{name}",
                body={"metadata": body["metadata"]},
                content_type=MERGE_PATCH,
            )
        self._patch_node_status(name, ready=True)
        # TaintNodesByCondition admission adds node.kubernetes.io/not-ready on
        # creation; the node lifecycle controller that would lift it does not run here.
        node = self.kube.get(f"/api/v1/nodes/{name}") or {}
        taints = [
            t
            for t in node.get("spec", {}).get("taints") or []
            if not str(t.get("key", "")).startswith("node.kubernetes.io/")
        ]
        self.kube.request(
            "PATCH",
            f"/api/v1/nodes/{name}",
            body={"spec": {"taints": taints or None}},
            content_type=MERGE_PATCH,
        )
        self._renew_lease(name, create=True)

    def _patch_node_status(self, name: str, ready: bool, timeout: float = 5) -> None:
        self.kube.request(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            body={"status": node_status(name, ready, self._boot_id)},
            content_type=MERGE_PATCH,
            timeout=timeout,
        )

    def _renew_lease(self, name: str, create: bool = False) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        spec = {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_time(),
        }
        if create:
            node = self.kube.get(f"/api/v1/nodes/{name}") or {}
            owner = {
                "apiVersion": "v1",
                "kind": "Node",
                "name": name,
                "uid": node.get("metadata", {}).get("uid", ""),
            }
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "ownerReferences": [owner]},
                "spec": spec,
            }
            try:
                self.kube.request("POST", path, body=lease)
                return
            except ApiError as e:
                if e.status != 409:
                    raise
        self.kube.request(
            "PATCH", f"{path}/{name}", body={"spec": spec}, content_type=MERGE_PATCH, timeout=5
        )
