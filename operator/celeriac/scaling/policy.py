"""The scaling decision: pure, driven by a clock the caller passes in.

    recommendation = ceil((waiting + reserved + running) / targetPerReplica)
                     clamped to [minReplicas, maxReplicas]

- Up: the lowest recommendation of the scale-up window (default 0 s: at once),
  at most scaleUp.maxStep replicas more.
- Down: the highest recommendation of the scale-down window (default 60 s),
  and only once measurements have covered the whole window (after a start or a
  blind spell), at most scaleDown.maxStep fewer, never fewer than the busy
  workers (the caller's count of pods executing tasks, plus unknown pods if it
  wants to be safe).
- To zero: only after every measurement for idleSecondsBeforeZero showed
  nothing waiting, reserved or running, and no worker holds ETA tasks (they
  would go back to the queue and wake the pool at once). The idle window is the
  stabilization of this step, so the scale-down window does not apply again.
- From zero: only when the backlog exceeds activationThreshold.
- Blind (broker unreachable): hold the current replicas (raise to min only) and
  forget the history, so scale-down and the idle window start over.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from ..api.pool import Autoscaling
from .counts import QueueCounts

DEFAULT_UP_STABILIZATION = 0.0
DEFAULT_DOWN_STABILIZATION = 60.0


@dataclass(frozen=True, slots=True)
class Settings:
    min_replicas: int = 0
    max_replicas: int = 10
    target_per_replica: int = 1
    activation_threshold: int = 0
    idle_seconds_before_zero: float = 120.0
    up_stabilization: float = DEFAULT_UP_STABILIZATION
    up_max_step: int | None = None
    down_stabilization: float = DEFAULT_DOWN_STABILIZATION
    down_max_step: int | None = None


def settings(spec: Autoscaling, concurrency: int) -> Settings:
    """From the WorkerPool API; targetPerReplica defaults to the concurrency."""
    up, down = spec.scale_up, spec.scale_down
    return Settings(
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        target_per_replica=spec.target_per_replica or max(1, concurrency),
        activation_threshold=spec.activation_threshold,
        idle_seconds_before_zero=spec.idle_seconds_before_zero,
        up_stabilization=_or(up.stabilization_seconds if up else None, DEFAULT_UP_STABILIZATION),
        up_max_step=up.max_step if up else None,
        down_stabilization=_or(
            down.stabilization_seconds if down else None, DEFAULT_DOWN_STABILIZATION
        ),
        down_max_step=down.max_step if down else None,
    )


def _or(value: int | None, default: float) -> float:
    return float(value) if value is not None else default


@dataclass(frozen=True, slots=True)
class History:
    """What earlier decisions saw; keep one per pool and pass the returned one back."""

    samples: tuple[tuple[float, int], ...] = ()  # (time, recommendation), oldest first
    observed_since: float | None = None  # start of uninterrupted measurements
    idle_since: float | None = None  # start of uninterrupted idleness


@dataclass(frozen=True, slots=True)
class Decision:
    replicas: int
    reason: str
    history: History
    recommendation: int  # before stabilization, step limits and the busy floor


def _describe(load: QueueCounts, target: int) -> str:
    eta = f", {load.eta} eta" if load.eta else ""
    return (
        f"backlog {load.backlog} (waiting {load.waiting}, reserved {load.reserved}, "
        f"running {load.running}{eta}) at {target} per replica"
    )


def _recommend(
    s: Settings, current: int, load: QueueCounts, idle_for: float | None
) -> tuple[int, str]:
    backlog = load.backlog
    if current == 0 and backlog <= s.activation_threshold:
        return 0, f"at zero: backlog {backlog} <= activation threshold {s.activation_threshold}"
    want = ceil(backlog / s.target_per_replica)
    if want == 0 and current > 0:
        if load.eta:
            return 1, f"idle, but workers hold {load.eta} ETA tasks: keeping one"
        if idle_for is None or idle_for < s.idle_seconds_before_zero:
            waited = 0.0 if idle_for is None else idle_for
            return 1, f"idle for {waited:.0f}s of {s.idle_seconds_before_zero:.0f}s before zero"
        return 0, f"idle for {s.idle_seconds_before_zero:.0f}s: scaling to zero"
    return want, f"{_describe(load, s.target_per_replica)} wants {want}"


def _clamp(n: int, s: Settings) -> int:
    return max(s.min_replicas, min(s.max_replicas, n))


def decide(
    s: Settings,
    current: int,
    load: QueueCounts | None,
    busy: int,
    history: History,
    now: float,
) -> Decision:
    """Replicas for a pool that has `current` now; `load` None means the broker
    could not be measured."""
    if load is None:
        held = max(current, s.min_replicas)
        return Decision(held, f"broker unreachable: holding {held}", History(), held)

    idle_since = None
    if load.backlog == 0:
        idle_since = history.idle_since if history.idle_since is not None else now
    observed_since = history.observed_since if history.observed_since is not None else now
    rec, reason = _recommend(s, current, load, None if idle_since is None else now - idle_since)
    rec = _clamp(rec, s)

    horizon = now - max(s.up_stabilization, s.down_stabilization)
    samples = (*(x for x in history.samples if x[0] >= horizon), (now, rec))
    new_history = History(samples, observed_since, idle_since)

    up = min(r for t, r in samples if t >= now - s.up_stabilization)
    down = max(r for t, r in samples if t >= now - s.down_stabilization)
    if now - observed_since < s.down_stabilization:
        down = max(down, current)  # the window is not covered yet
    if rec == 0:
        down = 0  # the idle window was the stabilization
    desired = current
    if up > current:
        desired = up
        if up < rec:
            reason += f"; lowest over {s.up_stabilization:.0f}s is {up}"
    elif rec > current:
        reason += f"; scale-up waits: lowest over {s.up_stabilization:.0f}s is {up}"
    elif down < current:
        desired = down
        if down > rec:
            reason += f"; highest over {s.down_stabilization:.0f}s is {down}"
    elif rec < current:
        reason += f"; scale-down waits for {s.down_stabilization:.0f}s of lower recommendations"

    if desired > current and s.up_max_step and desired - current > s.up_max_step:
        desired = current + s.up_max_step
        reason += f"; scaleUp.maxStep {s.up_max_step}"
    if desired < current and s.down_max_step and current - desired > s.down_max_step:
        desired = current - s.down_max_step
        reason += f"; scaleDown.maxStep {s.down_max_step}"
    if desired < current and busy > desired:
        desired = min(current, busy)
        reason += f"; keeping {busy} busy workers"
    final = _clamp(desired, s)
    if final != desired:
        reason += f"; limited to [{s.min_replicas}, {s.max_replicas}]"
    return Decision(final, reason, new_history, rec)
