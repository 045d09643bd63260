"""The local node agent: Nodes, Leases, pod workers and DNS names (development and tests only).

One agent per machine (an abstract unix socket is its lock, so leftovers of a
crashed agent can be cleaned safely on the next start). It registers Nodes
`localnode-1..N`, renews their Leases, watches Pods bound to them and runs
each on a `PodWorker`, and keeps the /etc/hosts block in step with the
EndpointSlices. SIGTERM stops it: every process it started is killed, and the
network, the hosts block and the blackhole route are removed.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import hosts, network, procs
from .images import load_table
from .kubeapi import ApiError, Kube, list_and_watch
from .nodes import NodeRegistry, node_names
from .pod import NodeRuntime, PodWorker
from .restarts import Backoff
from .storage import Provisioner

log = logging.getLogger("celeriac.localnode")

LOCK_NAME = "\0celeriac-localnode"
READY_FILE = "agent.ready"


class AgentError(RuntimeError):
    """The agent cannot start (another one runs, or the host lacks something)."""


@dataclass(frozen=True)
class AgentConfig:
    kubeconfig: str
    nodes: int
    state_dir: Path
    agent_id: str
    hosts_file: Path = Path("/etc/hosts")


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.kube = Kube(config.kubeconfig)
        self.nodes = node_names(config.nodes)
        self.registry = NodeRegistry(self.kube, self.nodes)
        self.stopping = threading.Event()
        self.workers: dict[str, PodWorker] = {}
        self._workers_lock = threading.Lock()
        self._slices: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock_socket: socket.socket | None = None
        images, source = load_table()
        settings = {
            "CELERIAC_WORKER_VENV": sys.prefix,
            "CELERIAC_WORKER_PYTHONPATH": "",
            **os.environ,
        }
        self.rt = NodeRuntime(
            kube=self.kube,
            agent_id=config.agent_id,
            state_dir=config.state_dir,
            hosts_file=config.hosts_file,
            host_ip=network.BRIDGE_ADDRESS,
            images=images,
            images_source=source,
            image_settings=settings,
            backoff=Backoff.from_env(),
            python=sys.executable,
            pools={n: network.AddressPool(k) for k, n in enumerate(self.nodes, start=1)},
            storage=Provisioner(self.kube, config.state_dir / "volumes"),
        )

    # -- lifecycle ------------------------------------------------------------------

    def run(self) -> None:
        self._take_machine_lock()
        try:
            self._clean_leftovers()
            network.setup_host()
            self.config.state_dir.mkdir(parents=True, exist_ok=True)
            self.registry.register()
            self._thread(lambda: self.registry.heartbeat(self.stopping), "heartbeat")
            self._watch(
                "/api/v1/pods",
                {"fieldSelector": "spec.nodeName!="},
                self._pods_listed,
                self._pod_event,
            )
            self._watch(
                "/apis/discovery.k8s.io/v1/endpointslices",
                {},
                self._slices_listed,
                self._slice_event,
            )
            self._watch(
                "/api/v1/persistentvolumeclaims", {}, self._claims_listed, self.rt.storage.on_claim
            )
            ready = {"pid": os.getpid(), "agentId": self.config.agent_id, "nodes": self.nodes}
            (self.config.state_dir / READY_FILE).write_text(json.dumps(ready))
            log.info("local node agent %s ready: nodes %s", self.config.agent_id, self.nodes)
            # Wake up now and then: the kernel may deliver SIGTERM to another thread,
            # and Python runs signal handlers only when the main thread runs bytecode.
            while not self.stopping.wait(0.2):
                pass
        finally:
            self._shutdown()

    def stop(self) -> None:
        self.stopping.set()

    def _thread(self, target: Callable[[], None], name: str) -> None:
        threading.Thread(target=target, name=name, daemon=True).start()

    def _watch(
        self,
        path: str,
        params: dict[str, Any],
        on_list: Callable[[list[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
    ) -> None:
        args = (self.kube, path, params, on_list, on_event, self.stopping)
        name = "watch-" + path.rsplit("/", 1)[1]
        threading.Thread(target=list_and_watch, args=args, name=name, daemon=True).start()

    def _take_machine_lock(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(LOCK_NAME)
        except OSError as e:
            sock.close()
            raise AgentError(
                "another celeriac local node agent runs on this machine (one per machine: "
                "they share the bridge clr0 and 10.250.0.0/16)"
            ) from e
        self._lock_socket = sock

    def _clean_leftovers(self) -> None:
        """We hold the machine lock, so anything of ours that exists is a leftover."""
        killed = procs.kill_all(procs.MARKER)
        if killed:
            log.warning("killed %d processes left by an earlier agent", len(killed))
        network.teardown_host()
        hosts.write_block(self.config.hosts_file, None, "")

    def _shutdown(self) -> None:
        self.stopping.set()
        with self._workers_lock:
            workers = list(self.workers.values())
            self.workers.clear()
        log.info("stopping: killing the containers of %d pods", len(workers))
        for worker in workers:
            worker.kill()
        deadline = time.monotonic() + 10
        for worker in workers:
            if not worker.join(timeout=max(0.0, deadline - time.monotonic())):
                log.warning("pod worker %s/%s did not stop", worker.namespace, worker.name)
        self.registry.mark_not_ready()
        procs.kill_all(procs.MARKER, self.config.agent_id)
        network.teardown_host()
        hosts.write_block(self.config.hosts_file, None, "")
        (self.config.state_dir / READY_FILE).unlink(missing_ok=True)
        self.kube.close()
        if self._lock_socket is not None:
            self._lock_socket.close()
        log.info("local node agent %s stopped", self.config.agent_id)

    # -- watches --------------------------------------------------------------------

    def _pods_listed(self, pods: list[dict[str, Any]]) -> None:
        present = {p["metadata"]["uid"] for p in pods}
        with self._workers_lock:
            gone = [uid for uid in self.workers if uid not in present]
        for uid in gone:
            self._pod_event("DELETED", {"metadata": {"uid": uid}, "spec": {}})
        for pod in pods:
            self._pod_event("MODIFIED", pod)

    def _pod_event(self, kind: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        with self._workers_lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker is not None:
                    del self.workers[uid]
                    worker.kill()
                return
            if pod.get("spec", {}).get("nodeName") not in self.nodes:
                return
            if worker is not None:
                worker.update(pod)
                return
            if pod["metadata"].get("deletionTimestamp"):
                self._thread(lambda: self._finish_unknown(pod), "finish-delete")
                return
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return
            worker = PodWorker(self.rt, pod)
            self.workers[uid] = worker
        worker.start()

    def _finish_unknown(self, pod: dict[str, Any]) -> None:
        """A pod being deleted that runs nothing here: confirm the deletion."""
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        try:
            self.kube.request(
                "DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body=body
            )
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("deleting pod %s/%s: %s", meta["namespace"], meta["name"], e)

    def _claims_listed(self, claims: list[dict[str, Any]]) -> None:
        for claim in claims:
            self.rt.storage.on_claim("MODIFIED", claim)

    def _slices_listed(self, slices: list[dict[str, Any]]) -> None:
        self._slices = {self._slice_key(s): s for s in slices}
        self._write_hosts()

    def _slice_event(self, kind: str, eps: dict[str, Any]) -> None:
        if kind == "DELETED":
            self._slices.pop(self._slice_key(eps), None)
        else:
            self._slices[self._slice_key(eps)] = eps
        self._write_hosts()

    @staticmethod
    def _slice_key(eps: dict[str, Any]) -> tuple[str, str]:
        meta = eps.get("metadata", {})
        return str(meta.get("namespace")), str(meta.get("name"))

    def _write_hosts(self) -> None:
        block = hosts.render_block(self.config.agent_id, hosts.host_entries(self._slices.values()))
        if hosts.write_block(self.config.hosts_file, self.config.agent_id, block):
            log.debug("hosts block updated")


def main(config: AgentConfig) -> int:
    if os.geteuid() != 0:
        log.error("the local node agent needs root (network namespaces, mounts, /etc/hosts)")
        return 1
    # `kill -USR1 <agent>` (and LocalNode.stop before it gives up) dumps every thread.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    agent = Agent(config)

    def on_signal(signum: int, _frame: object) -> None:
        agent.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        agent.run()
    except (AgentError, network.NetworkError) as e:
        log.error("%s", e)
        return 1
    return 0


def new_agent_id() -> str:
    return secrets.token_hex(4)
