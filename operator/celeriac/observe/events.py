"""Follow a Sentinel group's pub/sub events (`+switch-master`, `+odown`, ...), so
the operator reacts to a failover within a second instead of at the next poll."""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from ..render.connection import Connection
from .topology import WATCHED_EVENTS, SentinelEvent, parse_event

log = logging.getLogger("celeriac.sentinel-events")


def follow(
    conn: Connection,
    password: Callable[[], str | None],
    stopped: Callable[[], bool],
    on_event: Callable[[SentinelEvent], None],
    idle: Callable[[float], None],
) -> None:
    """Subscribe to one Sentinel at a time, moving on when it goes away, until
    `stopped()`. Events of other master names are dropped."""
    attempt = 0
    while not stopped():
        hostport = conn.hosts[attempt % len(conn.hosts)]
        attempt += 1
        host, port = hostport.rsplit(":", 1)
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
                        event = parse_event(str(message["channel"]), str(message["data"]))
                        if event.master_name == conn.master_name:
                            on_event(event)
        except (redis.RedisError, OSError) as err:
            log.debug("sentinel %s: %s", hostport, type(err).__name__)
            idle(0.5)
