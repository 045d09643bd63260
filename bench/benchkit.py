"""What the benchmarks share: the operator as a separate process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def running_operator(kubeconfig: Path, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`celeriac run --no-local ARGS` against `kubeconfig`, running once it says so;
    stopped with SIGTERM on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "celeriac.cli", "run", "--no-local", *args],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        while "operator running" not in log.read_text():
            if proc.poll() is not None:
                raise RuntimeError(f"the operator exited: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
