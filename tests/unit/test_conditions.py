from __future__ import annotations

from celeriac.conditions import get_condition, set_condition


def test_new_condition_is_added() -> None:
    conds = set_condition(None, "Ready", "False", "Pending", "waiting", 3, "t1")
    assert conds == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Pending",
            "message": "waiting",
            "lastTransitionTime": "t1",
            "observedGeneration": 3,
        }
    ]


def test_transition_time_moves_only_when_status_flips() -> None:
    conds = set_condition(None, "Ready", "False", "A", "", 1, "t1")
    same = set_condition(conds, "Ready", "False", "B", "other", 2, "t2")
    assert get_condition(same, "Ready") == {
        "type": "Ready",
        "status": "False",
        "reason": "B",
        "message": "other",
        "lastTransitionTime": "t1",
        "observedGeneration": 2,
    }
    flipped = set_condition(same, "Ready", "True", "Up", "", 2, "t3")
    assert get_condition(flipped, "Ready")["lastTransitionTime"] == "t3"  # type: ignore[index]


def test_other_conditions_are_kept_in_order() -> None:
    conds = set_condition(None, "Ready", "False", "A", "", 1, "t1")
    conds = set_condition(conds, "Degraded", "True", "B", "", 1, "t1")
    conds = set_condition(conds, "Ready", "True", "C", "", 1, "t2")
    assert [c["type"] for c in conds] == ["Ready", "Degraded"]
    assert get_condition(conds, "Progressing") is None
