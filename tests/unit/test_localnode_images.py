"""The local node's image table: image references -> local executables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from celeriac.localnode.images import (
    ImageError,
    entrypoint,
    load_table,
    missing_executables,
    parse_table,
    resolve,
    spellings,
)

TABLE, _ = load_table({})
SETTINGS = {"CELERIAC_WORKER_VENV": "/opt/venv", "CELERIAC_WORKER_PYTHONPATH": "/src/app"}


def test_spellings() -> None:
    assert spellings("docker.io/library/redis:7.2") == [
        "docker.io/library/redis:7.2", "docker.io/library/redis", "redis",
    ]  # fmt: skip
    assert spellings("localhost:5000/team/app@sha256:abc") == [
        "localhost:5000/team/app@sha256:abc", "localhost:5000/team/app", "team/app",
    ]  # fmt: skip
    assert spellings("busybox") == ["busybox"]


@pytest.mark.parametrize(
    ("image", "entry"),
    [
        ("redis", "redis"),
        ("redis:7.2", "redis"),
        ("docker.io/library/redis:7.2-alpine", "redis"),
        ("bitnami/redis-sentinel:7.2", "redis"),
        ("quay.io/opstree/redis", "redis"),
        ("valkey/valkey:8", "redis"),
        ("busybox:1.36", "shell"),
        ("alpine", "shell"),
        ("celeriac.dev/worker:dev", "worker"),
        ("celeriac.dev/worker", "worker"),
    ],
)
def test_default_table(image: str, entry: str) -> None:
    assert resolve(image, TABLE, SETTINGS).entry == entry


def test_unmapped_image_names_the_image() -> None:
    with pytest.raises(
        ImageError, match=re.escape('image "ghcr.io/x/app:1" is not in the local node')
    ):
        resolve("ghcr.io/x/app:1", TABLE, SETTINGS)


def test_worker_settings_are_substituted() -> None:
    worker = resolve("celeriac.dev/worker:1", TABLE, SETTINGS)
    assert worker.path.startswith("/opt/venv/bin:")
    assert worker.env["PYTHONPATH"] == "/src/app"
    assert worker.image_id == "localnode://worker"
    bare = resolve("celeriac.dev/worker:1", TABLE, {"CELERIAC_WORKER_VENV": "/v"})
    assert "PYTHONPATH" not in bare.env  # an empty setting leaves the variable out


def test_entrypoint_rules() -> None:
    redis = resolve("redis", TABLE, SETTINGS)
    assert entrypoint(redis, None, None) == ["redis-server"]
    assert entrypoint(redis, None, ["redis-server", "--port", "7000"]) == [
        "redis-server", "--port", "7000",
    ]  # fmt: skip
    assert entrypoint(redis, ["sh", "-c"], None) == ["sh", "-c"]  # command drops image args
    worker = resolve("celeriac.dev/worker", TABLE, SETTINGS)
    assert entrypoint(worker, None, ["-A", "app", "worker"]) == ["celery", "-A", "app", "worker"]


def test_table_from_a_file(tmp_path: Path) -> None:
    table = tmp_path / "images.yaml"
    table.write_text(
        "- {name: mine, match: ['ghcr.io/x/*'], path: ['${ROOT}/bin'], "
        "requires: [definitely-not-installed-exe]}\n"
    )
    entries, source = load_table({"CELERIAC_LOCALNODE_IMAGES": str(table)})
    assert source == str(table)
    mine = resolve("ghcr.io/x/app:1", entries, {"ROOT": "/srv"})
    assert mine.path == "/srv/bin"
    assert missing_executables(mine) == ["definitely-not-installed-exe"]
    with pytest.raises(ImageError):
        parse_table("{not: a list}")


def test_image_paths_name_the_venv_and_pythonpath_to_keep_visible() -> None:
    from celeriac.localnode.pod import image_paths

    env = {"PATH": "/tmp/clone/.venv/bin:/usr/bin:/bin", "PYTHONPATH": "/tmp/clone/tests/apps"}
    assert image_paths(env) == ["/tmp/clone/.venv", "/usr", "/", "/tmp/clone/tests/apps"]
