"""Locating the control-plane binaries built by hack/build-control-plane.sh."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ENV_VAR = "CELERIAC_CONTROL_PLANE_BIN"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


class BinariesNotFoundError(RuntimeError):
    """Neither $CELERIAC_CONTROL_PLANE_BIN nor the build script produced the binaries."""


def missing_binaries(bin_dir: Path) -> list[str]:
    """Names from BINARIES that are absent or not executable in bin_dir."""
    return [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]


def build_script() -> Path:
    # operator/celeriac/localplane/binaries.py -> repo root is three levels above the package dir.
    return Path(__file__).resolve().parents[3] / "hack" / "build-control-plane.sh"


def find_bin_dir() -> Path:
    """Directory holding every binary in BINARIES.

    Uses $CELERIAC_CONTROL_PLANE_BIN when it is complete; otherwise runs the
    repository's build script, which is a no-op when its cache is already filled
    but takes many minutes on a cold cache.
    """
    problems: list[str] = []
    env = os.environ.get(ENV_VAR)
    if env:
        missing = missing_binaries(Path(env))
        if not missing:
            return Path(env)
        problems.append(f"${ENV_VAR}={env} lacks {', '.join(missing)}")

    script = build_script()
    if not script.is_file():
        problems.append(f"{script} does not exist (not running from a source checkout?)")
        raise BinariesNotFoundError("; ".join(problems))
    # stderr passes through so a long cold build shows its progress.
    proc = subprocess.run([str(script)], stdout=subprocess.PIPE, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        problems.append(f"{script} exited with code {proc.returncode}")
        raise BinariesNotFoundError("; ".join(problems))
    bin_dir = Path(lines[-1])
    missing = missing_binaries(bin_dir)
    if missing:
        problems.append(f"{script} printed {bin_dir}, which lacks {', '.join(missing)}")
        raise BinariesNotFoundError("; ".join(problems))
    return bin_dir
