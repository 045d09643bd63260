"""Time from creating a resource to the operator's status.observedGeneration.

Starts the local control plane, installs the CRDs, runs `celeriac run` as a real
process, then creates WorkflowBrokers and WorkerPools one by one and prints the
latency distribution. Also prints how long the control plane took to start.

    .venv/bin/python bench/reconcile_latency.py [--count 30]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubernetes import client

from celeriac import kube
from celeriac.api.crdgen import all_crds
from celeriac.localplane.controlplane import ControlPlane

G, V = "celeriac.io", "v1alpha1"


def wait_generation(api: client.CustomObjectsApi, plural: str, name: str) -> float:
    start = time.perf_counter()
    while True:
        obj = api.get_namespaced_custom_object(G, V, "bench", plural, name)
        if (obj.get("status") or {}).get("observedGeneration") == 1:
            return time.perf_counter() - start
        if time.perf_counter() - start > 30:
            raise TimeoutError(name)
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=30)
    args = parser.parse_args()

    t0 = time.perf_counter()
    with ControlPlane() as plane:
        print(f"control plane start: {time.perf_counter() - t0:.1f} s")
        api_client = kube.api_client(str(plane.kubeconfig))
        kube.apply_crds(api_client, all_crds())
        client.CoreV1Api(api_client).create_namespace({"metadata": {"name": "bench"}})
        custom = client.CustomObjectsApi(api_client)
        log = Path(tempfile.mkdtemp()) / "operator.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "celeriac.cli", "run", "--no-local", "-n", "bench"],
            env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            while "operator running" not in log.read_text():
                time.sleep(0.05)
            time.sleep(1)  # let the watches settle before measuring
            results: dict[str, list[float]] = {"workflowbrokers": [], "workerpools": []}
            for i in range(args.count):
                for plural, kind, spec in (
                    ("workflowbrokers", "WorkflowBroker", {"mode": "sentinel"}),
                    (
                        "workerpools",
                        "WorkerPool",
                        {"brokerRef": {"name": f"b{i}"}, "image": "w", "app": "proj:app"},
                    ),
                ):
                    name = f"{plural[0]}{i}"
                    body = {
                        "apiVersion": f"{G}/{V}",
                        "kind": kind,
                        "metadata": {"name": name},
                        "spec": spec,
                    }
                    start = time.perf_counter()
                    custom.create_namespaced_custom_object(G, V, "bench", plural, body)
                    results[plural].append(
                        time.perf_counter() - start + wait_generation(custom, plural, name)
                    )
            for plural, values in results.items():
                values.sort()
                p95 = values[max(0, int(len(values) * 0.95) - 1)]
                print(
                    f"{plural}: create -> status.observedGeneration over {len(values)}: "
                    f"p50 {statistics.median(values) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
                    f"max {values[-1] * 1000:.0f} ms"
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            t1 = time.perf_counter()
            code = proc.wait(30)
            print(f"operator SIGTERM -> exit {code} in {time.perf_counter() - t1:.2f} s")


if __name__ == "__main__":
    main()
