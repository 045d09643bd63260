"""Pod networking: one network namespace per pod on a local bridge (development and tests only).

Host side: bridge `clr0` with 10.250.0.1/16; node k hands out pod addresses from
10.250.k.0/24. Each pod gets namespace `clr-<first 8 of its uid>` with `lo` and
an `eth0` veth whose host end (`clrv<uid8>`) sits on the bridge. Pods get no
default route, so nothing can leave the machine; the Service CIDR is a
blackhole route on the host so a client trying a ClusterIP fails locally.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import threading

BRIDGE = "clr0"
BRIDGE_ADDRESS = "10.250.0.1"
POD_NETWORK = ipaddress.ip_network("10.250.0.0/16")
SERVICE_CIDR = "10.0.0.0/24"
NETNS_PREFIX = "clr-"
VETH_PREFIX = "clrv"


class NetworkError(RuntimeError):
    """An `ip` command failed."""


def ip(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def node_cidr(index: int) -> str:
    """spec.podCIDR of local node `index` (1-based)."""
    return f"10.250.{index}.0/24"


def netns_name(pod_uid: str) -> str:
    return NETNS_PREFIX + pod_uid.replace("-", "")[:8]


def veth_name(pod_uid: str) -> str:
    return VETH_PREFIX + pod_uid.replace("-", "")[:8]


class AddressPool:
    """Pod addresses of one node's /24 (.2 to .254); thread-safe."""

    def __init__(self, index: int) -> None:
        net = ipaddress.ip_network(node_cidr(index))
        self._free = [str(a) for a in list(net.hosts())[1:]]
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            if not self._free:
                raise NetworkError("no pod address left on this node")
            return self._free.pop(0)

    def give_back(self, address: str) -> None:
        with self._lock:
            if address not in self._free:
                self._free.append(address)


def _links() -> list[dict[str, object]]:
    found: list[dict[str, object]] = json.loads(ip("-j", "link", "show") or "[]")
    return found


def _has_link(name: str) -> bool:
    return any(link.get("ifname") == name for link in _links())


def setup_host() -> None:
    """Create the bridge and the Service-CIDR blackhole (both idempotent)."""
    if not _has_link(BRIDGE):
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", f"{BRIDGE_ADDRESS}/{POD_NETWORK.prefixlen}", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")
    if not ip("route", "show", "exact", SERVICE_CIDR).strip():
        ip("route", "add", "blackhole", SERVICE_CIDR)


def teardown_host() -> None:
    """Remove every pod namespace and veth we name, the bridge and our blackhole."""
    for ns in list_netns():
        ip("netns", "delete", ns, check=False)
    for link in _links():
        name = str(link.get("ifname", ""))
        if name.startswith(VETH_PREFIX) or name == BRIDGE:
            ip("link", "delete", name, check=False)
    if ip("route", "show", "exact", SERVICE_CIDR, "type", "blackhole", check=False).strip():
        ip("route", "delete", "blackhole", SERVICE_CIDR, check=False)


def list_netns() -> list[str]:
    found = json.loads(ip("-j", "netns", "list") or "[]")
    return [str(n["name"]) for n in found if str(n.get("name", "")).startswith(NETNS_PREFIX)]


def create_pod_network(pod_uid: str, address: str) -> str:
    """Namespace + veth for a pod; returns the namespace name."""
    ns, veth = netns_name(pod_uid), veth_name(pod_uid)
    delete_pod_network(pod_uid)  # leftovers of an earlier agent run
    prefix = POD_NETWORK.prefixlen
    ip("netns", "add", ns)
    ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    ip("link", "set", veth, "master", BRIDGE, "up")
    ip("-n", ns, "addr", "add", f"{address}/{prefix}", "dev", "eth0")
    ip("-n", ns, "link", "set", "eth0", "up")
    ip("-n", ns, "link", "set", "lo", "up")
    return ns


def delete_pod_network(pod_uid: str) -> None:
    ns, veth = netns_name(pod_uid), veth_name(pod_uid)
    ip("link", "delete", veth, check=False)
    ip("netns", "delete", ns, check=False)
