"""Startup, liveness and readiness probes of local-node containers (development and tests only).

`ProbeState` is the pure threshold logic of the kubelet's prober; `Prober` runs
one probe of one container on its own thread. exec probes run inside the
container through `nsenter -t <pid> -m -u -n -r -w` with the container's
environment; tcpSocket and httpGet connect to the pod address. gRPC probes are
not supported and always fail with a message saying so.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

STARTUP, LIVENESS, READINESS = "startup", "liveness", "readiness"
GATE_POLL_SECONDS = 0.05


@dataclass
class ProbeState:
    """The kubelet's threshold logic: a verdict changes after enough equal results in a row.

    `ok` starts as False for readiness, True for liveness and None (unknown)
    for startup probes.
    """

    success_threshold: int
    failure_threshold: int
    ok: bool | None
    _last: bool | None = None
    _run: int = 0

    @classmethod
    def for_probe(cls, kind: str, probe: dict[str, Any]) -> ProbeState:
        initial = {READINESS: False, LIVENESS: True}.get(kind)
        return cls(
            success_threshold=int(probe.get("successThreshold") or 1),
            failure_threshold=int(probe.get("failureThreshold") or 3),
            ok=initial,
        )

    def record(self, success: bool) -> bool:
        """Add a result; True when the verdict changed."""
        self._run = self._run + 1 if success == self._last else 1
        self._last = success
        needed = self.success_threshold if success else self.failure_threshold
        if self._run < needed or self.ok == success:
            return False
        self.ok = success
        return True


@dataclass(frozen=True)
class Target:
    """What a probe needs to know about the running container."""

    pid: int
    pod_ip: str
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)


def _port(value: Any, target: Target) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    if str(value) in target.ports:
        return target.ports[str(value)]
    raise ValueError(f"unknown named port {value!r}")


def run_probe(probe: dict[str, Any], target: Target) -> tuple[bool, str]:
    """Run a probe once: (success, message)."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if probe.get("exec"):
            return _exec(probe["exec"].get("command") or [], target, timeout)
        if probe.get("tcpSocket"):
            spec = probe["tcpSocket"]
            host = spec.get("host") or target.pod_ip
            with socket.create_connection((host, _port(spec["port"], target)), timeout=timeout):
                return True, ""
        if probe.get("httpGet"):
            return _http(probe["httpGet"], target, timeout)
    except (OSError, ValueError, http.client.HTTPException) as e:
        return False, str(e)
    return False, f"unsupported probe handler {sorted(k for k in probe if k[0].islower())}"


def _exec(command: list[str], target: Target, timeout: float) -> tuple[bool, str]:
    argv = ["nsenter", "-t", str(target.pid), "-m", "-u", "-n", "-r", "-w", "--", *command]
    try:
        proc = subprocess.run(
            argv, env=target.env, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return False, f"command timed out after {timeout:g}s"
    output = (proc.stdout + proc.stderr).decode(errors="replace").strip()
    return proc.returncode == 0, output[-1024:]


def _http(spec: dict[str, Any], target: Target, timeout: float) -> tuple[bool, str]:
    host = spec.get("host") or target.pod_ip
    port = _port(spec["port"], target)
    conn: http.client.HTTPConnection
    if str(spec.get("scheme", "HTTP")).upper() == "HTTPS":
        import ssl

        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
        conn.request("GET", spec.get("path") or "/", headers=headers)
        status = conn.getresponse().status
        return 200 <= status < 400, f"HTTP probe returned {status}"
    finally:
        conn.close()


class Prober:
    """Runs one probe periodically until stopped; reports verdict changes.

    `gate` returns False while the probe must not run yet (liveness and
    readiness wait for the startup probe). `on_change(kind, ok, message)` is
    called from the prober thread.
    """

    def __init__(
        self,
        kind: str,
        probe: dict[str, Any],
        target: Target,
        on_change: Callable[[str, bool | None, str], None],
        gate: Callable[[], bool] = lambda: True,
    ) -> None:
        self.kind = kind
        self.state = ProbeState.for_probe(kind, probe)
        self._probe = probe
        self._target = target
        self._on_change = on_change
        self._gate = gate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        period = float(self._probe.get("periodSeconds") or 10)
        if self._stop.wait(float(self._probe.get("initialDelaySeconds") or 0)):
            return
        while not self._stop.is_set():
            if not self._gate():
                self._stop.wait(GATE_POLL_SECONDS)  # probe as soon as the gate opens
                continue
            ok, message = run_probe(self._probe, self._target)
            if self._stop.is_set():
                return
            if self.state.record(ok):
                self._on_change(self.kind, self.state.ok, message)
            if self.kind == STARTUP and self.state.ok:
                return  # a startup probe stops once it succeeded
            self._stop.wait(period)
