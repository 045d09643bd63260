from __future__ import annotations

from celeriac.observe.topology import (
    Replica,
    Topology,
    parse_event,
    parse_replica,
    stale_entries,
)


def test_switch_master_event() -> None:
    e = parse_event(
        "+switch-master",
        "ns.b b-redis-0.h.ns.svc.cluster.local 6379 b-redis-1.h.ns.svc.cluster.local 6379",
    )
    assert (e.kind, e.master_name, e.new_master) == (
        "+switch-master",
        "ns.b",
        "b-redis-1.h.ns.svc.cluster.local",
    )


def test_instance_events_name_their_master() -> None:
    e = parse_event("+sdown", "slave r1:6379 r1 6379 @ ns.b m 6379")
    assert (e.kind, e.master_name, e.new_master) == ("+sdown", "ns.b", None)
    assert parse_event("+odown", "master ns.b m 6379 #quorum 2/2").master_name == "ns.b"
    assert parse_event("+x", "garbage").master_name is None


def test_parse_replica() -> None:
    raw = {
        "ip": "r1",
        "master-link-status": "ok",
        "slave-repl-offset": "120",
        "is_sdown": False,
        "is_disconnected": False,
    }
    assert parse_replica(raw) == Replica("r1", True, 120, False)
    raw |= {"master-link-status": "err", "is_sdown": True}
    assert parse_replica(raw) == Replica("r1", False, 120, True)


def test_stale_entries_and_lag() -> None:
    t = Topology(
        "m",
        200,
        (Replica("r1", True, 150, False), Replica("r9", False, 0, True)),
        ("s1", "s7"),
        "s0:26379",
        True,
        "ok",
    )
    assert stale_entries(t, ["m", "r1"], ["s0", "s1"]) == {"r9", "s7"}
    assert stale_entries(t, ["m", "r1", "r9"], ["s0", "s1", "s7"]) == set()
    assert t.status_replicas(lambda h: h.upper()) == [
        {"pod": "R1", "address": "r1", "linkUp": True, "offsetLag": 50},
        {"pod": "R9", "address": "r9", "linkUp": False, "offsetLag": 200},
    ]
