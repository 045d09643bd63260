"""`LocalNode`: the local node agent as a child process (development and tests only).

Used by the test fixtures and by `celeriac run` on the local control plane:

    with LocalNode(plane.kubeconfig, nodes=3) as node:
        ...                                  # pods bound to localnode-1..3 run
        node.log_text("default", "redis-0", "redis")

stop() sends SIGTERM, waits for the agent to exit and then checks that nothing
it started is left (processes with its marker, network namespaces, the bridge,
the hosts block, the blackhole route); it removes what it finds and raises.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from . import hosts, network, procs
from .agent import LOCK_NAME, READY_FILE, new_agent_id
from .nodes import node_names

STOP_TIMEOUT = 30.0


class LocalNodeError(RuntimeError):
    """The agent did not start, or it left something behind."""


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"<cannot read {path}: {e}>"


def leftovers(agent_id: str | None = None, hosts_file: Path = Path("/etc/hosts")) -> list[str]:
    """What a stopped agent should have removed and did not (empty when clean).

    The network and /etc/hosts are only checked while no agent runs on the machine.
    """
    found = []
    pids = procs.find(procs.MARKER, agent_id)
    if pids:
        found.append(f"processes with {procs.MARKER}={agent_id or '*'}: {pids}")
    if not _machine_lock_free():
        return found
    netns = network.list_netns()
    if netns:
        found.append(f"network namespaces {netns}")
    links = network.ip("-o", "link", "show", check=False)
    names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
    ours = [n for n in names if n == network.BRIDGE or n.startswith(network.VETH_PREFIX)]
    if ours:
        found.append(f"links {ours}")
    route = ["route", "show", "exact", network.SERVICE_CIDR, "type", "blackhole"]
    if network.ip(*route, check=False).strip():
        found.append(f"blackhole route {network.SERVICE_CIDR}")
    text = hosts_file.read_text()
    if hosts.replace_block(text, None, "") != text:
        found.append(f"a celeriac-localnode block in {hosts_file}")
    return found


def exec_in(
    pid: int, argv: list[str], timeout: float = 30, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Like `kubectl exec`: run argv inside the container whose main process is pid,
    with that container's environment (so the agent can find and kill it too)."""
    env_bytes = Path(f"/proc/{pid}/environ").read_bytes()
    env = dict(v.split("=", 1) for v in env_bytes.decode(errors="replace").split("\0") if "=" in v)
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "-u", "-n", "-r", "-w", "--", *argv],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _machine_lock_free() -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(LOCK_NAME)
        return True
    except OSError:
        return False
    finally:
        sock.close()


class LocalNode:
    """Runs `python -m celeriac.localnode` until stop(); may be started again after that."""

    def __init__(
        self,
        kubeconfig: str | Path,
        nodes: int = 3,
        state_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        hosts_file: Path = Path("/etc/hosts"),
    ) -> None:
        self._owns_state_dir = state_dir is None
        self.state_dir = (
            Path(tempfile.mkdtemp(prefix="celeriac-localnode-")) if state_dir is None else state_dir
        )
        self.kubeconfig = str(kubeconfig)
        self.nodes = node_names(nodes)
        self.agent_id = new_agent_id()
        self.hosts_file = hosts_file
        self._env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def agent_log(self) -> Path:
        return self.state_dir / "agent.log"

    def __enter__(self) -> LocalNode:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 60) -> None:
        if self._proc is not None:
            raise RuntimeError("this LocalNode is running already")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ready = self.state_dir / READY_FILE
        ready.unlink(missing_ok=True)
        argv = [
            sys.executable, "-m", "celeriac.localnode",
            f"--kubeconfig={self.kubeconfig}",
            f"--nodes={len(self.nodes)}",
            f"--state-dir={self.state_dir}",
            f"--agent-id={self.agent_id}",
            f"--hosts-file={self.hosts_file}",
        ]  # fmt: skip
        with self.agent_log.open("ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self._env},
                start_new_session=True,
            )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                atexit.unregister(self.stop)
                message = f"the local node agent exited with {code}; {self.agent_log}:\n"
                message += _tail(self.agent_log)
                if self._owns_state_dir:
                    shutil.rmtree(self.state_dir, ignore_errors=True)
                raise LocalNodeError(message)
            with contextlib.suppress(OSError, ValueError):
                if json.loads(ready.read_text()).get("pid") == self._proc.pid:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise LocalNodeError(f"the local node agent did not get ready in {timeout}s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the agent and check that it left nothing behind (raises if it did)."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGUSR1)  # thread dump into the agent log
                time.sleep(0.5)
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        problems = leftovers(self.agent_id, self.hosts_file)
        if problems:
            procs.kill_all(procs.MARKER, self.agent_id)
            if _machine_lock_free():
                network.teardown_host()
                hosts.write_block(self.hosts_file, None, "")
        if self._owns_state_dir and not problems:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        if problems:
            raise LocalNodeError(
                "the local node agent left things behind (now removed): " + "; ".join(problems)
            )

    # -- logs -----------------------------------------------------------------------

    def log_path(
        self, namespace: str, pod: str, container: str, restart: int | None = None
    ) -> Path | None:
        """The log file of one container instance (the newest pod and restart by default)."""
        # Pod names are DNS labels (no "_"), so this matches one pod name exactly;
        # several uids mean the pod was recreated: the most recently started wins.
        logs_dirs = [
            d / "logs" / container for d in (self.state_dir / "pods").glob(f"{namespace}_{pod}_*")
        ]
        logs_dirs = [d for d in logs_dirs if d.is_dir()]
        if not logs_dirs:
            return None
        logs = max(logs_dirs, key=lambda d: d.stat().st_mtime)
        if restart is not None:
            path = logs / f"{restart}.log"
            return path if path.exists() else None
        files = sorted(logs.glob("*.log"), key=lambda p: int(p.stem))
        return files[-1] if files else None

    def log_text(self, namespace: str, pod: str, container: str, restart: int | None = None) -> str:
        """stdout and stderr of a container instance; "" when it has none (yet)."""
        path = self.log_path(namespace, pod, container, restart)
        return path.read_text(errors="replace") if path else ""
