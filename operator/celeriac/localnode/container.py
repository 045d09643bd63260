"""One container of a local-node pod as a process (development and tests only).

`Container` holds what the pod worker knows about a container between starts:
its status record, the current process, crash-loop state and probers. Starting
goes through `nsenter` (the pod's network namespace), `unshare` (a private
mount and UTS namespace) and `celeriac.localnode.sandbox`; stopping runs the
preStop hook, sends SIGTERM to the main process only (as a container runtime
does), and SIGKILLs everything the container started at the deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import procs
from .probes import LIVENESS, READINESS, STARTUP, Prober, Target, run_probe
from .status import ContainerRecord, now

SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The kubelet grants at least this long for SIGTERM after a preStop hook.
MIN_TERM_SECONDS = 2.0


@dataclass(frozen=True)
class Launch:
    """Everything needed to start one instance of a container."""

    argv: list[str]  # the command, already expanded
    env: dict[str, str]  # the complete environment, markers included
    working_dir: str
    mounts: list[dict[str, Any]]  # {source, target, readOnly}
    hostname: str
    resolv_conf: str
    hosts_file: str
    netns: str | None  # None for hostNetwork pods
    python: str
    scratch: Path
    start_error: Path
    expose: list[str]  # host paths of the image (venv, PYTHONPATH) to keep visible
    log: Path
    marker: dict[str, str]


def spawn(launch: Launch) -> subprocess.Popen[bytes]:
    argv = [launch.python, "-m", "celeriac.localnode.sandbox"]
    argv = ["unshare", "--mount", "--uts", "--propagation", "private", "--", *argv]
    if launch.netns:
        argv = ["nsenter", f"--net=/run/netns/{launch.netns}", "--", *argv]
    spec = {
        "argv": launch.argv,
        "env": launch.env,
        "workingDir": launch.working_dir,
        "mounts": launch.mounts,
        "hostname": launch.hostname,
        "resolvConf": launch.resolv_conf,
        "hostsFile": launch.hosts_file,
        "scratch": str(launch.scratch),
        "startError": str(launch.start_error),
        "expose": launch.expose,
    }
    launch.scratch.mkdir(parents=True, exist_ok=True)
    launch.log.parent.mkdir(parents=True, exist_ok=True)
    launch.start_error.unlink(missing_ok=True)
    with launch.log.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": SANDBOX_PATH, **launch.marker},
            cwd="/",
            start_new_session=True,  # its own process group, killed as a whole
        )
    stdin: IO[bytes] | None = proc.stdin
    assert stdin is not None
    with contextlib.suppress(BrokenPipeError):
        stdin.write(json.dumps(spec).encode())
    with contextlib.suppress(BrokenPipeError):
        stdin.close()
    return proc


def exit_code(returncode: int) -> int:
    """Popen's -N for "killed by signal N" as a container runtime reports it."""
    return returncode if returncode >= 0 else 128 - returncode


def run_hook(hook: dict[str, Any], target: Target, timeout: float) -> tuple[bool, str]:
    """Run a lifecycle handler (exec, httpGet, sleep) with a time limit."""
    if hook.get("sleep"):
        time.sleep(min(float(hook["sleep"].get("seconds", 0)), max(timeout, 0)))
        return True, ""
    probe = {**hook, "timeoutSeconds": max(timeout, 0.1)}
    return run_probe(probe, target)


class Container:
    """Runtime state of one container across its restarts."""

    def __init__(self, spec: dict[str, Any], init: bool, marker_value: str) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.init = init
        self.marker_value = marker_value  # CELERIAC_LOCALNODE_CONTAINER of its processes
        self.record = ContainerRecord(name=self.name, image=spec.get("image", ""))
        self.proc: subprocess.Popen[bytes] | None = None
        self.target: Target | None = None
        self.started_mono = 0.0
        self.started_at = ""
        self.starts = 0  # instances started so far
        self.next_start = 0.0  # monotonic time before which it must not start
        self.step = 0  # crash-loop backoff step
        self.pull_step = 0  # image "pull" backoff step
        self.show_backoff_at = 0.0  # ErrImagePull turns into ImagePullBackOff then
        self.done = False  # terminated for good
        self.kill_reason: str | None = None  # set by a failed liveness/startup probe
        self.probers: dict[str, Prober] = {}
        self.stopper: threading.Thread | None = None
        self.start_error: Path | None = None

    # -- probes ---------------------------------------------------------------------

    def chrooted(self) -> bool:
        """True once the sandbox has set up the root (the command is running)."""
        if self.proc is None:
            return False
        try:
            return os.readlink(f"/proc/{self.proc.pid}/root") != "/"
        except OSError:
            return False

    def start_probers(self, target: Target, wake: Callable[[], None]) -> None:
        self.target = target

        def on_change(kind: str, ok: bool | None, _message: str) -> None:
            if ok is False and kind in (LIVENESS, STARTUP):
                self.kill_reason = kind
            wake()

        startup = self.spec.get("startupProbe")
        kinds = (
            (STARTUP, "startupProbe"),
            (LIVENESS, "livenessProbe"),
            (READINESS, "readinessProbe"),
        )
        for kind, key in kinds:
            probe = self.spec.get(key)
            if not probe:
                continue
            gate = self._startup_passed if kind != STARTUP and startup else self.chrooted
            prober = Prober(kind, probe, target, on_change, gate)
            self.probers[kind] = prober
            prober.start()

    def _startup_passed(self) -> bool:
        startup = self.probers.get(STARTUP)
        return startup is None or startup.state.ok is True

    def stop_probers(self) -> None:
        for prober in self.probers.values():
            prober.stop()
        self.probers = {}

    def refresh_flags(self) -> None:
        """Recompute started/ready from the process and the probe verdicts."""
        running = self.proc is not None and self.record.running
        started = running and self._startup_passed()
        readiness = self.probers.get(READINESS)
        self.record.started = started
        self.record.ready = started and (readiness is None or readiness.state.ok is True)

    # -- stopping -------------------------------------------------------------------

    def begin_stop(
        self, deadline: float, wake: Callable[[], None], hook_log: Path | None = None
    ) -> None:
        """preStop, SIGTERM, SIGKILL at the deadline; on a thread, once per instance.
        A kubelet keeps no preStop output; here it goes to `hook_log`, for debugging."""
        if self.proc is None or self.stopper is not None:
            return
        proc, target = self.proc, self.target
        hook = ((self.spec.get("lifecycle") or {}).get("preStop")) or None

        def stop() -> None:
            kill_at = deadline
            if hook and target is not None and proc.poll() is None:
                ok, output = run_hook(hook, target, deadline - time.monotonic())
                if hook_log is not None:
                    with contextlib.suppress(OSError), hook_log.open("a") as f:
                        f.write(output if output.endswith("\n") or not output else output + "\n")
                        f.write(f"(preStop {'succeeded' if ok else 'failed'})\n")
                kill_at = max(deadline, time.monotonic() + MIN_TERM_SECONDS)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=max(0.0, kill_at - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill_now()
            wake()

        self.stopper = threading.Thread(target=stop, name=f"stop-{self.name}", daemon=True)
        self.stopper.start()

    def kill_now(self) -> None:
        """SIGKILL the process group and anything else carrying the container marker."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        procs.kill_all(procs.CONTAINER_MARKER, self.marker_value)

    # -- bookkeeping of one instance ------------------------------------------------

    def mark_started(
        self, proc: subprocess.Popen[bytes], start_error: Path, wake: Callable[[], None]
    ) -> None:
        def wait_then_wake() -> None:
            proc.wait()
            wake()

        # The pod worker learns about the exit at once instead of at its next tick.
        threading.Thread(target=wait_then_wake, name=f"wait-{self.name}", daemon=True).start()
        if self.starts:
            self.record.restart_count += 1
        self.starts += 1
        self.proc = proc
        self.start_error = start_error
        self.started_mono = time.monotonic()
        self.started_at = now()
        self.kill_reason = None
        self.stopper = None
        self.record.container_id = f"localnode://{proc.pid}"
        self.record.state = {"running": {"startedAt": self.started_at}}

    def reap(self) -> dict[str, Any] | None:
        """The `terminated` state if the process exited (and leftovers are killed)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        code = exit_code(self.proc.returncode)
        self.kill_now()
        self.stop_probers()
        message = ""
        if self.start_error is not None:
            with contextlib.suppress(OSError):
                message = self.start_error.read_text().strip()
        reason = "StartError" if message else ("Completed" if code == 0 else "Error")
        terminated: dict[str, Any] = {
            "exitCode": code,
            "reason": reason,
            "startedAt": self.started_at,
            "finishedAt": now(),
            "containerID": self.record.container_id,
        }
        if message:
            terminated["message"] = message
        if self.proc.returncode < 0:
            terminated["signal"] = -self.proc.returncode
        self.proc = None
        self.stopper = None
        self.record.ready = False
        self.record.started = False
        return terminated
