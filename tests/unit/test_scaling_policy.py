"""The scaling policy on a simulated clock: no sleeping, every step explicit."""

from __future__ import annotations

from dataclasses import dataclass, field

from celeriac.api.pool import Autoscaling, ScalingRules
from celeriac.scaling.counts import QueueCounts
from celeriac.scaling.policy import Decision, History, Settings, decide, settings

IDLE = QueueCounts()


def waiting(n: int, running: int = 0, reserved: int = 0, eta: int = 0) -> QueueCounts:
    return QueueCounts(waiting=n, reserved=reserved, eta=eta, running=running)


@dataclass
class Sim:
    """A pool whose replicas follow every decision, polled every `dt` seconds."""

    s: Settings
    replicas: int
    now: float = 1000.0
    history: History = field(default_factory=History)

    def step(self, load: QueueCounts | None, busy: int = 0, dt: float = 5.0) -> Decision:
        self.now += dt
        d = decide(self.s, self.replicas, load, busy, self.history, self.now)
        self.replicas, self.history = d.replicas, d.history
        return d

    def run(self, load: QueueCounts | None, seconds: float, busy: int = 0) -> list[int]:
        """Replicas after each poll of `seconds` at 5 s."""
        return [self.step(load, busy).replicas for _ in range(int(seconds // 5))]

    def settle(self, load: QueueCounts) -> None:
        """Cover the scale-down window so later steps are not held by a fresh start."""
        self.run(load, self.s.down_stabilization + 5)


def test_burst_scales_up_at_once() -> None:
    sim = Sim(Settings(max_replicas=20, target_per_replica=4), replicas=1)
    d = sim.step(waiting(30, running=3, reserved=4))
    assert d.replicas == 10  # ceil(37 / 4)
    assert "backlog 37 (waiting 30, reserved 4, running 3)" in d.reason


def test_recommendation_is_clamped_to_max_and_min() -> None:
    sim = Sim(Settings(min_replicas=2, max_replicas=20, target_per_replica=1), replicas=3)
    assert sim.step(waiting(1000)).replicas == 20
    sim = Sim(Settings(min_replicas=2, max_replicas=20, idle_seconds_before_zero=0), replicas=0)
    assert sim.step(IDLE).replicas == 2


def test_eta_tasks_are_not_backlog() -> None:
    sim = Sim(Settings(target_per_replica=1), replicas=1)
    assert sim.step(waiting(2, eta=50)).replicas == 2


def test_scale_up_is_bounded_by_max_step() -> None:
    sim = Sim(Settings(max_replicas=20, target_per_replica=1, up_max_step=3), replicas=1)
    assert sim.run(waiting(10), 20) == [4, 7, 10, 10]
    assert "scaleUp.maxStep 3" in Sim(sim.s, replicas=1).step(waiting(10)).reason


def test_scale_up_stabilization_takes_the_lowest_recommendation() -> None:
    sim = Sim(Settings(target_per_replica=1, up_stabilization=10), replicas=2)
    assert sim.step(waiting(2)).replicas == 2
    assert sim.step(waiting(6)).replicas == 2  # 2 is still in the window
    assert sim.step(waiting(8)).replicas == 2
    assert sim.step(waiting(8)).replicas == 6  # the 2 left the window; 6 is the lowest
    assert sim.step(waiting(8)).replicas == 8


def test_scale_down_waits_for_the_stabilization_window() -> None:
    sim = Sim(Settings(target_per_replica=1, max_replicas=20), replicas=1)
    sim.settle(waiting(10))
    assert sim.replicas == 10
    # The backlog falls to 2: nothing happens while the last 10 is in the 60 s window.
    assert sim.run(waiting(2), 60) == [10] * 12
    assert "scale-down waits for 60s" in sim.step(waiting(2), dt=0).reason
    assert sim.step(waiting(2)).replicas == 2


def test_highest_recommendation_in_the_window_wins() -> None:
    sim = Sim(Settings(target_per_replica=1, max_replicas=20), replicas=1)
    sim.settle(waiting(10))
    sim.run(waiting(2), 30)
    sim.step(waiting(6))  # a spike halfway through the window
    # The last 10 leaves the window after 5 more polls, the spike 7 polls later.
    assert sim.run(waiting(2), 65) == [10] * 5 + [6] * 7 + [2]


def test_a_fresh_start_does_not_scale_down_before_a_whole_window() -> None:
    sim = Sim(Settings(target_per_replica=1, max_replicas=20), replicas=10)
    assert sim.run(waiting(3), 60) == [10] * 12
    assert sim.step(waiting(3)).replicas == 3


def test_scale_down_is_bounded_by_max_step() -> None:
    sim = Sim(Settings(target_per_replica=1, max_replicas=20, down_max_step=2), replicas=1)
    sim.settle(waiting(10))
    assert sim.run(waiting(1), 60) == [10] * 12
    assert sim.run(waiting(1), 25) == [8, 6, 4, 2, 1]


def test_never_below_the_busy_workers() -> None:
    sim = Sim(Settings(target_per_replica=1, max_replicas=20), replicas=1)
    sim.settle(waiting(10))
    d = sim.step(waiting(0, running=1), busy=4, dt=65)
    assert d.recommendation == 1
    assert d.replicas == 4
    assert "keeping 4 busy workers" in d.reason
    # Busy workers never make it scale up.
    assert sim.step(waiting(0, running=1), busy=9).replicas == 4


def test_idle_window_before_zero() -> None:
    sim = Sim(Settings(target_per_replica=1, idle_seconds_before_zero=120), replicas=1)
    sim.settle(waiting(1))
    # Polls over 115 s all idle: still one replica; one running task restarts the window.
    assert sim.run(IDLE, 120) == [1] * 24
    assert sim.step(waiting(0, running=1)).replicas == 1
    assert sim.run(IDLE, 120) == [1] * 24
    assert "idle for 115s of 120s before zero" in sim.step(IDLE, dt=0).reason
    d = sim.step(IDLE)
    assert d.replicas == 0
    assert "scaling to zero" in d.reason


def test_reserved_tasks_are_not_idle() -> None:
    sim = Sim(Settings(target_per_replica=4, idle_seconds_before_zero=0), replicas=1)
    assert sim.step(waiting(0, reserved=1)).replicas == 1
    assert sim.step(IDLE).replicas == 0


def test_held_eta_tasks_keep_one_worker() -> None:
    sim = Sim(Settings(target_per_replica=1, idle_seconds_before_zero=0), replicas=1)
    d = sim.step(waiting(0, eta=3))
    assert d.replicas == 1
    assert "3 ETA tasks" in d.reason
    assert sim.step(IDLE).replicas == 0


def test_activation_threshold_from_zero() -> None:
    sim = Sim(Settings(target_per_replica=4, activation_threshold=5), replicas=0)
    d = sim.step(waiting(5))
    assert d.replicas == 0
    assert "activation threshold 5" in d.reason
    assert sim.step(waiting(6)).replicas == 2
    # Once running, a backlog at or under the threshold keeps the workers.
    assert sim.step(waiting(3)).replicas == 2


def test_zero_threshold_wakes_on_the_first_task() -> None:
    sim = Sim(Settings(target_per_replica=4), replicas=0)
    assert sim.step(IDLE).replicas == 0
    assert sim.step(waiting(1)).replicas == 1


def test_blind_holds_and_restarts_the_windows() -> None:
    sim = Sim(Settings(target_per_replica=1, max_replicas=20, idle_seconds_before_zero=90), 1)
    sim.settle(waiting(5))
    sim.run(IDLE, 55)
    d = sim.step(None)
    assert (d.replicas, d.history) == (5, History())
    assert "broker unreachable" in d.reason
    # After the broker is back, scale-down and the idle window start over.
    assert sim.run(IDLE, 60) == [5] * 12
    assert sim.run(IDLE, 30) == [1] * 6
    assert sim.step(IDLE).replicas == 0


def test_blind_never_scales_down_but_respects_min() -> None:
    sim = Sim(Settings(min_replicas=3, max_replicas=20), replicas=7)
    assert sim.run(None, 600) == [7] * 120
    assert Sim(sim.s, replicas=1).step(None).replicas == 3


def test_settings_from_the_api() -> None:
    s = settings(Autoscaling(max_replicas=30), concurrency=8)
    assert s == Settings(
        min_replicas=0,
        max_replicas=30,
        target_per_replica=8,
        activation_threshold=0,
        idle_seconds_before_zero=120,
        up_stabilization=0,
        up_max_step=None,
        down_stabilization=60,
        down_max_step=None,
    )
    s = settings(
        Autoscaling(
            target_per_replica=3,
            scale_up=ScalingRules(max_step=2),
            scale_down=ScalingRules(stabilization_seconds=300, max_step=1),
        ),
        concurrency=8,
    )
    assert (s.target_per_replica, s.up_max_step, s.down_stabilization, s.down_max_step) == (
        3,
        2,
        300,
        1,
    )
    assert s.up_stabilization == 0
