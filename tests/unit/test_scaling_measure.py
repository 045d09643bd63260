"""The measurement's plan and counting formula on hand-built broker replies."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from redis.exceptions import ResponseError

from celeriac.scaling import reporter
from celeriac.scaling.counts import QueueCounts
from celeriac.scaling.keys import KeyOptions
from celeriac.scaling.measure import PoolQuery, count_unacked, eta_timestamp, evaluate, plan

NOW = 1_700_000_000.0
FUTURE, PAST = "2023-11-14T22:30:00+00:00", "2023-11-14T21:16:40+00:00"  # NOW + 1000 s / - 3400 s


def unacked_entry(rk: str, eta: str | None = None) -> bytes:
    """An `unacked` hash value as kombu writes it: [payload, exchange, routing_key]."""
    payload = {
        "body": "W1tdLCB7fSwge31d",
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": "t", "id": "x", "eta": eta, "retries": 0},
        "properties": {"priority": 0, "delivery_info": {"exchange": rk, "routing_key": rk}},
    }
    return json.dumps([payload, rk, rk]).encode()


def report(**queues: tuple[int, int, int, int]) -> bytes:
    return reporter.encode({rk: list(c) for rk, c in queues.items()}, NOW).encode()


def replies_for(p: Any, values: dict[tuple[str, ...], Any]) -> list[Any]:
    """Replies in plan order; LLEN defaults to 0, HVALS to empty, HLEN to 0."""
    defaults = {"LLEN": 0, "HVALS": [], "HLEN": 0, "MGET": None}
    return [values.get(c, defaults[c[0]]) for c in p.commands]


def test_eta_header() -> None:
    assert eta_timestamp(FUTURE) == NOW + 1000
    assert eta_timestamp("2023-11-14T22:30:00") == NOW + 1000  # naive: UTC
    assert eta_timestamp("2023-11-14T23:30:00+01:00") == NOW + 1000
    assert eta_timestamp(None) is None
    assert eta_timestamp("soon") is None


def test_count_unacked_splits_future_eta() -> None:
    values = [
        unacked_entry("a"),
        unacked_entry("a", FUTURE),
        unacked_entry("a", PAST),
        unacked_entry("b", FUTURE),
        b"not json",
        b'{"not": "a list"}',
    ]
    assert count_unacked(values, NOW) == {"a": [2, 1], "b": [0, 1]}


def test_plan_reads_each_key_once() -> None:
    prefixed = KeyOptions(global_keyprefix="x:")
    pools = [
        PoolQuery("ns", "p1", ("work", "shared"), pods=("p1-a", "p1-b")),
        PoolQuery("ns", "p2", ("shared",), pods=("p2-a",)),
        PoolQuery("ns", "p3", ("work",), keys=prefixed, runtime="pyworkflow", pods=("p3-a",)),
    ]
    p = plan(pools)
    names = [c[0] for c in p.commands]
    assert names.count("LLEN") == 12  # work, shared and x:work, 4 lists each
    assert [c for c in p.commands if c[0] == "HVALS"] == [
        ("HVALS", "unacked"),
        ("HVALS", "x:unacked"),
    ]
    assert [c for c in p.commands if c[0] == "HLEN"] == [("HLEN", "pyworkflow:inflight:p3-a")]
    assert p.commands[-1] == (
        "MGET",
        "celeriac:busy:ns/p1/p1-a",
        "celeriac:busy:ns/p1/p1-b",
        "celeriac:busy:ns/p2/p2-a",
        "x:celeriac:busy:ns/p3/p3-a",
    )
    assert names.count("MGET") == 1
    assert plan([PoolQuery("ns", "p", ("q",))]).mget == -1  # no pods, no MGET


def test_formula_without_acks_late() -> None:
    # 1 running (acknowledged at start, so not in unacked), 3 prefetched, 2 future ETA,
    # 1 ETA that is due (counts as reserved), 5 + 2 waiting in two priority lists.
    q = PoolQuery("ns", "p", ("work",), pods=("a", "b"))
    p = plan([q])
    held = [unacked_entry("work")] * 3 + [unacked_entry("work", FUTURE)] * 2
    held.append(unacked_entry("work", PAST))
    replies = replies_for(
        p,
        {
            ("LLEN", "work"): 5,
            ("LLEN", "work\x06\x169"): 2,
            ("HVALS", "unacked"): held,
            p.commands[p.mget]: [report(work=(1, 0, 3, 2)), None],
        },
    )
    m = evaluate(p, replies, NOW)["ns/p"]
    assert m.ok
    assert m.queues == {"work": QueueCounts(waiting=7, reserved=4, eta=2, running=1)}
    assert m.total.backlog == 12
    assert m.pods == {"a": 1, "b": None}
    assert (m.busy_pods, m.unknown_pods) == (1, 1)
    assert m.status_queues() == [
        {"name": "work", "waiting": 7, "reserved": 4, "eta": 2, "running": 1}
    ]


def test_formula_with_acks_late_counts_running_once() -> None:
    # Two pools on one unacked hash; pool a runs 2 unacknowledged tasks of "work",
    # pool b (another queue on the same hash) runs 1; 3 more are prefetched.
    pa = PoolQuery("ns", "a", ("work",), pods=("a-1",))
    pb = PoolQuery("ns", "b", ("other",), pods=("b-1",))
    p = plan([pa, pb])
    held = [unacked_entry("work")] * 5 + [unacked_entry("other")]
    replies = replies_for(
        p,
        {
            ("HVALS", "unacked"): held,
            p.commands[p.mget]: [report(work=(2, 2, 3, 0)), report(other=(1, 1, 0, 0))],
        },
    )
    out = evaluate(p, replies, NOW)
    assert out["ns/a"].queues["work"] == QueueCounts(reserved=3, running=2)
    assert out["ns/b"].queues["other"] == QueueCounts(reserved=0, running=1)
    assert out["ns/a"].pods == {"a-1": 2}


def test_pod_reports_that_lag_never_go_negative() -> None:
    q = PoolQuery("ns", "p", ("work",), pods=("a",))
    p = plan([q])
    replies = replies_for(p, {p.commands[p.mget]: [report(work=(1, 1, 0, 0))]})
    assert evaluate(p, replies, NOW)["ns/p"].queues["work"] == QueueCounts(running=1)


def test_pyworkflow_inflight_hash_marks_pods_busy() -> None:
    q = PoolQuery("ns", "p", ("steps",), runtime="pyworkflow", pods=("a", "b", "c"))
    p = plan([q])
    replies = replies_for(
        p,
        {
            ("HLEN", "pyworkflow:inflight:a"): 2,
            ("HLEN", "pyworkflow:inflight:c"): 1,
            p.commands[p.mget]: [None, None, report(steps=(3, 3, 0, 0))],
        },
    )
    assert evaluate(p, replies, NOW)["ns/p"].pods == {"a": 2, "b": None, "c": 3}


def test_foreign_or_old_reports_mean_unknown() -> None:
    q = PoolQuery("ns", "p", ("work",), pods=("a", "b"))
    p = plan([q])
    replies = replies_for(p, {p.commands[p.mget]: [b"busy", b'{"v": 0, "q": {}}']})
    assert evaluate(p, replies, NOW)["ns/p"].pods == {"a": None, "b": None}


def test_a_failed_command_is_an_error_of_its_pools_only() -> None:
    good = PoolQuery("ns", "good", ("fine",))
    bad = PoolQuery("ns", "bad", ("string-key",))
    p = plan([good, bad])
    wrong = ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
    out = evaluate(p, replies_for(p, {("LLEN", "string-key\x06\x163"): wrong}), NOW)
    assert out["ns/good"].ok and out["ns/good"].queues["fine"] == QueueCounts()
    assert out["ns/bad"].error and "WRONGTYPE" in out["ns/bad"].error
    assert out["ns/bad"].queues == {}
    # The shared unacked hash failing blinds both.
    out = evaluate(p, replies_for(p, {("HVALS", "unacked"): wrong}), NOW)
    assert not out["ns/good"].ok and not out["ns/bad"].ok


# -- the reporter (shipped into worker pods) ---------------------------------------


def request(rk: str, acknowledged: bool = False) -> Any:
    return SimpleNamespace(delivery_info={"routing_key": rk}, acknowledged=acknowledged)


def test_snapshot_counts_per_routing_key() -> None:
    running_late, running_early = request("a"), request("a", acknowledged=True)
    prefetched = [request("a"), request("b")]
    eta = request("b")
    reserved = [running_late, running_early, *prefetched]  # reserved includes active
    counts = reporter.snapshot([running_late, running_early], reserved, [eta])
    assert counts == {"a": [2, 1, 1, 0], "b": [0, 0, 1, 1]}
    assert reporter.decode(reporter.encode(counts, NOW)) == {"a": (2, 1, 1, 0), "b": (0, 0, 1, 1)}


def test_snapshot_survives_a_set_changing_while_read() -> None:
    class Flaky:
        calls = 0

        def __iter__(self) -> Any:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("Set changed size during iteration")
            return iter([request("a")])

    assert reporter.snapshot(Flaky(), [], []) == {"a": [1, 1, 0, 0]}


def test_reporter_rejects_a_ttl_it_cannot_keep() -> None:
    with pytest.raises(ValueError):
        reporter.Reporter(app=None, key="k", interval=5, ttl=5)


def test_reporter_imports_only_what_worker_images_have() -> None:
    source = Path(reporter.__file__).read_text()
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative imports break the copy shipped into pods"
            roots.add((node.module or "").split(".")[0])
    allowed = set(sys.stdlib_module_names) | {"celery", "kombu", "redis"}
    assert roots <= allowed, roots - allowed
