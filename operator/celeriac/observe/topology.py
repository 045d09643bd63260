"""A broker's topology as the Sentinels see it, and what to do about stale
entries. Parsing and decisions are pure; `read_topology` does the I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..render.connection import Connection


@dataclass(frozen=True)
class Replica:
    host: str
    link_up: bool
    offset: int
    down: bool


@dataclass(frozen=True)
class Topology:
    master: str
    master_offset: int | None
    replicas: tuple[Replica, ...]
    sentinels: tuple[str, ...]  # the other Sentinels the answering one knows
    answering: str  # host:port of the Sentinel that answered
    quorum_ok: bool
    quorum_message: str

    def status_replicas(self, pod_of: Any) -> list[dict[str, Any]]:
        out = []
        for r in sorted(self.replicas, key=lambda r: r.host):
            entry: dict[str, Any] = {"pod": pod_of(r.host), "address": r.host, "linkUp": r.link_up}
            if self.master_offset is not None:
                entry["offsetLag"] = max(0, self.master_offset - r.offset)
            out.append(entry)
        return out


def parse_replica(raw: Mapping[str, Any]) -> Replica:
    return Replica(
        host=str(raw.get("ip")),
        link_up=raw.get("master-link-status") == "ok" and not raw.get("is_disconnected", False),
        offset=int(raw.get("slave-repl-offset") or 0),
        down=bool(raw.get("is_sdown") or raw.get("is_odown")),
    )


def stale_entries(
    topology: Topology, redis_hosts: Iterable[str], sentinel_hosts: Iterable[str]
) -> set[str]:
    """Replicas or Sentinels the answering Sentinel remembers that are not pods of
    the broker any more (scale-down, replaced pods): SENTINEL RESET forgets them."""
    redis_ok, sentinel_ok = set(redis_hosts), set(sentinel_hosts)
    stale = {r.host for r in topology.replicas if r.host not in redis_ok}
    stale |= {s for s in topology.sentinels if s not in sentinel_ok}
    return stale


def _client(hostport: str, password: str | None, timeout: float = 1.0) -> redis.Redis:
    host, port = hostport.rsplit(":", 1)
    return redis.Redis(
        host=host,
        port=int(port),
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        # One try: a Sentinel that does not answer is skipped, the next one asked;
        # redis-py's default retries would hold a reconcile for seconds per host.
        retry=Retry(NoBackoff(), 0),
    )


def read_sentinel(hostport: str, password: str | None, name: str) -> Topology | None:
    """One Sentinel's view of the master `name`; None when it does not answer."""
    try:
        with _client(hostport, password) as s:
            addr = s.sentinel_get_master_addr_by_name(name)
            if not addr:
                return None
            replicas = tuple(parse_replica(r) for r in s.sentinel_slaves(name))
            sentinels = tuple(str(x.get("ip")) for x in s.sentinel_sentinels(name))
            try:
                # Raw reply: redis-py's sentinel_ckquorum expects a bare "OK" and so
                # reports the real "OK 3 usable Sentinels..." as failure.
                reply = str(s.execute_command("SENTINEL", "CKQUORUM", name))
                quorum_ok, quorum_message = reply.startswith("OK"), reply
            except redis.ResponseError as err:
                quorum_ok, quorum_message = False, str(err)
    except (redis.RedisError, OSError):
        return None
    master = str(addr[0])
    return Topology(
        master,
        _master_offset(f"{master}:{addr[1]}", password),
        replicas,
        sentinels,
        hostport,
        quorum_ok,
        quorum_message,
    )


def read_topology(conn: Connection, password: str | None) -> Topology | None:
    """Ask the Sentinels in turn; None when none answers about our master."""
    for hostport in conn.hosts:
        topology = read_sentinel(hostport, password, conn.master_name or "")
        if topology:
            return topology
    return None


def _master_offset(hostport: str, password: str | None) -> int | None:
    try:
        with _client(hostport, password) as m:
            info = m.info("replication")
        return int(info.get("master_repl_offset", 0))
    except (redis.RedisError, OSError):
        return None


def sentinel_reset(hostport: str, password: str | None, master_name: str) -> None:
    with _client(hostport, password, timeout=3) as s:
        s.sentinel_reset(master_name)


# --- events ----------------------------------------------------------------

WATCHED_EVENTS = (
    "+switch-master",
    "+sdown",
    "-sdown",
    "+odown",
    "-odown",
    "+failover-end",
    "-failover-abort-no-good-slave",
    "+try-failover",
)


@dataclass(frozen=True)
class SentinelEvent:
    kind: str
    master_name: str | None
    detail: str
    new_master: str | None = None  # for +switch-master


def parse_event(channel: str, data: str) -> SentinelEvent:
    """Sentinel pub/sub messages: `+switch-master <name> <old-host> <old-port>
    <new-host> <new-port>`; most others `<instance-type> <name> <host> <port> @
    <master-name> <master-host> <master-port>`."""
    words = data.split()
    if channel == "+switch-master" and len(words) >= 5:
        return SentinelEvent(channel, words[0], data, new_master=words[3])
    if "@" in words:
        at = words.index("@")
        return SentinelEvent(channel, words[at + 1] if len(words) > at + 1 else None, data)
    if len(words) >= 2 and words[0] == "master":
        return SentinelEvent(channel, words[1], data)
    return SentinelEvent(channel, None, data)
