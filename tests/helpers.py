"""Helpers shared by tests (no fixtures here)."""

from __future__ import annotations

import http.client
import ipaddress
import os
import re
import secrets
import ssl
import string
import subprocess
import urllib.parse
from pathlib import Path
from typing import Protocol

_DNS_LABEL_MAX = 63
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


class Kubectl(Protocol):
    """The `kubectl` fixture: runs the built kubectl with the admin kubeconfig."""

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]: ...


def helm_binary() -> Path:
    """The helm that hack/build-tools.sh builds: $CELERIAC_HELM (set by hack/test.sh),
    else whatever the script prints (a no-op once its cache is filled)."""
    env = os.environ.get("CELERIAC_HELM")
    if env and os.access(env, os.X_OK):
        return Path(env)
    script = Path(__file__).resolve().parents[1] / "hack" / "build-tools.sh"
    # stderr passes through so a cold build shows its progress.
    out = subprocess.run([str(script)], stdout=subprocess.PIPE, text=True, check=True).stdout
    return Path(out.strip().splitlines()[-1]) / "helm"


def namespace_name(test_name: str, prefix: str = "t") -> str:
    """A fresh DNS-1123 label like `t-<short test name>-<random>` (max 63 chars)."""
    short = test_name.removeprefix("test_").lower()
    short = re.sub(r"[^a-z0-9]+", "-", short).strip("-") or "x"
    suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
    room = _DNS_LABEL_MAX - len(prefix) - len(suffix) - 2
    return f"{prefix}-{short[:room].strip('-')}-{suffix}"


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:  # fd closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _decode_address(hex_addr: str) -> tuple[str, int]:
    ip_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(ip_hex)
    # /proc/net/tcp{,6} prints the address as host-order (little-endian) 32-bit words.
    words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
    ip = ipaddress.ip_address(b"".join(words))
    return str(ip), int(port_hex, 16)


def listening_tcp_addresses(pid: int) -> set[tuple[str, int]]:
    """(ip, port) of every TCP socket in LISTEN state owned by pid (Linux /proc)."""
    inodes = _socket_inodes(pid)
    found = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            # fields: sl local_address rem_address st ... inode is the 10th column
            if fields[3] == "0A" and fields[9] in inodes:
                found.add(_decode_address(fields[1]))
    return found


def https_get(url: str, ca_file: Path, token: str | None = None) -> tuple[int, str]:
    """(status, body) of a GET verified against ca_file; no client library in between."""
    parts = urllib.parse.urlsplit(url)
    context = ssl.create_default_context(cafile=str(ca_file))
    conn = http.client.HTTPSConnection(parts.netloc, timeout=10, context=context)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        conn.request(
            "GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers
        )
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()
