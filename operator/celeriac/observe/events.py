"""Follow a Sentinel group's pub/sub events (`+switch-master`, `+odown`, ...), so
the operator reacts to a failover within a second instead of at the next poll."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import redis

from ..render.connection import Connection
from .topology import WATCHED_EVENTS, SentinelEvent, parse_event

log = logging.getLogger("celeriac.sentinel-events")
REPEAT_SECONDS = 30.0  # the same announcement from another Sentinel within this is a repeat


def follow(
    conn: Connection,
    password: Callable[[], str | None],
    stopped: Callable[[], bool],
    on_event: Callable[[SentinelEvent], None],
    idle: Callable[[float], None],
) -> None:
    """Subscribe to EVERY Sentinel until `stopped()`: they announce +switch-master
    up to seconds apart (the failover's leader only after reconfiguring the
    replicas), so the first to tell wins; its repeats from the others are dropped.
    `on_event` runs on this thread only. Events of other master names are dropped."""
    inbox: queue.Queue[tuple[str, str]] = queue.Queue()
    for hostport in conn.hosts:
        threading.Thread(
            target=_subscribe,
            args=(hostport, password, stopped, inbox.put, idle),
            name=f"sentinel-events-{hostport}",
            daemon=True,
        ).start()
    seen: dict[tuple[str, str], float] = {}
    while not stopped():
        try:
            channel, data = inbox.get(timeout=0.5)
        except queue.Empty:
            continue
        now = time.monotonic()
        if now - seen.get((channel, data), -REPEAT_SECONDS) < REPEAT_SECONDS:
            continue
        seen = {k: t for k, t in seen.items() if now - t < REPEAT_SECONDS}
        seen[(channel, data)] = now
        event = parse_event(channel, data)
        if event.master_name == conn.master_name:
            on_event(event)


def _subscribe(
    hostport: str,
    password: Callable[[], str | None],
    stopped: Callable[[], bool],
    put: Callable[[tuple[str, str]], None],
    idle: Callable[[float], None],
) -> None:
    """One Sentinel's events, resubscribing when it goes away, until `stopped()`."""
    host, port = hostport.rsplit(":", 1)
    while not stopped():
        try:
            client = redis.Redis(
                host=host,
                port=int(port),
                password=password(),
                socket_connect_timeout=1,
                socket_timeout=5,
                decode_responses=True,
            )
            with client.pubsub(  # type: ignore[no-untyped-call]
                ignore_subscribe_messages=True
            ) as sub:
                sub.subscribe(*WATCHED_EVENTS)
                while not stopped():
                    message = sub.get_message(timeout=0.5)
                    if message and message.get("type") == "message":
                        put((str(message["channel"]), str(message["data"])))
        except (redis.RedisError, OSError) as err:
            log.debug("sentinel %s: %s", hostport, type(err).__name__)
            idle(0.5)
