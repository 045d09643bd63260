"""WorkflowBroker timings on the local control plane with the local node:

- `kubectl apply` -> Ready for standalone and sentinel brokers;
- after SIGKILL of the master: kill -> +switch-master (Sentinel's own detection
  and election), and +switch-master -> role label and -> status.master (ours).

    .venv/bin/python bench/broker_latency.py [--runs 3]
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from kubernetes import client

from celeriac import kube
from celeriac.api.crdgen import all_crds
from celeriac.localnode.launcher import LocalNode
from celeriac.localplane.controlplane import ControlPlane

G, V = "celeriac.io", "v1alpha1"


def until(probe: Callable[[], Any], timeout: float = 180, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(str(probe))


def phase(custom: client.CustomObjectsApi, ns: str) -> str | None:
    obj = custom.get_namespaced_custom_object(G, V, ns, "workflowbrokers", "b")
    return (obj.get("status") or {}).get("phase")


def apply_to_ready(
    custom: client.CustomObjectsApi, core: client.CoreV1Api, ns: str, spec: dict[str, Any]
) -> float:
    core.create_namespace({"metadata": {"name": ns}})
    body = {
        "apiVersion": f"{G}/{V}",
        "kind": "WorkflowBroker",
        "metadata": {"name": "b"},
        "spec": spec,
    }
    start = time.monotonic()
    custom.create_namespaced_custom_object(G, V, ns, "workflowbrokers", body)
    until(lambda: phase(custom, ns) == "Ready", interval=0.05)
    return time.monotonic() - start


def failover(
    custom: client.CustomObjectsApi, core: client.CoreV1Api, ns: str
) -> tuple[float, float, float]:
    pw = base64.b64decode(core.read_namespaced_secret("b-auth", ns).data["password"]).decode()
    status = custom.get_namespaced_custom_object(G, V, ns, "workflowbrokers", "b")["status"]
    old = status["master"]["pod"]
    pod = core.read_namespaced_pod(old, ns)
    pid = int(pod.status.container_statuses[0].container_id.removeprefix("localnode://"))
    # Every Sentinel: they announce +switch-master up to seconds apart; the clock
    # starts at the first announcement.
    hosts = [f"b-sentinel-{i}.b-sentinel-headless.{ns}.svc.cluster.local" for i in range(3)]
    subs = []
    for host in hosts:
        sub = redis.Redis(host=host, port=26379, password=pw).pubsub()
        sub.subscribe("+switch-master")
        until(lambda sub=sub: sub.get_message(timeout=0.1))  # the subscribe confirmation
        subs.append(sub)

    def first() -> Any:
        return next((m for sub in subs if (m := sub.get_message(timeout=0.005))), None)

    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    message = until(first, interval=0)
    switched = time.monotonic()
    for sub in subs:
        sub.close()
    new = message["data"].decode().split()[3].split(".")[0]

    def labelled() -> bool:
        p = core.read_namespaced_pod(new, ns)
        return (p.metadata.labels or {}).get("celeriac.io/role") == "master"

    until(labelled)
    label = time.monotonic()
    until(
        lambda: (
            custom.get_namespaced_custom_object(G, V, ns, "workflowbrokers", "b")["status"][
                "master"
            ]["pod"]
            == new
        )
    )
    status_at = time.monotonic()
    return switched - killed, label - switched, status_at - switched


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: median {statistics.median(values):.2f} s, max {max(values):.2f} s "
        f"over {len(values)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="celeriac-bench-"))
    with ControlPlane() as plane, LocalNode(plane.kubeconfig, nodes=3, state_dir=state):
        api = kube.api_client(str(plane.kubeconfig))
        kube.apply_crds(api, all_crds())
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        log = state / "operator.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "celeriac.cli", "run", "--no-local"],
            env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            until(lambda: "operator running" in log.read_text())
            standalone, sentinel, detect, label, status = [], [], [], [], []
            for i in range(args.runs):
                standalone.append(
                    apply_to_ready(custom, core, f"bench-s{i}", {"mode": "standalone"})
                )
                sentinel.append(
                    apply_to_ready(
                        custom,
                        core,
                        f"bench-h{i}",
                        {"mode": "sentinel", "sentinel": {"downAfterMilliseconds": 2000}},
                    )
                )
                d, lab, st = failover(custom, core, f"bench-h{i}")
                detect.append(d)
                label.append(lab)
                status.append(st)
            print(summary("standalone apply -> Ready", standalone))
            print(summary("sentinel (1 master, 2 replicas, 3 sentinels) apply -> Ready", sentinel))
            print(
                summary("SIGKILL master -> +switch-master (Sentinel, down-after 2000 ms)", detect)
            )
            print(summary("+switch-master -> master role label moved", label))
            print(summary("+switch-master -> status.master updated", status))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


if __name__ == "__main__":
    main()
