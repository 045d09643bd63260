"""Fixtures shared by the integration tests: CRDs installed once per session, the
operator running against the local control plane with the local node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
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


@pytest.fixture
def operator(control_plane: Any, local_node: Any, namespace: str, tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "operator.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celeriac.cli", "run", "--no-local", "-n", namespace],
        env={**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for(lambda: "operator running" in log.read_text(), 60, what="operator start")
    yield log
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()[-3000:]
