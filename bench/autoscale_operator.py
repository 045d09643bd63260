"""The autoscaler inside the real operator, on the local control plane:

(a) reaction: a backlog appears in a queue -> the Deployment's replicas are
    patched (seen through a watch), many runs at random phases of the poll grid,
    beside what KEDA's documented defaults give for the same event;
(b) scale: one operator process with N WorkerPools (autoscaled) across M brokers
    (external mode, real redis-server processes): the operator's CPU seconds per
    minute and peak RSS once settled, and Redis commands per poll tick.

No node runs pods here: the Deployments exist, their pods stay Pending, which is
all the autoscaler needs to be measured.

    .venv/bin/python bench/autoscale_operator.py [--runs 20] [--pools 1000 --brokers 50]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from kubernetes import client, watch

from benchkit import running_operator
from celeriac import kube
from celeriac.api.crdgen import all_crds
from celeriac.localplane.controlplane import ControlPlane
from scaling_cost import redis_servers

G, V = "celeriac.io", "v1alpha1"
KEDA = (
    "KEDA defaults for the same event: pollingInterval 30 s (0 -> 1 by the KEDA "
    "operator within up to 30 s), then the HPA (sync period 15 s) for 1 -> N; LLEN "
    "of one list only; scale-down stabilization 300 s"
)


def create(custom: client.CustomObjectsApi, ns: str, kind: str, name: str, spec: Any) -> None:
    plural = {"WorkflowBroker": "workflowbrokers", "WorkerPool": "workerpools"}[kind]
    body = {"apiVersion": f"{G}/{V}", "kind": kind, "metadata": {"name": name}, "spec": spec}
    custom.create_namespaced_custom_object(G, V, ns, plural, body)


def broker_spec(port: int) -> dict[str, Any]:
    return {"mode": "external", "external": {"url": f"redis://127.0.0.1:{port}/0"}}


def pool_spec(queue: str, interval: int) -> dict[str, Any]:
    return {
        "brokerRef": {"name": "b"},
        "image": "example/worker:1",
        "app": "proj:app",
        "queues": [queue],
        "autoscaling": {
            "minReplicas": 0,
            "maxReplicas": 5,
            "pollIntervalSeconds": interval,
            "idleSecondsBeforeZero": 0,
            "scaleDown": {"stabilizationSeconds": 0},
        },
    }


def wait_replicas(apps: client.AppsV1Api, ns: str, name: str, want: int, timeout: float) -> float:
    """The monotonic time the Deployment's spec.replicas is seen at `want` (watch)."""
    w = watch.Watch()
    for event in w.stream(
        apps.list_namespaced_deployment,
        ns,
        field_selector=f"metadata.name={name}",
        timeout_seconds=int(timeout) + 1,
    ):
        if event["object"].spec.replicas == want:
            w.stop()
            return time.monotonic()
    raise TimeoutError(f"{name} never reached {want} replicas")


def reaction(api: client.ApiClient, port: int, runs: int, interval: int) -> list[float]:
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    ns = f"react-{interval}s"
    core.create_namespace({"metadata": {"name": ns}})
    create(custom, ns, "WorkflowBroker", "b", broker_spec(port))
    create(custom, ns, "WorkerPool", "p", pool_spec("react", interval))
    until = time.monotonic() + 60
    while time.monotonic() < until and not apps.list_namespaced_deployment(ns).items:
        time.sleep(0.2)
    r = redis.Redis(port=port)
    out = []
    for _ in range(runs):
        time.sleep(random.uniform(0, interval))  # a random phase of the poll grid
        seen: list[float] = []

        def watcher(seen: list[float] = seen) -> None:
            seen.append(wait_replicas(apps, ns, "p", 3, 60))

        t = threading.Thread(target=watcher)
        t.start()
        time.sleep(0.3)  # the watch is established (it first lists the current state)
        published = time.monotonic()
        r.lpush("react", *[b"{}"] * 3)  # three tasks waiting
        t.join()
        out.append(seen[0] - published)
        r.delete("react")
        wait_replicas(apps, ns, "p", 0, 60)
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scale(api: client.ApiClient, ports: list[int], pools: int, pid: int) -> dict[str, float]:
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    per_broker = pools // len(ports)
    for i, port in enumerate(ports):
        ns = f"scale-{i}"
        core.create_namespace({"metadata": {"name": ns}})
        create(custom, ns, "WorkflowBroker", "b", broker_spec(port))
        r = redis.Redis(port=port)
        for j in range(per_broker):
            if j % 3:
                r.lpush(f"q{j}", *[b"{}"] * (j % 3))  # some backlog on some queues
            create(custom, ns, "WorkerPool", f"p{j}", pool_spec(f"q{j}", 5))
    start = time.monotonic()
    while (
        sum(len(apps.list_namespaced_deployment(f"scale-{i}").items) for i in range(len(ports)))
        < pools
    ):
        time.sleep(2)
    settled = time.monotonic() - start
    time.sleep(60)  # the initial reconciles, scale-ups and their status writes finish
    before = {p: _commands(p) for p in ports}
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(60)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    after = {p: _commands(p) for p in ports}
    ticks = (t1 - t0) / 5
    per_tick = sum(after[p] - before[p] for p in ports) / ticks
    return {
        "create_to_all_deployments_s": settled,
        "cpu_s_per_min": (cpu1 - cpu0) * 60 / (t1 - t0),
        "peak_rss_mib": rss_mib(pid),
        "redis_commands_per_tick_total": per_tick,
        "redis_commands_per_tick_per_broker": per_tick / len(ports),
    }


def _commands(port: int) -> int:
    stats = redis.Redis(port=port).info("commandstats")
    # Our own INFO calls are excluded.
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pools", type=int, default=1000)
    parser.add_argument("--brokers", type=int, default=50)
    parser.add_argument("--only", choices=["reaction", "scale"], help="run one part")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="celeriac-bench-"))
    with ControlPlane() as plane, redis_servers(args.brokers + 1, work) as ports:
        api = kube.api_client(str(plane.kubeconfig))
        kube.apply_crds(api, all_crds())
        log = work / "operator.log"
        with running_operator(plane.kubeconfig, log) as proc:
            for interval in (5, 1) if args.only != "scale" else ():
                times = sorted(reaction(api, ports[-1], args.runs, interval))
                p95 = times[max(0, round(0.95 * len(times)) - 1)]
                print(
                    f"(a) backlog -> replicas patched, pollInterval {interval} s, "
                    f"{len(times)} runs: median {statistics.median(times):.2f} s, "
                    f"p95 {p95:.2f} s, max {times[-1]:.2f} s (goal p95 <= {interval + 1} s)",
                    flush=True,
                )
            print(f"    {KEDA}", flush=True)
            if args.only == "reaction":
                return
            result = scale(api, ports[:-1], args.pools, proc.pid)
            print(
                f"(b) {args.pools} pools across {args.brokers} brokers, one operator process: "
                f"{result['cpu_s_per_min']:.1f} CPU s/min "
                f"({result['cpu_s_per_min'] / 60 * 100:.0f}% of one core), peak RSS "
                f"{result['peak_rss_mib']:.0f} MiB, Redis commands per 5 s tick "
                f"{result['redis_commands_per_tick_total']:.0f} in total, "
                f"{result['redis_commands_per_tick_per_broker']:.1f} per broker; "
                f"all Deployments {result['create_to_all_deployments_s']:.0f} s after creation",
                flush=True,
            )


if __name__ == "__main__":
    main()
