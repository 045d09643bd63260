"""Fixtures shared by the integration tests: CRDs installed once per session."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

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
