from __future__ import annotations

from celeriac.autoscaler import deletion_costs


def test_idle_pods_are_cheapest_and_busy_ones_cost_by_load() -> None:
    costs = deletion_costs({"idle": 0, "unknown": None, "one": 1, "three": 3})
    assert costs == {"idle": "-100", "unknown": "0", "one": "100", "three": "300"}
    order = sorted(costs, key=lambda pod: int(costs[pod]))
    assert order == ["idle", "unknown", "one", "three"]  # the ReplicaSet deletes in this order
