"""Service and pod DNS names as a managed /etc/hosts block (development and tests only).

There is no DNS server: the local node computes, like CoreDNS would from
EndpointSlices, which names map to which pod addresses and keeps them in a
block of the host's /etc/hosts that pods see through a bind mount.

- a Service S in namespace N: `S.N.svc.cluster.local S.N.svc S.N` -> every ready
  endpoint address. There is no kube-proxy, so even a ClusterIP Service resolves
  to its endpoints and a Service port that differs from its targetPort does not work.
- an endpoint with a hostname H (a StatefulSet pod whose spec.subdomain names a
  headless Service): `H.S.N.svc.cluster.local H.S.N.svc` -> its address when it
  is ready (the endpointslice controller marks every endpoint ready when the
  Service publishes not-ready addresses).

The file is rewritten in place under an fcntl lock, never replaced by rename,
so the bind mounts of it in pods keep showing the current content.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DOMAIN = "cluster.local"
_MARK = "celeriac-localnode"


def _ready(endpoint: dict[str, Any]) -> bool:
    # A nil condition means "unknown", which consumers must treat as ready.
    ready = (endpoint.get("conditions") or {}).get("ready")
    return ready is None or bool(ready)


def host_entries(slices: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """Sorted, de-duplicated (address, names) pairs for these EndpointSlices."""
    entries: set[tuple[str, str]] = set()
    for eps in slices:
        meta = eps.get("metadata", {})
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        namespace = meta.get("namespace")
        if not service or not namespace or eps.get("addressType") not in ("IPv4", None):
            continue
        svc = f"{service}.{namespace}.svc"
        for endpoint in eps.get("endpoints") or []:
            if not _ready(endpoint):
                continue
            for address in endpoint.get("addresses") or []:
                entries.add((address, f"{svc}.{DOMAIN} {svc} {service}.{namespace}"))
                hostname = endpoint.get("hostname")
                if hostname:
                    entries.add((address, f"{hostname}.{svc}.{DOMAIN} {hostname}.{svc}"))
    return sorted(entries, key=lambda e: (e[1], e[0]))


def render_block(agent_id: str, entries: list[tuple[str, str]]) -> str:
    lines = [f"# BEGIN {_MARK} {agent_id}"]
    lines += [f"{address} {names}" for address, names in entries]
    lines.append(f"# END {_MARK} {agent_id}")
    return "\n".join(lines) + "\n"


def replace_block(text: str, agent_id: str | None, block: str) -> str:
    """text without the block(s) of agent_id (any agent when None), plus `block` at the end."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        words = line.split()
        begin = len(words) >= 3 and words[:3] == ["#", "BEGIN", _MARK]
        if begin and (agent_id is None or words[3:4] == [agent_id]):
            skipping = True
            continue
        if skipping:
            if len(words) >= 3 and words[:3] == ["#", "END", _MARK]:
                skipping = False
            continue
        out.append(line)
    kept = "".join(out)
    if block and kept and not kept.endswith("\n"):
        kept += "\n"
    return kept + block


def write_block(path: Path, agent_id: str | None, block: str) -> bool:
    """Replace the managed block in place; True when the file changed."""
    fd = os.open(path, os.O_RDWR)
    with os.fdopen(fd, "r+", encoding="utf-8") as f:
        fcntl.lockf(f, fcntl.LOCK_EX)
        try:
            old = f.read()
            new = replace_block(old, agent_id, block)
            if new == old:
                return False
            f.seek(0)
            f.write(new)
            f.truncate()
            f.flush()
            return True
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)
