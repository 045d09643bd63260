"""The first process of a local-node container (development and tests only).

Started by the agent as `nsenter --net=<pod netns> unshare --mount --uts
--propagation private python -m celeriac.localnode.sandbox` with a JSON spec
on stdin (replaced by /dev/null before the command runs), so it
already runs in the pod's network namespace and in a private mount and UTS
namespace. It builds a root that mirrors the host (`/etc` and any top-level
directory that needs new mount points become overlays on a tmpfs, `/tmp` is
private), binds the pod's volumes at their mount paths, sets the hostname,
chroots, changes to the working directory and execs the command. Nothing it
creates outlives the mount namespace except what processes write to volumes.

On failure it writes the reason to `start_error` from the spec and exits 128.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
# Bound from the host as they are; /tmp and /etc are handled separately.
_RBIND_ALWAYS = ("proc", "sys", "dev")
# Never mirrored into pods: nothing there belongs to a workload.
_SKIPPED = ("mnt", "media", "lost+found")
_libc = ctypes.CDLL(None, use_errno=True)


def mount(source: str, target: str | Path, fstype: str | None, flags: int, data: str = "") -> None:
    rc = _libc.mount(
        source.encode(),
        str(target).encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target} ({fstype or 'bind'}): {os.strerror(err)}")


def _host_path(path: str) -> str:
    """The path as the mirrored root will resolve it (symlinks of the host followed)."""
    return os.path.realpath(path)


def _top(path: str) -> str:
    parts = Path(path).parts
    return parts[1] if len(parts) > 1 else ""


def _overlay(scratch: Path, root: Path, name: str) -> None:
    upper, work = scratch / f"{name}-upper", scratch / f"{name}-work"
    upper.mkdir()
    work.mkdir()
    target = root / name
    target.mkdir()
    mount("overlay", target, "overlay", 0, f"lowerdir=/{name},upperdir={upper},workdir={work}")


def _expose_in_tmp(root: Path, paths: list[str]) -> None:
    """Bind, read-only, the image's directories that live under the host's /tmp
    (hidden by the pod's private /tmp): a venv in a clone under /tmp, say."""
    for path in paths:
        host = _host_path(path)
        if not host.startswith("/tmp/") or not os.path.isdir(host):
            continue
        target = root / host.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        mount(host, target, None, MS_BIND | MS_REC)
        mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC)


def build_root(spec: dict[str, Any]) -> Path:
    scratch = Path(spec["scratch"])
    mount("tmpfs", scratch, "tmpfs", 0, "mode=0755")
    root = scratch / "root"
    root.mkdir()
    # Top-level directories under which a mount point or the working directory
    # is missing on the host become overlays, so the new directories land in tmpfs.
    wanted = [_host_path(m["target"]) for m in spec["mounts"]] + [
        _host_path(spec.get("workingDir") or "/")
    ]
    needs_overlay = {"etc"} | {_top(p) for p in wanted if not os.path.lexists(p)}
    for entry in os.scandir("/"):
        name = entry.name
        target = root / name
        if entry.is_symlink():
            target.symlink_to(os.readlink(entry.path))
        elif name in _SKIPPED or not entry.is_dir():
            continue
        elif name == "tmp":
            tmp = scratch / "tmp"
            tmp.mkdir(mode=0o1777)
            tmp.chmod(0o1777)
            target.mkdir()
            mount(str(tmp), target, None, MS_BIND)
            _expose_in_tmp(root, spec.get("expose") or [])
        elif name in needs_overlay and name not in _RBIND_ALWAYS:
            _overlay(scratch, root, name)
        else:
            target.mkdir()
            mount(entry.path, target, None, MS_BIND | MS_REC)
    etc = root / "etc"
    for name, text in (("resolv.conf", spec["resolvConf"]), ("hostname", spec["hostname"] + "\n")):
        path = etc / name
        if path.is_symlink() or path.exists():
            path.unlink()
        path.write_text(text)
    hosts = etc / "hosts"
    if not hosts.exists():
        hosts.touch()
    mount(_host_path(spec["hostsFile"]), hosts, None, MS_BIND)
    return root


def bind_volumes(root: Path, mounts: list[dict[str, Any]]) -> None:
    # Parents before children, as container runtimes order them.
    for m in sorted(mounts, key=lambda m: len(Path(m["target"]).parts)):
        target = root / _host_path(m["target"]).lstrip("/")
        if os.path.isdir(m["source"]):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.touch()
        mount(m["source"], target, None, MS_BIND | MS_REC)
        if m.get("readOnly"):
            mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC)


def run(spec: dict[str, Any]) -> None:
    # `unshare --propagation private` already did this; repeat it to be sure
    # nothing below can leak back to the host's mount table.
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    root = build_root(spec)
    bind_volumes(root, spec["mounts"])
    socket.sethostname(spec["hostname"])
    os.chroot(root)
    workdir = spec.get("workingDir") or "/"
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    argv: list[str] = spec["argv"]
    if not argv:
        raise OSError("no command: the pod gives none and neither does the image table")
    os.execvpe(argv[0], argv, spec["env"])


def main() -> None:
    # The spec (with the container's environment) comes on stdin, never on disk.
    spec = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    # Opened before the chroot hides the state directory; closed by exec on success.
    error_fd = os.open(spec["startError"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        run(spec)
    except OSError as e:
        message = f"{type(e).__name__}: {e}"
        print(f"celeriac localnode: failed to start the container: {message}", file=sys.stderr)
        os.write(error_fd, message.encode())
        os._exit(128)


if __name__ == "__main__":
    main()
