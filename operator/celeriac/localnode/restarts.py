"""Restart policy and crash-loop backoff of the local node (development and tests only).

Like the kubelet: the first restart is immediate, then the container waits
base, 2*base, 4*base ... (capped) after each exit, measured from the exit; a
container that ran longer than twice the cap starts over without delay.
The kubelet's 10 s base and 300 s cap can be overridden with
CELERIAC_LOCALNODE_BACKOFF_BASE and CELERIAC_LOCALNODE_BACKOFF_CAP (seconds).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV_BASE = "CELERIAC_LOCALNODE_BACKOFF_BASE"
ENV_CAP = "CELERIAC_LOCALNODE_BACKOFF_CAP"


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether a container that exited with exit_code starts again under policy."""
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True  # Always, the default


@dataclass(frozen=True)
class Backoff:
    base: float = 10.0
    cap: float = 300.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Backoff:
        base = float(environ.get(ENV_BASE) or 10)
        return cls(base=base, cap=float(environ.get(ENV_CAP) or max(base, 300.0)))

    def delay(self, step: int) -> float:
        """Seconds to wait before the restart after `step` earlier back-to-back restarts."""
        if step <= 0:
            return 0.0
        return float(min(self.cap, self.base * 2 ** (step - 1)))

    def after_exit(self, step: int, ran_for: float) -> tuple[float, int]:
        """(delay before the restart, the next step) for a container that ran ran_for s."""
        if ran_for > 2 * self.cap:
            step = 0  # it ran long enough: start over without delay
        return self.delay(step), step + 1
