"""Key names against kombu's own functions (called on plain objects, no broker)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kombu.transport import redis as _kombu_redis

from celeriac.scaling.keys import (
    DEFAULT_PRIORITY_STEPS,
    DEFAULT_SEP,
    KeyOptions,
    busy_key,
    inflight_key,
    queue_lists,
)

kombu_redis: Any = _kombu_redis  # kombu's transport is untyped


def kombu_channel(options: KeyOptions) -> Any:
    """What kombu's Channel._q_for_pri and priority() read, as a plain object."""
    ch = SimpleNamespace(sep=options.sep, priority_steps=list(options.priority_steps))
    ch.priority = lambda n: kombu_redis.Channel.priority(ch, n)
    return ch


def kombu_stored_key(options: KeyOptions, command: str, key: str) -> str:
    """The key kombu's prefixing client sends for `command key` (its mixin, no client)."""
    prefixer = type("Prefixer", (kombu_redis.GlobalKeyPrefixMixin,), {})()
    prefixer.global_keyprefix = options.global_keyprefix
    return str(prefixer._prefix_args([command, key])[1])


def test_defaults_match_kombu() -> None:
    assert kombu_redis.Channel.sep == DEFAULT_SEP
    assert list(DEFAULT_PRIORITY_STEPS) == kombu_redis.PRIORITY_STEPS
    o = KeyOptions()
    assert (o.unacked, o.unacked_index) == (
        kombu_redis.Channel.unacked_key,
        kombu_redis.Channel.unacked_index_key,
    )


def test_default_queue_lists() -> None:
    assert KeyOptions().queue_lists("celery") == (
        "celery",
        "celery\x06\x163",
        "celery\x06\x166",
        "celery\x06\x169",
    )


OPTIONS = [
    KeyOptions(),
    KeyOptions(global_keyprefix="tenant-a:"),
    KeyOptions(sep=":", priority_steps=tuple(range(10))),
    KeyOptions(global_keyprefix="p/", sep="#", priority_steps=(0, 5)),
]


@pytest.mark.parametrize("options", OPTIONS)
def test_priority_lists_match_kombu(options: KeyOptions) -> None:
    ch = kombu_channel(options)
    for priority in range(10):
        kombu_list = kombu_redis.Channel._q_for_pri(ch, "work", priority)
        expected = kombu_stored_key(options, "LPUSH", kombu_list)
        assert options.list_for_priority("work", priority) == expected
    consumed = [
        kombu_stored_key(options, "LLEN", kombu_redis.Channel._q_for_pri(ch, "work", p))
        for p in options.priority_steps
    ]
    assert list(options.queue_lists("work")) == consumed


def test_priorities_are_clamped_like_kombu() -> None:
    o = KeyOptions()
    assert o.list_for_priority("q", -3) == "q"
    assert o.list_for_priority("q", 2) == "q"
    assert o.list_for_priority("q", 5) == "q\x06\x163"
    assert o.list_for_priority("q", 42) == "q\x06\x169"


@pytest.mark.parametrize("options", OPTIONS)
def test_global_keyprefix_applies_to_every_key(options: KeyOptions) -> None:
    assert options.unacked == kombu_stored_key(options, "HSET", "unacked")
    assert options.unacked_index == kombu_stored_key(options, "ZADD", "unacked_index")
    assert options.key("celeriac:busy:x") == kombu_stored_key(options, "SET", "celeriac:busy:x")
    assert all(k.startswith(options.global_keyprefix) for k in options.queue_lists("q"))


def test_from_transport_options() -> None:
    o = KeyOptions.from_transport_options(
        {
            "global_keyprefix": "app:",
            "sep": ":",
            "priority_steps": [0, 5],
            "unacked_key": "held",
            "visibility_timeout": 3600,
            "master_name": "m",
        }
    )
    assert o == KeyOptions("app:", ":", (0, 5), "held", "unacked_index")
    assert o.queue_lists("q") == ("app:q", "app:q:5")
    assert o.unacked == "app:held"
    assert KeyOptions.from_transport_options(None) == KeyOptions()


def test_queue_lists_of_several_queues_are_unique() -> None:
    assert queue_lists(["a", "b", "a"], KeyOptions(priority_steps=(0, 9))) == (
        "a",
        "a\x06\x169",
        "b",
        "b\x06\x169",
    )


def test_worker_keys() -> None:
    assert busy_key("ns", "pool", "pool-7d9f-abcde") == "celeriac:busy:ns/pool/pool-7d9f-abcde"
    assert inflight_key("pool-7d9f-abcde") == "pyworkflow:inflight:pool-7d9f-abcde"
