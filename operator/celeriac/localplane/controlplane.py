"""Start and stop a real local Kubernetes control plane (development and tests only).

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as child
processes, each in its own process group and bound to 127.0.0.1 on free ports.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from celeriac.localplane.binaries import find_bin_dir
from celeriac.localplane.pki import PKIFiles, write_control_plane_pki

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # first IP of SERVICE_CIDR: the `kubernetes` Service
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Names as accepted by v1.37 (`kube-controller-manager --help`): all end in -controller.
CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "cronjob-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "disruption-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
    "clusterrole-aggregation-controller",
    "ttl-after-finished-controller",
)
STOP_TIMEOUT = 10.0
_POLL = 0.1
_LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """The control plane failed to start (the message carries the relevant log tail)."""


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports; sockets stay open until all are picked."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def _http_get(
    port: int,
    path: str,
    context: ssl.SSLContext | None,
    token: str | None = None,
    timeout: float = 2.0,
) -> tuple[int, bytes] | None:
    """(status, body) of a GET to 127.0.0.1:port, or None if it cannot connect.

    http.client rather than urllib: urllib would route through $https_proxy.
    """
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _insecure_context() -> ssl.SSLContext:
    # controller-manager and scheduler serve self-signed certs; only /healthz is read.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ControlPlane:
    """A real etcd + kube-apiserver + kube-controller-manager + kube-scheduler.

    Use as a context manager, or call start() and stop(). Single use: a stopped
    plane cannot be restarted. Without a workdir a temporary one is created and
    deleted on stop(); a given workdir is kept (logs stay there for post-mortems).
    """

    def __init__(self, workdir: Path | None = None, bin_dir: Path | None = None) -> None:
        self._owns_workdir = workdir is None
        self._workdir = (
            Path(tempfile.mkdtemp(prefix="celeriac-plane-")) if workdir is None else workdir
        )
        self._bin_dir = bin_dir
        self._procs: list[_Process] = []
        self._ports: dict[str, int] = {}
        self._pki: PKIFiles | None = None
        self._admin_token = secrets.token_hex(24)
        self._started = False
        self._stopped = False
        # Even a plane nobody stops (crashed test run) must not outlive the interpreter.
        atexit.register(self.stop)

    # -- properties -----------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        return self._workdir

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_bin_dir()
        return self._bin_dir

    @property
    def logs_dir(self) -> Path:
        return self._workdir / "logs"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (cluster CA + a token in group system:masters)."""
        return self._workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self._port('apiserver')}"

    @property
    def admin_token(self) -> str:
        return self._admin_token

    @property
    def ca_cert(self) -> Path:
        return self._pki_files().ca_cert

    @property
    def ports(self) -> dict[str, int]:
        """Listening ports by role: etcd, etcd-peer, apiserver, controller-manager, scheduler."""
        return dict(self._ports)

    @property
    def pids(self) -> dict[str, int]:
        """PIDs (also process-group ids) of the started processes, by binary name."""
        return {p.name: p.popen.pid for p in self._procs}

    def _port(self, role: str) -> int:
        if role not in self._ports:
            raise RuntimeError("ControlPlane has not been started")
        return self._ports[role]

    def _pki_files(self) -> PKIFiles:
        if self._pki is None:
            raise RuntimeError("ControlPlane has not been started")
        return self._pki

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> None:
        """Start every component and return once all of them do their job."""
        if self._started or self._stopped:
            raise RuntimeError("a ControlPlane can only be started once")
        self._started = True
        try:
            self._start(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, deadline: float) -> None:
        bin_dir = self.bin_dir
        wd = self._workdir
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        # Stale etcd data from an earlier run would not match the fresh keys below.
        shutil.rmtree(wd / "etcd", ignore_errors=True)
        self._pki = pki = write_control_plane_pki(wd / "pki", service_ip=SERVICE_IP)
        roles = ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler")
        self._ports = dict(zip(roles, free_ports(len(roles)), strict=True))
        p = self._ports

        kcm_token, sched_token = secrets.token_hex(24), secrets.token_hex(24)
        tokens = wd / "tokens.csv"
        tokens.write_text(
            f'{self._admin_token},admin,admin,"system:masters"\n'
            f"{kcm_token},system:kube-controller-manager,system:kube-controller-manager\n"
            f"{sched_token},system:kube-scheduler,system:kube-scheduler\n"
        )
        tokens.chmod(0o600)
        ca_pem = pki.ca_cert.read_bytes()
        self._write_kubeconfig(self.kubeconfig, "admin", self._admin_token, ca_pem)
        kcm_kubeconfig = self._write_kubeconfig(
            wd / "controller-manager.kubeconfig",
            "system:kube-controller-manager",
            kcm_token,
            ca_pem,
        )
        sched_kubeconfig = self._write_kubeconfig(
            wd / "scheduler.kubeconfig", "system:kube-scheduler", sched_token, ca_pem
        )

        etcd_client = f"http://127.0.0.1:{p['etcd']}"
        etcd_peer = f"http://127.0.0.1:{p['etcd-peer']}"
        self._spawn(
            "etcd",
            [
                str(bin_dir / "etcd"),
                "--name=local",
                f"--data-dir={wd / 'etcd'}",
                f"--listen-client-urls={etcd_client}",
                f"--advertise-client-urls={etcd_client}",
                f"--listen-peer-urls={etcd_peer}",
                f"--initial-advertise-peer-urls={etcd_peer}",
                f"--initial-cluster=local={etcd_peer}",
                "--initial-cluster-state=new",
                # Throwaway data: skipping fsync makes the apiserver much faster.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", deadline, self._etcd_healthy)

        self._spawn(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={p['apiserver']}",
                f"--cert-dir={wd / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--token-auth-file={tokens}",
                # Unauthenticated requests get 401 instead of acting as system:anonymous.
                "--anonymous-auth=false",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Endpoints may not hold loopback IPs, so the `kubernetes` Service
                # endpoints cannot be reconciled to 127.0.0.1; skip it.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
            ],
        )
        api_ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        self._wait(
            "kube-apiserver",
            deadline,
            lambda: self._ok(p["apiserver"], "/readyz", api_ctx, self._admin_token),
        )

        self._spawn(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kcm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={p['controller-manager']}",
                f"--cert-dir={wd / 'controller-manager-certs'}",
                "--leader-elect=false",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                # Under RBAC the system:kube-controller-manager role only covers
                # informers and token minting; with =false the controllers run as
                # that user and cannot create ReplicaSets, Pods or ConfigMaps. With
                # =true each uses its kube-system ServiceAccount (as kubeadm does).
                "--use-service-account-credentials=true",
                "--profiling=false",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(bin_dir / "kube-scheduler"),
                f"--kubeconfig={sched_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={p['scheduler']}",
                f"--cert-dir={wd / 'scheduler-certs'}",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )
        insecure = _insecure_context()
        self._wait(
            "kube-controller-manager",
            deadline,
            lambda: self._ok(p["controller-manager"], "/healthz", insecure),
        )
        self._wait(
            "kube-scheduler", deadline, lambda: self._ok(p["scheduler"], "/healthz", insecure)
        )
        # /healthz only says the controllers run; wait for their first effects too.
        for path in (
            "/api/v1/namespaces/default/serviceaccounts/default",
            "/api/v1/namespaces/default/configmaps/kube-root-ca.crt",
        ):
            probe = functools.partial(self._ok, p["apiserver"], path, api_ctx, self._admin_token)
            self._wait("kube-controller-manager", deadline, probe)

    def stop(self) -> None:
        """SIGTERM every process group, SIGKILL whatever is left after STOP_TIMEOUT.

        Idempotent; also removes a temporary workdir.
        """
        atexit.unregister(self.stop)
        self._stopped = True
        procs, self._procs = self._procs, []
        deadline = time.monotonic() + STOP_TIMEOUT
        # One at a time in reverse start order: the apiserver's graceful shutdown
        # stalls if etcd is already gone, and the controllers only need the apiserver.
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
            try:
                proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # The leader is not reaped yet, so its pgid cannot have been reused.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()
        if self._owns_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.logs_dir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._workdir,
                start_new_session=True,  # own process group: stop() signals the whole group
            )
        self._procs.append(_Process(name, popen, log))

    def _check_alive(self) -> None:
        for proc in self._procs:
            code = proc.popen.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{proc.name} exited with code {code} during start; "
                    f"last lines of {proc.log}:\n{_tail(proc.log)}"
                )

    def _wait(self, name: str, deadline: float, probe: Callable[[], bool]) -> None:
        while True:
            self._check_alive()
            if probe():
                return
            if time.monotonic() > deadline:
                log = self.logs_dir / f"{name}.log"
                raise ControlPlaneError(
                    f"timed out waiting for {name}; last lines of {log}:\n{_tail(log)}"
                )
            time.sleep(_POLL)

    def _etcd_healthy(self) -> bool:
        got = _http_get(self._ports["etcd"], "/health", None)
        if got is None or got[0] != 200:
            return False
        with contextlib.suppress(ValueError):
            body: Any = json.loads(got[1])
            return isinstance(body, dict) and body.get("health") == "true"
        return False

    @staticmethod
    def _ok(port: int, path: str, context: ssl.SSLContext, token: str | None = None) -> bool:
        got = _http_get(port, path, context, token)
        return got is not None and got[0] == 200

    def _write_kubeconfig(self, path: Path, user: str, token: str, ca_pem: bytes) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
            "current-context": "local",
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        return path
