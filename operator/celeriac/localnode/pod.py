"""One pod's lifecycle on the local node, on its own thread (development and tests only).

Like the kubelet's pod worker: set up the pod's network namespace and volumes,
run init containers one after the other to completion, then start the
containers, restart them per restartPolicy with crash-loop backoff, follow
their probes, and report status. When the pod gets a deletionTimestamp:
preStop hooks, SIGTERM, SIGKILL at the end of the grace period, then the final
delete (grace 0, uid precondition) and teardown. Logs stay in
`<state>/pods/<ns>_<pod>_<uid>/logs/<container>/<restart>.log`.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import envs, network, procs, volumes
from .container import Container, Launch, spawn
from .expand import expand_all
from .images import ImageEntry, ImageError, entrypoint, missing_executables, resolve
from .kubeapi import MERGE_PATCH, ApiError, Kube
from .mounts import PodVolumes
from .probes import Target
from .restarts import Backoff, should_restart
from .status import now as now_rfc3339
from .status import pod_status, waiting
from .storage import Provisioner

log = logging.getLogger("celeriac.localnode")

VOLUME_REFRESH_SECONDS = 10.0
CONFIG_RETRY_SECONDS = 2.0
ERR_IMAGE_PULL_SHOWN = 1.0  # ErrImagePull stays visible this long before ImagePullBackOff
DEFAULT_GRACE = 30


def image_paths(env: dict[str, str]) -> list[str]:
    """Directories an image entry runs from: PATH entries (a venv's bin/ stands for
    the whole venv) and PYTHONPATH entries. Pods get a private /tmp, so the ones
    under /tmp (a clone checked out there) must be bound back in."""
    out: list[str] = []
    for var in ("PATH", "PYTHONPATH"):
        for entry in filter(None, env.get(var, "").split(":")):
            path = Path(entry)
            path = path.parent if var == "PATH" and path.name == "bin" else path
            if str(path) not in out:
                out.append(str(path))
    return out


@dataclass
class NodeRuntime:
    """What every pod worker of one agent shares."""

    kube: Kube
    agent_id: str
    state_dir: Path
    hosts_file: Path
    host_ip: str
    images: list[ImageEntry]
    images_source: str
    image_settings: Mapping[str, str]
    backoff: Backoff
    python: str
    pools: Mapping[str, network.AddressPool]
    storage: Provisioner


def pod_dir(state_dir: Path, namespace: str, name: str, uid: str) -> Path:
    return state_dir / "pods" / f"{namespace}_{name}_{uid}"


def resolv_conf(namespace: str) -> str:
    return (
        "nameserver 127.0.0.1\n"
        f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5 timeout:1 attempts:1\n"
    )


class PodWorker:
    def __init__(self, rt: NodeRuntime, pod: dict[str, Any]) -> None:
        self.rt = rt
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.node: str = pod["spec"]["nodeName"]
        self.dir = pod_dir(rt.state_dir, self.namespace, self.name, self.uid)
        self.volumes = PodVolumes(
            rt.kube, rt.storage, self.dir / "volumes", self.namespace, self.name, self.uid
        )
        self._pod = pod
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._killed = threading.Event()
        spec = pod["spec"]
        self.init = [Container(c, True, self._marker(c)) for c in spec.get("initContainers") or []]
        self.main = [Container(c, False, self._marker(c)) for c in spec.get("containers") or []]
        self.host_network = bool(spec.get("hostNetwork"))
        self.pod_ip = ""
        self.netns: str | None = None
        self.start_time = ""
        self.init_index = 0
        self.init_failed = False
        self.volumes_ready = False
        self.volumes_refreshed = 0.0
        self.terminating = False
        self._written: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._main, name=f"pod-{self.name}", daemon=True)

    def _marker(self, container: dict[str, Any]) -> str:
        return f"{self.uid}/{container['name']}"

    # -- called from the agent ------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def update(self, pod: dict[str, Any]) -> None:
        with self._lock:
            self._pod = pod
        self._wake.set()

    def kill(self) -> None:
        """Stop at once: SIGKILL everything, no more API writes (pod gone or agent stopping)."""
        self._killed.set()
        self._wake.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def pod(self) -> dict[str, Any]:
        with self._lock:
            return self._pod

    # -- the worker thread ----------------------------------------------------------

    def _main(self) -> None:
        try:
            self._prepare()
            while not self._killed.is_set():
                if self.pod["metadata"].get("deletionTimestamp"):
                    self._terminate()
                    break
                self._tick()
                self._sync_status()
                self._wake.wait(timeout=0.5)
                self._wake.clear()
        except Exception:
            log.exception("pod %s/%s: worker failed", self.namespace, self.name)
        finally:
            for c in self.init + self.main:
                c.stop_probers()
                c.kill_now()
                c.reap()
            self._teardown()

    def _prepare(self) -> None:
        self.start_time = now_rfc3339()
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        if self.host_network:
            self.pod_ip = self.rt.host_ip
        else:
            self.pod_ip = self.rt.pools[self.node].take()
            while not self._killed.is_set():
                try:
                    self.netns = network.create_pod_network(self.uid, self.pod_ip)
                    break
                except network.NetworkError as e:
                    log.warning("pod %s/%s: %s", self.namespace, self.name, e)
                    for c in self.init[:1] or self.main:
                        c.record.state = waiting("ContainerCreating", f"pod sandbox: {e}")
                    self._sync_status()
                    self._killed.wait(CONFIG_RETRY_SECONDS)
        for c in self.init:
            c.record.state = waiting("PodInitializing")
        if self.init:
            for c in self.main:
                c.record.state = waiting("PodInitializing")
        self._sync_status()

    def _teardown(self) -> None:
        if self.netns:
            network.delete_pod_network(self.uid)
        if self.pod_ip and not self.host_network:
            self.rt.pools[self.node].give_back(self.pod_ip)
        # Logs stay for tests and post-mortems; the rest goes.
        for sub in ("volumes", "containers"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)

    def _wake_up(self) -> None:
        self._wake.set()

    # -- one pass -------------------------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        for c in self.init + self.main:
            terminated = c.reap()
            if terminated is not None:
                self._on_exit(c, terminated)
            elif c.kill_reason and c.proc is not None and c.stopper is None:
                log.info(
                    "pod %s/%s: %s probe failed, killing %s",
                    self.namespace,
                    self.name,
                    c.kill_reason,
                    c.name,
                )
                c.begin_stop(now + self._grace_for(c), self._wake_up, self._hook_log(c))
            if c.record.state.get("waiting", {}).get("reason") == "ErrImagePull" and (
                now >= c.show_backoff_at
            ):
                message = f'Back-off pulling image "{c.record.image}"'
                c.record.state = waiting("ImagePullBackOff", message)
        if not self.init_failed and self._volumes(now):
            # Init containers one at a time, to completion; then all the containers.
            due = self.init[self.init_index : self.init_index + 1] or self.main
            for c in due:
                if c.proc is None and not c.done and now >= c.next_start:
                    self._start(c)
        for c in self.init + self.main:
            c.refresh_flags()

    def _hook_log(self, c: Container) -> Path:
        return self.dir / "logs" / c.name / "prestop.log"

    def _grace_for(self, c: Container) -> float:
        probe = c.spec.get(f"{c.kill_reason}Probe") or {}
        grace = probe.get("terminationGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE)
        return float(grace)

    def _on_exit(self, c: Container, terminated: dict[str, Any]) -> None:
        code = terminated["exitCode"]
        log.info("pod %s/%s: container %s exited with %s", self.namespace, self.name, c.name, code)
        if c.init and code == 0:
            c.done = True
            c.record.state = {"terminated": terminated}
            self.init_index += 1
            return
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if c.init and policy == "Always":
            policy = "OnFailure"  # init containers never restart after success
        if self.terminating or not should_restart(policy, code):
            c.done = True
            c.record.state = {"terminated": terminated}
            if c.init:
                self.init_failed = True
            return
        delay, c.step = self.rt.backoff.after_exit(c.step, time.monotonic() - c.started_mono)
        c.next_start = time.monotonic() + delay
        c.record.last_state = {"terminated": terminated}
        if delay > 0:
            c.record.state = waiting(
                "CrashLoopBackOff",
                f"back-off {delay:g}s restarting failed container={c.name} "
                f"pod={self.name}_{self.namespace}({self.uid})",
            )
        else:
            c.record.state = {"terminated": terminated}

    # -- volumes --------------------------------------------------------------------

    def _volumes(self, now: float) -> bool:
        """Materialise volumes once (and refresh them now and then); False while not ready."""
        if now - self.volumes_refreshed < VOLUME_REFRESH_SECONDS:
            return self.volumes_ready
        try:
            self.volumes.write(self.pod, self.pod_ip, self.rt.host_ip)
        except (volumes.VolumeError, ApiError, OSError) as e:
            if not self.volumes_ready:
                for c in self._waiting_to_start():
                    c.record.state = waiting("ContainerCreating", f"MountVolume: {e}")
            log.info("pod %s/%s: volumes: %s", self.namespace, self.name, e)
            # Not ready yet: retry soon. Ready: keep the old content, as the kubelet does.
            retry = CONFIG_RETRY_SECONDS if not self.volumes_ready else VOLUME_REFRESH_SECONDS
            self.volumes_refreshed = now - VOLUME_REFRESH_SECONDS + retry
            return self.volumes_ready
        self.volumes_ready = True
        self.volumes_refreshed = now
        return True

    def _waiting_to_start(self) -> list[Container]:
        return [c for c in (self.init[:1] if self.init else self.main) if c.proc is None]

    # -- starting a container -------------------------------------------------------

    def _start(self, c: Container) -> None:
        now = time.monotonic()
        try:
            image = resolve(c.record.image, self.rt.images, self.rt.image_settings)
            missing = missing_executables(image)
            if missing:
                raise ImageError(
                    f'image "{c.record.image}" maps to entry "{image.entry}" of the local node '
                    f"image table, but {', '.join(missing)} is not installed"
                )
        except ImageError as e:
            delay = max(self.rt.backoff.delay(c.pull_step + 1), ERR_IMAGE_PULL_SHOWN * 2)
            c.pull_step += 1
            c.next_start = now + delay
            c.show_backoff_at = now + ERR_IMAGE_PULL_SHOWN
            c.record.state = waiting("ErrImagePull", f"{e} (table: {self.rt.images_source})")
            return
        c.pull_step = 0
        c.record.image_id = image.image_id
        try:
            k8s_env = self._container_env(c)
            mounts = self.volumes.mounts(self.pod, c.spec, k8s_env)
        except (envs.EnvError, volumes.VolumeError, ApiError) as e:
            c.next_start = now + CONFIG_RETRY_SECONDS
            c.record.state = waiting(getattr(e, "reason", "CreateContainerConfigError"), str(e))
            return
        hostname = self._hostname()
        marker = procs.marker_env(self.rt.agent_id, c.marker_value)
        env = {"HOSTNAME": hostname, "HOME": "/root", **image.env, **k8s_env, **marker}
        argv = entrypoint(
            image,
            expand_all(c.spec.get("command") or [], k8s_env) or None,
            expand_all(c.spec.get("args") or [], k8s_env) or None,
        )
        cdir = self.dir / "containers" / c.name
        instance = c.record.restart_count + (1 if c.starts else 0)
        launch = Launch(
            argv=argv,
            env=env,
            working_dir=c.spec.get("workingDir") or "/",
            mounts=mounts,
            hostname=hostname,
            resolv_conf=resolv_conf(self.namespace),
            hosts_file=str(self.rt.hosts_file),
            netns=self.netns,
            python=self.rt.python,
            scratch=cdir / "scratch",
            start_error=cdir / "start-error",
            expose=image_paths(image.env),
            log=self.dir / "logs" / c.name / f"{instance}.log",
            marker=marker,
        )
        proc = spawn(launch)
        c.mark_started(proc, launch.start_error, self._wake_up)
        log.info("pod %s/%s: started %s (pid %d)", self.namespace, self.name, c.name, proc.pid)
        ports = {
            p["name"]: int(p["containerPort"]) for p in c.spec.get("ports") or [] if p.get("name")
        }
        c.start_probers(Target(proc.pid, self.pod_ip, env, ports), self._wake_up)

    def _hostname(self) -> str:
        return str(self.pod["spec"].get("hostname") or self.name)[:63]

    def _container_env(self, c: Container) -> dict[str, str]:
        cm_names, secret_names = envs.referenced_objects(c.spec)
        configmaps = {n: self.volumes.data("configmaps", n) for n in cm_names}
        secrets = {n: self.volumes.data("secrets", n) for n in secret_names}
        ctx = envs.PodContext(self.pod, self.pod_ip, self.rt.host_ip)
        return envs.container_env(ctx, c.spec, configmaps, secrets)

    # -- deletion -------------------------------------------------------------------

    def _terminate(self) -> None:
        self.terminating = True
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        grace = DEFAULT_GRACE if grace is None else int(grace)
        deadline = time.monotonic() + grace
        log.info("pod %s/%s: deleting, grace %ss", self.namespace, self.name, grace)
        for c in self.init + self.main:
            c.begin_stop(deadline, self._wake_up, self._hook_log(c))
        while not self._killed.is_set():
            for c in self.init + self.main:
                terminated = c.reap()
                if terminated is not None:
                    self._on_exit(c, terminated)
                c.refresh_flags()
            if all(c.proc is None for c in self.init + self.main):
                break
            self._sync_status()
            self._wake.wait(timeout=0.5)
            self._wake.clear()
        if self._killed.is_set():
            return
        self._sync_status()
        self._delete()

    def _delete(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        try:
            self.rt.kube.request(
                "DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{self.name}", body=body
            )
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("pod %s/%s: final delete failed: %s", self.namespace, self.name, e)

    # -- status ---------------------------------------------------------------------

    def _sync_status(self) -> None:
        if self._killed.is_set():
            return
        pod = self.pod
        written = (self._written or {}).get("conditions")
        status = pod_status(
            pod,
            pod_ip=self.pod_ip,
            host_ip=self.rt.host_ip,
            start_time=self.start_time,
            sandbox_ready=bool(self.pod_ip),
            init_containers=[c.record for c in self.init],
            containers=[c.record for c in self.main],
            init_done=self.init_index >= len(self.init),
            init_failed=self.init_failed,
            written_conditions=written,
        )
        if status == self._written:
            return
        try:
            self.rt.kube.request(
                "PATCH",
                f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status",
                body={"metadata": {"uid": self.uid}, "status": status},
                content_type=MERGE_PATCH,
            )
            self._written = status
        except ApiError as e:
            if e.status in (404, 409):  # gone, or replaced by a pod with the same name
                self.kill()
            else:
                log.warning("pod %s/%s: status update failed: %s", self.namespace, self.name, e)
