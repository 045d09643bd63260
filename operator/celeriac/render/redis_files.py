"""redis.conf, sentinel.conf and the pod scripts of a broker. No secret ever lands
here: passwords reach the pods as Secret-backed environment variables and the
start scripts write them into a memory-backed runtime copy of the config."""

from __future__ import annotations

from ..api.broker import RedisSpec, SentinelSpec

REDIS_PORT = 6379
SENTINEL_PORT = 26379
_PERSISTENCE = {
    "none": ['save ""', "appendonly no"],
    "rdb": ["save 900 1 300 10 60 10000", "appendonly no"],
    "aof": ['save ""', "appendonly yes", "appendfsync everysec"],
}


def redis_conf(redis: RedisSpec, sentinel_mode: bool) -> str:
    lines = [
        "# Rendered by celeriac; the start script adds auth and replication at run time.",
        "bind * -::*",
        f"port {REDIS_PORT}",
        # Auth (when enabled) is the protection; protected mode would refuse pod traffic.
        "protected-mode no",
        "dir /data",
        *_PERSISTENCE[redis.persistence.type],
        f"maxmemory-policy {redis.maxmemory_policy}",
    ]
    if redis.maxmemory is not None:
        lines.append(f"maxmemory {_bytes(redis.maxmemory)}")
    if sentinel_mode and redis.min_replicas_to_write:
        lines.append(f"min-replicas-to-write {redis.min_replicas_to_write}")
        lines.append(f"min-replicas-max-lag {redis.min_replicas_max_lag}")
    for key, value in sorted((redis.config or {}).items()):
        lines.append(f"{key} {value}")
    return "\n".join(lines) + "\n"


def sentinel_conf() -> str:
    # resolve-hostnames must precede `sentinel monitor <hostname>`; the start script
    # appends the monitor line and then sentinel-master.conf.
    return (
        "\n".join(
            [
                "# Rendered by celeriac; the start script adds monitor and auth at run time.",
                f"port {SENTINEL_PORT}",
                "protected-mode no",
                "dir /run/sentinel",
                "sentinel resolve-hostnames yes",
                "sentinel announce-hostnames yes",
                f"sentinel announce-port {SENTINEL_PORT}",
            ]
        )
        + "\n"
    )


def sentinel_master_conf(master_name: str, sentinel: SentinelSpec) -> str:
    m = master_name
    return (
        "\n".join(
            [
                f"sentinel down-after-milliseconds {m} {sentinel.down_after_milliseconds}",
                f"sentinel failover-timeout {m} {sentinel.failover_timeout}",
                f"sentinel parallel-syncs {m} {sentinel.parallel_syncs}",
            ]
        )
        + "\n"
    )


def quorum(sentinel: SentinelSpec) -> int:
    return sentinel.quorum or sentinel.replicas // 2 + 1


_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def _bytes(quantity: int | str) -> int:
    """Kubernetes quantity -> bytes, for maxmemory."""
    if isinstance(quantity, int):
        return quantity
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if suffix and quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * _UNITS[suffix])
    return int(float(quantity))


# Shared shell helpers. REDISCLI_AUTH (from the Secret) authenticates redis-cli
# without putting the password on a command line.
COMMON_SH = r"""# celeriac: helpers for the broker's pod scripts.
log() { echo "celeriac[$(date -u +%H:%M:%S)] $*" >&2; }
rcli() {
  host=$1; port=$2; shift 2
  timeout 3 redis-cli --no-auth-warning -h "$host" -p "$port" "$@" 2>/dev/null
}
redis_fqdn() { echo "$1.$REDIS_HEADLESS.$POD_NAMESPACE.svc.$CLUSTER_DOMAIN"; }
conf_quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

# The master the Sentinels agree on now, if any answers.
sentinel_master() {
  for s in $SENTINEL_HOSTS; do
    out=$(rcli "$s" 26379 --raw SENTINEL get-master-addr-by-name "$MASTER_NAME" | head -n1)
    case "$out" in ""|*ERR*|*NOAUTH*|*IDONTKNOW*|*NOGOODSLAVE*) continue ;; esac
    echo "$out"; return 0
  done
  return 1
}

# A Redis pod of this broker that says it is master, if any.
peer_master() {
  i=0
  while [ "$i" -lt "$REDIS_MAX_PODS" ]; do
    peer=$(redis_fqdn "$REDIS_STATEFULSET-$i")
    if [ "$peer" != "${SELF_REDIS:-}" ] &&
      rcli "$peer" 6379 INFO replication | grep -q '^role:master'; then
      echo "$peer"; return 0
    fi
    i=$((i + 1))
  done
  return 1
}
"""

REDIS_START_SH = r"""#!/bin/sh
# celeriac: start redis-server. In sentinel mode every pod starts as a replica of
# the master the Sentinels report; only a brand-new broker (bootstrap allowed and
# nobody knows a master) starts pod 0 as master, so a restarted empty pod never
# comes back as master and wipes its replicas.
set -eu
. /config/common.sh
ME=$(redis_fqdn "$POD_NAME")
SELF_REDIS=$ME
conf=/run/redis/redis.conf
cp /config/redis.conf "$conf"
if [ -n "${REDIS_PASSWORD:-}" ]; then
  echo "requirepass $(conf_quote "$REDIS_PASSWORD")" >> "$conf"
  echo "masterauth $(conf_quote "$REDIS_PASSWORD")" >> "$conf"
fi
if [ "$MODE" = sentinel ]; then
  echo "replica-announce-ip $ME" >> "$conf"
  echo "replica-announce-port 6379" >> "$conf"
  ordinal=${POD_NAME##*-}
  deadline=$(( $(date +%s) + (DOWN_AFTER_MS + FAILOVER_TIMEOUT_MS) / 1000 + 5 ))
  role="" master=""
  while [ -z "$role" ]; do
    m=$(sentinel_master || true)
    if [ -n "$m" ] && [ "$m" != "$ME" ]; then
      role=replica master=$m
    elif [ "$m" = "$ME" ]; then
      # The Sentinels still name this pod, which just started and may be empty:
      # stay down so that they promote a replica that has the data.
      if [ "$(date +%s)" -ge "$deadline" ]; then
        log "Sentinels did not fail over (no healthy replica); serving as master"
        role=master
      else
        log "Sentinels still report this pod as master; waiting for their failover"
        sleep 1
      fi
    elif m=$(peer_master); then
      role=replica master=$m
    elif [ "$ordinal" = 0 ] && [ "$(cat /topology/bootstrap 2>/dev/null)" = allowed ]; then
      log "new broker: bootstrapping as master"
      role=master
    else
      log "no master known to Sentinels or peers; waiting"
      sleep 1
    fi
  done
  if [ "$role" = replica ]; then
    log "starting as replica of $master"
    echo "replicaof $master 6379" >> "$conf"
  fi
fi
touch /run/redis/started
exec redis-server "$conf"
"""

REDIS_READY_SH = r"""#!/bin/sh
# celeriac: ready = answering, and (replicas) linked to the master and in sync.
out=$(timeout 2 redis-cli --no-auth-warning -p 6379 INFO replication 2>/dev/null) || exit 1
case "$out" in *role:master*) exit 0 ;; esac
echo "$out" | grep -q '^master_link_status:up' || exit 1
! echo "$out" | grep -q '^master_sync_in_progress:1'
"""

REDIS_ALIVE_SH = r"""#!/bin/sh
# celeriac: alive while the start script waits for a master, or when redis answers.
[ -f /run/redis/started ] || exit 0
r=$(timeout 2 redis-cli --no-auth-warning -p 6379 PING 2>&1)
case "$r" in *PONG*|*LOADING*|*MASTERDOWN*) exit 0 ;; esac
exit 1
"""

REDIS_PRESTOP_SH = r"""#!/bin/sh
# celeriac: before Kubernetes stops the master, hand over without losing an
# acknowledged write: pause writes, wait for a replica to catch up, let the
# Sentinels fail over to it, then unpause (clients follow the new master).
. /config/common.sh
[ "$MODE" = sentinel ] || exit 0
ME=$(redis_fqdn "$POD_NAME")
[ "$(sentinel_master || true)" = "$ME" ] || exit 0
info=$(rcli 127.0.0.1 6379 INFO replication)
echo "$info" | grep -q '^connected_slaves:[1-9]' || { log "no replica to hand over to"; exit 0; }
rcli 127.0.0.1 6379 CLIENT PAUSE 30000 WRITE >/dev/null
offset=$(rcli 127.0.0.1 6379 INFO replication | sed -n 's/^master_repl_offset:\([0-9]*\).*/\1/p')
# EVERY online replica must hold every acknowledged write, not just one: the
# Sentinels choose whom to promote from offsets they read seconds ago, so they may
# well pick one that still lags.
behind() {
  rcli 127.0.0.1 6379 INFO replication | awk -F'[,=:]' -v want="$offset" '
    /^slave[0-9]+:/ {
      st = ""; off = 0
      for (i = 1; i < NF; i++) {
        if ($i == "state") st = $(i + 1)
        if ($i == "offset") off = $(i + 1)
      }
      if (st == "online" && off + 0 < want + 0) n++
    }
    END { print n + 0 }'
}
tries=0
until [ "$(behind)" = 0 ]; do
  tries=$((tries + 1))
  [ "$tries" -gt 100 ] && { log "$(behind) replica(s) still behind after 10 s"; break; }
  sleep 0.1
done
for s in $SENTINEL_HOSTS; do
  rcli "$s" 26379 SENTINEL FAILOVER "$MASTER_NAME" | grep -q OK && break
done
tries=0
while [ "$(sentinel_master || true)" = "$ME" ] && [ "$tries" -lt 300 ]; do
  tries=$((tries + 1)); sleep 0.1
done
if [ "$(sentinel_master || true)" = "$ME" ]; then
  rcli 127.0.0.1 6379 CLIENT UNPAUSE >/dev/null
  log "no failover happened; serving on until stopped"
  exit 0
fi
# Writes stay paused until this pod is a replica: a write accepted here now would
# be acknowledged, then lost when it resyncs. The Sentinels would demote it only
# seconds later; do it now (the new master has every write), so paused clients
# get READONLY at once and retry on the new master.
new_master=$(sentinel_master || true)
if [ -n "$new_master" ] && rcli 127.0.0.1 6379 REPLICAOF "$new_master" 6379 | grep -q OK; then
  rcli 127.0.0.1 6379 CLIENT UNPAUSE >/dev/null
  log "handed over to $new_master"
else
  log "could not become a replica of ${new_master:-?}; staying paused until stopped"
fi
"""

SENTINEL_START_SH = r"""#!/bin/sh
# celeriac: start redis-sentinel watching the master the other Sentinels or the
# Redis pods report; only a brand-new broker monitors pod 0 without asking.
set -eu
. /config/common.sh
ME="$POD_NAME.$SENTINEL_HEADLESS.$POD_NAMESPACE.svc.$CLUSTER_DOMAIN"
conf=/run/sentinel/sentinel.conf
if [ ! -s "$conf" ]; then
  master=""
  while [ -z "$master" ]; do
    if master=$(sentinel_master) || master=$(peer_master); then
      break
    elif [ "$(cat /topology/bootstrap 2>/dev/null)" = allowed ]; then
      master=$(redis_fqdn "$REDIS_STATEFULSET-0")
    else
      log "no master known to Sentinels or Redis pods; waiting"
      sleep 1
    fi
  done
  log "monitoring $MASTER_NAME at $master"
  {
    cat /config/sentinel.conf
    echo "sentinel announce-ip $ME"
    echo "sentinel monitor $MASTER_NAME $master 6379 $QUORUM"
    cat /config/sentinel-master.conf
    if [ -n "${REDIS_PASSWORD:-}" ]; then
      echo "sentinel auth-pass $MASTER_NAME $(conf_quote "$REDIS_PASSWORD")"
      echo "sentinel sentinel-pass $(conf_quote "$REDIS_PASSWORD")"
      echo "requirepass $(conf_quote "$REDIS_PASSWORD")"
    fi
  } > "$conf"
fi
exec redis-sentinel "$conf"
"""

SENTINEL_READY_SH = r"""#!/bin/sh
# celeriac: ready = answering and monitoring a known master.
. /config/common.sh
out=$(rcli 127.0.0.1 26379 --raw SENTINEL get-master-addr-by-name "$MASTER_NAME" | head -n1)
[ -n "$out" ] && [ "${out#ERR}" = "$out" ]
"""
