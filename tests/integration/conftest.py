"""Fixtures shared by the integration tests: CRDs installed once per session, the
operator running against the local control plane with the local node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from waiting import wait_for

from celeriac import kube
from celeriac.api.crdgen import all_crds


@pytest.fixture(scope="session")
def crds(control_plane: Any) -> list[dict[str, Any]]:
    api = kube.api_client(str(control_plane.kubeconfig))
    installed = all_crds()
    kube.apply_crds(api, installed)
    return installed


@pytest.fixture
def custom(kube_api: client.ApiClient, crds: list[dict[str, Any]]) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


@contextmanager
def running_operator(control_plane: Any, namespace: str, log: Path) -> Iterator[Path]:
    """`celeriac run` for one namespace; stops it with SIGTERM and expects exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "celeriac.cli", "run", "--no-local", "-n", namespace],
        env={**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: "operator running" in log.read_text(), 60, 0.2, "operator start")
        yield log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, log.read_text()[-3000:]


@pytest.fixture
def operator(control_plane: Any, local_node: Any, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """The operator, with the local node running pods."""
    with running_operator(control_plane, namespace, tmp_path / "operator.log") as log:
        yield log


@pytest.fixture
def plain_operator(control_plane: Any, crds: Any, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """The operator alone (pods stay Pending unless the local node already runs)."""
    with running_operator(control_plane, namespace, tmp_path / "operator.log") as log:
        yield log
