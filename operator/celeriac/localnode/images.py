"""Which local executables stand in for which container image (development and tests only).

The local node pulls nothing: an image reference maps, through the table below,
to a PATH on this machine, extra environment, the executables that must exist,
and the image's default entrypoint (`command`) and arguments (`args`).
`CELERIAC_LOCALNODE_IMAGES=<file>` replaces the table with a YAML file of the
same shape. `${NAME}` in `path` and `env` values is taken from the agent's
settings (CELERIAC_WORKER_VENV, CELERIAC_WORKER_PYTHONPATH, ...).

A reference is matched with shell globs against three spellings of it: as
written, without tag/digest, and also without registry and `library/`
("docker.io/library/redis:7.2" is tried as that, "docker.io/library/redis" and
"redis"). The first matching entry wins.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENV_TABLE = "CELERIAC_LOCALNODE_IMAGES"

DEFAULT_TABLE = """
- name: redis
  match: [redis, "*/redis", "bitnami/redis*", "valkey*", "*/valkey*"]
  path: [/usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin]
  requires: [redis-server, redis-sentinel]   # Debian packages redis-server, redis-sentinel
  command: []
  args: [redis-server]
- name: shell
  match: [busybox, alpine, debian, ubuntu, "*/busybox", "*/alpine", "*/debian", "*/ubuntu"]
  path: [/usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin]
  requires: [sh]
  command: []
  args: [sh]
- name: worker
  match: [celeriac.dev/worker]
  path: ["${CELERIAC_WORKER_VENV}/bin", /usr/local/bin, /usr/bin, /bin]
  env: {PYTHONPATH: "${CELERIAC_WORKER_PYTHONPATH}", PYTHONUNBUFFERED: "1"}
  requires: [celery]
  command: [celery]
  args: []
"""

_SUBST = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ImageError(Exception):
    """No table entry, or an executable it requires is missing (the pod waits)."""


@dataclass(frozen=True)
class ImageEntry:
    name: str
    match: tuple[str, ...]
    path: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResolvedImage:
    """A table entry with settings substituted, for one image reference."""

    image: str
    entry: str
    env: dict[str, str]
    requires: tuple[str, ...]
    command: tuple[str, ...]
    args: tuple[str, ...]

    @property
    def path(self) -> str:
        return self.env["PATH"]

    @property
    def image_id(self) -> str:
        return f"localnode://{self.entry}"


def parse_table(text: str) -> list[ImageEntry]:
    raw: Any = yaml.safe_load(text)
    if not isinstance(raw, list):
        raise ImageError("the image table must be a YAML list of entries")
    entries = []
    for item in raw:
        if not isinstance(item, dict) or "match" not in item or "path" not in item:
            raise ImageError(f"image table entry needs `match` and `path`: {item!r}")
        entries.append(
            ImageEntry(
                name=str(item.get("name") or item["match"][0]),
                match=tuple(str(m) for m in item["match"]),
                path=tuple(str(p) for p in item["path"]),
                env={str(k): str(v) for k, v in (item.get("env") or {}).items()},
                requires=tuple(str(r) for r in item.get("requires") or ()),
                command=tuple(str(c) for c in item.get("command") or ()),
                args=tuple(str(a) for a in item.get("args") or ()),
            )
        )
    return entries


def load_table(environ: Mapping[str, str] = os.environ) -> tuple[list[ImageEntry], str]:
    """(entries, where they came from) honouring CELERIAC_LOCALNODE_IMAGES."""
    path = environ.get(ENV_TABLE)
    if path:
        return parse_table(Path(path).read_text()), path
    return parse_table(DEFAULT_TABLE), "the built-in table (celeriac.localnode.images)"


def spellings(image: str) -> list[str]:
    """The forms of a reference that table globs are matched against."""
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    untagged = ref[:colon] if colon > slash else ref
    parts = untagged.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if len(parts) > 1 and parts[0] == "library":
        parts = parts[1:]
    out: list[str] = []
    for form in (image, untagged, "/".join(parts)):
        if form not in out:
            out.append(form)
    return out


def _subst(text: str, settings: Mapping[str, str]) -> str:
    return _SUBST.sub(lambda m: settings.get(m.group(1), ""), text)


def resolve(image: str, table: list[ImageEntry], settings: Mapping[str, str]) -> ResolvedImage:
    """The first entry whose globs match the image; ImageError when none does."""
    forms = spellings(image)
    for entry in table:
        if any(fnmatch.fnmatchcase(form, glob) for form in forms for glob in entry.match):
            env = {k: _subst(v, settings) for k, v in entry.env.items()}
            path = ":".join(p for p in (_subst(p, settings) for p in entry.path) if p)
            # A setting that expanded to nothing (PYTHONPATH without a value) is left out.
            env = {k: v for k, v in env.items() if v}
            env["PATH"] = path
            return ResolvedImage(image, entry.name, env, entry.requires, entry.command, entry.args)
    raise ImageError(f'image "{image}" is not in the local node image table')


def missing_executables(resolved: ResolvedImage) -> list[str]:
    """Executables the entry requires that are not on its PATH on this machine."""
    return [exe for exe in resolved.requires if shutil.which(exe, path=resolved.path) is None]


def entrypoint(
    resolved: ResolvedImage, command: list[str] | None, args: list[str] | None
) -> list[str]:
    """Docker's rules: command replaces the entrypoint and drops the image args."""
    if command:
        return [*command, *(args or [])]
    return [*resolved.command, *(args if args else resolved.args)]
