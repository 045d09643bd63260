"""The local node: pods of the real control plane run as real local processes.

A StatefulSet of redis pods and a Deployment of Celery workers go through the
real scheduler and controllers; the tests reach them by address and DNS name,
delete them, stop their probes and crash them, and check that the agent
leaves nothing behind.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from waiting import wait_for

from celeriac.localnode import network
from celeriac.localnode.launcher import LocalNode, exec_in, leftovers
from helpers import listening_tcp_addresses, namespace_name

pytestmark = pytest.mark.integration
POLL = 0.1
REDIS_ARGS = ["redis-server", "--protected-mode", "no", "--save", "", "--appendonly", "no"]


# -- helpers ------------------------------------------------------------------------


def get_pod(core: client.CoreV1Api, ns: str, name: str) -> client.V1Pod | None:
    try:
        return core.read_namespaced_pod(name, ns)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def is_ready(pod: client.V1Pod | None) -> bool:
    conditions = (pod and pod.status and pod.status.conditions) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def status_of(pod: client.V1Pod | None, container: str) -> client.V1ContainerStatus | None:
    statuses = (pod and pod.status and pod.status.container_statuses) or []
    return next((s for s in statuses if s.name == container), None)


def pid_of(pod: client.V1Pod, container: str) -> int:
    status = status_of(pod, container)
    assert status is not None and status.container_id, f"{container} has no process"
    return int(status.container_id.removeprefix("localnode://"))


def ready_pods(core: client.CoreV1Api, ns: str, selector: str, count: int) -> list[client.V1Pod]:
    def probe() -> list[client.V1Pod] | None:
        pods = core.list_namespaced_pod(ns, label_selector=selector).items
        live = [p for p in pods if not p.metadata.deletion_timestamp]
        return live if len(live) == count and all(map(is_ready, live)) else None

    return wait_for(probe, timeout=90, interval=POLL, what=f"{count} ready pods {selector}")


def wait_gone(core: client.CoreV1Api, ns: str, name: str, uid: str, timeout: float) -> float:
    """Seconds until the pod with this uid no longer exists."""
    start = time.monotonic()

    def gone() -> bool:
        pod = get_pod(core, ns, name)
        return pod is None or pod.metadata.uid != uid

    wait_for(gone, timeout=timeout, interval=POLL / 2, what=f"pod {name} deleted")
    return time.monotonic() - start


def make_pod(ns: str, name: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "main", **container}], **spec},
    }


def in_hosts_file(*names: str) -> bool:
    """Whether /etc/hosts has these names: check before resolving them on the host, or
    the lookup would fall through to the machine's real DNS server."""
    words = set(Path("/etc/hosts").read_text().split())
    return all(name in words for name in names)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (its parent, the agent, reaps it soon).
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


# -- a module-wide broker: 3 redis pods and 2 Celery workers ------------------------


@pytest.fixture(scope="module")
def ns(kube_api: client.ApiClient, local_node: LocalNode) -> Iterator[str]:
    core = client.CoreV1Api(kube_api)
    name = namespace_name("localnode")
    core.create_namespace({"metadata": {"name": name}})
    # Pods need the default ServiceAccount (admission rejects them before it exists).
    wait_for(lambda: core.list_namespaced_service_account(name).items, what="default SA")
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def redis_set(kube_api: client.ApiClient, ns: str) -> list[client.V1Pod]:
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    labels = {"app": "redis"}
    core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "redis"},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": labels,
                "ports": [{"name": "redis", "port": 6379}],
            },
        },
    )
    container = {
        "name": "redis",
        "image": "redis:7.2",
        "args": REDIS_ARGS,
        "ports": [{"name": "redis", "containerPort": 6379}],
        "readinessProbe": {
            "exec": {"command": ["redis-cli", "ping"]},
            "periodSeconds": 1,
            "timeoutSeconds": 1,
            "failureThreshold": 2,
        },
        "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 2},
    }
    apps.create_namespaced_stateful_set(
        ns,
        {
            "metadata": {"name": "redis"},
            "spec": {
                "serviceName": "redis",
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 5,
                        "affinity": {
                            "podAntiAffinity": {
                                "requiredDuringSchedulingIgnoredDuringExecution": [
                                    {
                                        "labelSelector": {"matchLabels": labels},
                                        "topologyKey": "kubernetes.io/hostname",
                                    }
                                ]
                            }
                        },
                        "containers": [container],
                    },
                },
            },
        },
    )
    start = time.monotonic()
    pods = ready_pods(core, ns, "app=redis", 3)
    print(f"\n3 redis pods Ready (OrderedReady) in {time.monotonic() - start:.1f}s")
    names = [redis_host(ns, f"redis-{i}") for i in range(3)]
    wait_for(lambda: in_hosts_file(f"redis.{ns}.svc", *names), interval=POLL, what="DNS names")
    return sorted(pods, key=lambda p: p.metadata.name)


def redis_host(ns: str, pod: str) -> str:
    return f"{pod}.redis.{ns}.svc.cluster.local"


@pytest.fixture(scope="module")
def workers(kube_api: client.ApiClient, ns: str, redis_set: list[client.V1Pod]) -> list[str]:
    apps = client.AppsV1Api(kube_api)
    labels = {"app": "worker"}
    broker = f"redis://{redis_host(ns, 'redis-0')}:6379"
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "worker"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 30,
                        "topologySpreadConstraints": [
                            {
                                "maxSkew": 1,
                                "topologyKey": "topology.kubernetes.io/zone",
                                "whenUnsatisfiable": "DoNotSchedule",
                                "labelSelector": {"matchLabels": labels},
                            }
                        ],
                        "containers": [
                            {
                                "name": "worker",
                                "image": "celeriac.dev/worker:test",
                                "args": [
                                    "-A",
                                    "taskapp",
                                    "worker",
                                    "--loglevel=INFO",
                                    "--concurrency=1",
                                    "--without-gossip",
                                    "--without-mingle",
                                ],
                                "env": [
                                    {"name": "CELERY_BROKER_URL", "value": f"{broker}/0"},
                                    {"name": "CELERY_RESULT_BACKEND", "value": f"{broker}/1"},
                                ],
                                "readinessProbe": {
                                    "exec": {"command": ["test", "-e", "/tmp/worker-ready"]},
                                    "periodSeconds": 1,
                                },
                            }
                        ],
                    },
                },
            },
        },
    )
    start = time.monotonic()
    pods = ready_pods(client.CoreV1Api(kube_api), ns, "app=worker", 2)
    print(f"\n2 worker pods Ready in {time.monotonic() - start:.1f}s")
    return [p.metadata.name for p in pods]


# -- the acceptance tests ------------------------------------------------------------


def test_redis_statefulset_runs_real_processes_on_three_nodes(
    redis_set: list[client.V1Pod], ns: str
) -> None:
    nodes = {p.spec.node_name for p in redis_set}
    assert nodes == {"localnode-1", "localnode-2", "localnode-3"}  # anti-affinity held
    ips = [p.status.pod_ip for p in redis_set]
    assert len(set(ips)) == 3
    for pod in redis_set:
        k = int(pod.spec.node_name.rsplit("-", 1)[1])
        assert pod.status.pod_ip.startswith(f"10.250.{k}.")
        assert pod.status.phase == "Running"
        pid = pid_of(pod, "redis")
        assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"redis-server *:6379")
        # Every pod listens on the same port in its own network namespace.
        assert ("0.0.0.0", 6379) in listening_tcp_addresses(pid)
        for host in (pod.status.pod_ip, redis_host(ns, pod.metadata.name)):
            assert redis.Redis(host=host, socket_timeout=2).ping()
    resolved = {a[4][0] for a in socket.getaddrinfo(f"redis.{ns}.svc", 6379, socket.AF_INET)}
    assert resolved == set(ips)


def test_pods_resolve_each_other_by_dns_name(redis_set: list[client.V1Pod], ns: str) -> None:
    pid = pid_of(redis_set[0], "redis")
    for other in redis_set[1:]:
        got = exec_in(pid, ["redis-cli", "-h", redis_host(ns, other.metadata.name), "ping"])
        assert got.stdout.strip() == "PONG", got
    # No DNS server and no default route: unknown names and outside addresses fail fast.
    start = time.monotonic()
    got = exec_in(pid, ["redis-cli", "-h", "example.com", "ping"])
    assert "PONG" not in got.stdout and time.monotonic() - start < 5
    got = exec_in(pid, ["redis-cli", "-h", "10.0.0.1", "ping"])  # a Service IP
    assert "unreachable" in (got.stdout + got.stderr).lower(), got


def test_readiness_flips_when_redis_stops_answering(
    kube_api: client.ApiClient, redis_set: list[client.V1Pod], ns: str
) -> None:
    core = client.CoreV1Api(kube_api)
    pod = redis_set[2]
    pid = pid_of(pod, "redis")
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        wait_for(
            lambda: not is_ready(get_pod(core, ns, "redis-2")),
            timeout=15,
            interval=POLL,
            what="redis-2 not ready",
        )
        print(f"\nNotReady {time.monotonic() - start:.1f}s after SIGSTOP")
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(
        lambda: is_ready(get_pod(core, ns, "redis-2")),
        timeout=15,
        interval=POLL,
        what="redis-2 ready again",
    )
    assert pid_of(get_pod(core, ns, "redis-2"), "redis") == pid  # not restarted


def test_deleted_worker_finishes_its_task_within_grace(
    kube_api: client.ApiClient, local_node: LocalNode, workers: list[str], ns: str
) -> None:
    core = client.CoreV1Api(kube_api)
    broker = f"redis://{redis_host(ns, 'redis-0')}:6379"
    app = Celery("test", broker=f"{broker}/0", backend=f"{broker}/1")
    result = app.send_task("taskapp.sleep", args=[5, "long"])

    def busy_worker() -> str | None:
        for name in workers:
            if "task long started" in local_node.log_text(ns, name, "worker"):
                return name
        return None

    name = wait_for(busy_worker, timeout=30, interval=POLL, what="a worker runs the task")
    pod = get_pod(core, ns, name)
    assert pod is not None
    pid = pid_of(pod, "worker")
    start = time.monotonic()
    core.delete_namespaced_pod(name, ns)  # grace 30 s
    elapsed = wait_gone(core, ns, name, pod.metadata.uid, timeout=35)
    print(f"\nworker pod gone {elapsed:.1f}s after delete (task 5 s, grace 30 s)")
    assert result.get(timeout=5) == "done long"
    log = local_node.log_text(ns, name, "worker")
    assert "task long finished" in log
    assert "Warm shutdown" in log  # Celery saw SIGTERM, not SIGKILL
    assert elapsed < 30
    assert not alive(pid)
    assert time.monotonic() - start < 30
    app.close()


def test_process_ignoring_sigterm_is_killed_at_the_deadline(
    kube_api: client.ApiClient, local_node: LocalNode, ns: str
) -> None:
    core = client.CoreV1Api(kube_api)
    container = {"image": "busybox", "command": ["sh", "-c", 'trap "" TERM; echo up; sleep 1000']}
    core.create_namespaced_pod(
        ns, make_pod(ns, "stubborn", container, terminationGracePeriodSeconds=3)
    )
    wait_for(
        lambda: is_ready(get_pod(core, ns, "stubborn")),
        timeout=30,
        interval=POLL,
        what="stubborn running",
    )
    wait_for(lambda: "up" in local_node.log_text(ns, "stubborn", "main"), interval=POLL)
    pod = get_pod(core, ns, "stubborn")
    assert pod is not None
    pid = pid_of(pod, "main")
    core.delete_namespaced_pod("stubborn", ns)
    elapsed = wait_gone(core, ns, "stubborn", pod.metadata.uid, timeout=15)
    print(f"\nSIGTERM-ignoring pod gone {elapsed:.2f}s after delete (grace 3 s)")
    assert 3.0 <= elapsed < 4.5
    assert not alive(pid)


def test_crashing_container_restarts_with_backoff(
    kube_api: client.ApiClient, local_node: LocalNode, ns: str
) -> None:
    core = client.CoreV1Api(kube_api)
    container = {"image": "busybox", "command": ["sh", "-c", "echo crash; exit 3"]}
    core.create_namespaced_pod(ns, make_pod(ns, "crasher", container))
    seen: set[str] = set()

    def restarted(times: int) -> client.V1ContainerStatus | None:
        status = status_of(get_pod(core, ns, "crasher"), "main")
        if status is not None and status.state.waiting is not None:
            seen.add(status.state.waiting.reason)
        return status if status is not None and status.restart_count >= times else None

    status = wait_for(lambda: restarted(3), timeout=30, interval=POLL, what="3 restarts")
    assert "CrashLoopBackOff" in seen
    assert status.last_state.terminated.exit_code == 3
    # Backoff 1 s, doubling: each restart waited longer than the one before.
    logs = local_node.log_path(ns, "crasher", "main", 0)
    assert logs is not None
    starts = [(logs.parent / f"{i}.log").stat().st_mtime for i in range(4)]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    print(f"\ngaps between restarts: {[round(g, 2) for g in gaps]}")
    assert gaps[1] >= 0.9 and gaps[2] >= 1.9 and gaps[2] > gaps[1]
    assert local_node.log_text(ns, "crasher", "main", restart=2).strip() == "crash"


def test_liveness_failure_restarts_the_container(kube_api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(kube_api)
    container = {
        "image": "busybox",
        "command": ["sh", "-c", "touch /tmp/alive; exec sleep 1000"],
        "livenessProbe": {
            "exec": {"command": ["test", "-e", "/tmp/alive"]},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
    }
    core.create_namespaced_pod(
        ns, make_pod(ns, "lively", container, terminationGracePeriodSeconds=1)
    )
    pod = wait_for(
        lambda: (p := get_pod(core, ns, "lively")) and is_ready(p) and p,
        timeout=30,
        interval=POLL,
        what="lively ready",
    )
    first = pid_of(pod, "main")
    # Ready (no readiness probe) may come before the shell has touched the file.
    wait_for(lambda: exec_in(first, ["test", "-e", "/tmp/alive"]).returncode == 0, 10, POLL)
    assert exec_in(first, ["rm", "/tmp/alive"]).returncode == 0
    status = wait_for(
        lambda: (
            (s := status_of(get_pod(core, ns, "lively"), "main"))
            and s.restart_count == 1
            and s.state.running
            and s
        ),
        timeout=20,
        interval=POLL,
        what="restart after liveness failure",
    )
    assert status.last_state.terminated is not None
    assert not alive(first)


def test_env_volumes_init_containers_and_working_dir(
    kube_api: client.ApiClient, local_node: LocalNode, ns: str
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "cfg"}, "data": {"GREETING": "hello", "app.conf": "x=1\n"}}
    )
    core.create_namespaced_secret(
        ns, {"metadata": {"name": "sec"}, "stringData": {"password": "s3cret"}}
    )
    script = (
        'echo "args: $0 $1"; echo "greeting=$GREETING cfg_GREETING=$CFG_GREETING pw=$PW"; '
        'echo "combined=$COMBINED pod=$POD_NAME ip=$POD_IP"; echo "pwd=$(pwd)"; '
        "cat /etc/app/app.conf /etc/podinfo/labels; echo; cat /data/from-init; "
        "ls /var/run/secrets/kubernetes.io/serviceaccount | tr '\\n' ' '; echo; "
        "cat /etc/secret/password; echo; touch /etc/app/x 2>/dev/null || echo read-only; sleep 1000"
    )
    pod = make_pod(
        ns,
        "configured",
        {
            "image": "busybox",
            "command": ["sh", "-c", script, "$(POD_NAME)", "$$(NOT_EXPANDED)"],
            "workingDir": "/data",
            "envFrom": [
                {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                {"configMapRef": {"name": "missing", "optional": True}},
            ],
            "env": [
                {
                    "name": "GREETING",
                    "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "GREETING"}},
                },
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "COMBINED", "value": "$(GREETING)-$(POD_NAME)-$(LATER)"},
                {"name": "LATER", "value": "late"},
            ],
            "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "cfg", "mountPath": "/etc/app"},
                {"name": "sec", "mountPath": "/etc/secret"},
                {"name": "podinfo", "mountPath": "/etc/podinfo"},
            ],
        },
        initContainers=[
            {
                "name": "init",
                "image": "busybox",
                "command": ["sh", "-c", "echo written-by-init > /work/from-init"],
                "volumeMounts": [{"name": "data", "mountPath": "/work"}],
            }
        ],
        volumes=[
            {"name": "data", "emptyDir": {}},
            {
                "name": "cfg",
                "configMap": {"name": "cfg", "items": [{"key": "app.conf", "path": "app.conf"}]},
            },
            {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
            {
                "name": "podinfo",
                "downwardAPI": {
                    "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                },
            },
        ],
    )
    pod["metadata"]["labels"] = {"tier": "test"}
    core.create_namespaced_pod(ns, pod)
    got = wait_for(
        lambda: (p := get_pod(core, ns, "configured")) and is_ready(p) and p,
        timeout=30,
        interval=POLL,
        what="configured pod ready",
    )
    assert got.status.init_container_statuses[0].state.terminated.reason == "Completed"
    text = wait_for(
        lambda: "read-only" in (t := local_node.log_text(ns, "configured", "main")) and t,
        interval=POLL,
        what="output",
    )
    assert "args: configured $(NOT_EXPANDED)" in text
    assert "greeting=hello cfg_GREETING=hello pw=s3cret" in text
    assert f"combined=hello-configured-$(LATER) pod=configured ip={got.status.pod_ip}" in text
    assert "pwd=/data" in text
    assert 'x=1\ntier="test"' in text
    assert "written-by-init" in text
    assert "ca.crt namespace token" in text
    assert "s3cret\nread-only" in text
    assert not Path("/data/from-init").exists() and not Path("/etc/app").exists()


def test_unmapped_image_waits_like_a_failed_pull(kube_api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod(
        ns, make_pod(ns, "unmapped", {"image": "ghcr.io/example/not-mapped:1.0"})
    )
    reasons: set[str] = set()

    def waiting_reason() -> str | None:
        pod = get_pod(core, ns, "unmapped")
        status = status_of(pod, "main")
        if pod is None or status is None or status.state.waiting is None:
            return None
        assert pod.status.phase == "Pending"
        reasons.add(status.state.waiting.reason)
        if status.state.waiting.reason == "ErrImagePull":
            assert "ghcr.io/example/not-mapped:1.0" in status.state.waiting.message
            assert "image table" in status.state.waiting.message
        return "ok" if {"ErrImagePull", "ImagePullBackOff"} <= reasons else None

    wait_for(waiting_reason, timeout=20, interval=POLL, what="ErrImagePull then ImagePullBackOff")


def test_claims_are_bound_and_data_survives_the_pod(kube_api: client.ApiClient, ns: str) -> None:
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    labels = {"app": "durable"}
    container = {
        "name": "redis",
        "image": "redis:7.2",
        "args": [*REDIS_ARGS[:-1], "yes", "--dir", "/data"],  # appendonly yes
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 1},
    }
    apps.create_namespaced_stateful_set(
        ns,
        {
            "metadata": {"name": "durable"},
            "spec": {
                "serviceName": "durable",
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"terminationGracePeriodSeconds": 5, "containers": [container]},
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                ],
            },
        },
    )
    (pod,) = ready_pods(core, ns, "app=durable", 1)
    claim = core.read_namespaced_persistent_volume_claim("data-durable-0", ns)
    assert claim.status.phase == "Bound" and claim.spec.volume_name
    assert redis.Redis(host=pod.status.pod_ip, socket_timeout=2).set("kept", "yes")
    core.delete_namespaced_pod("durable-0", ns)  # redis-server writes its AOF on SIGTERM
    wait_gone(core, ns, "durable-0", pod.metadata.uid, timeout=15)
    (again,) = ready_pods(core, ns, "app=durable", 1)
    assert again.metadata.uid != pod.metadata.uid
    assert redis.Redis(host=again.status.pod_ip, socket_timeout=2).get("kept") == b"yes"


def test_stop_leaves_nothing_behind(local_node: LocalNode, ns: str) -> None:
    """Runs last: stops the agent with pods running, checks, and starts it again."""
    assert network.list_netns(), "pods should be running before the stop"
    local_node.stop()  # raises when something is left
    assert leftovers(local_node.agent_id) == []
    assert not any(a.startswith("10.250.") for a in _host_addresses())
    local_node.start()


def _host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True)
    return [line.split()[3].split("/")[0] for line in out.stdout.splitlines()]
