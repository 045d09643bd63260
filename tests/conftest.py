"""Fixtures backed by a real local control plane (started lazily, once per session).

Only tests that request `control_plane` (directly or through `kube_api`,
`namespace` or `kubectl`) start it, so tests/unit never pays for it. `helm` runs
the helm that hack/build-tools.sh builds.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from celeriac.localplane.controlplane import ControlPlane
from helpers import Kubectl, helm_binary, namespace_name


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    # A pytest-managed workdir outlives the session, so logs survive a failed run
    # (pytest keeps the last few basetemp directories).
    plane = ControlPlane(workdir=tmp_path_factory.mktemp("control-plane"))
    with plane:
        yield plane


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    kubeconfig = str(control_plane.kubeconfig)
    api: client.ApiClient = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    yield api
    api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test; deleted afterwards without waiting."""
    core = client.CoreV1Api(kube_api)
    name = namespace_name(request.node.name)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name, propagation_policy="Background")
    except ApiException as e:
        if e.status not in (404, 409):
            raise


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    """Run the built kubectl against the plane: kubectl("get", "pods", "-n", ns)."""
    binary = str(control_plane.bin_dir / "kubectl")
    kubeconfig = str(control_plane.kubeconfig)

    def run(
        *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, f"--kubeconfig={kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    """Run the Go-built helm: helm("lint", "charts/celeriac"). It needs no control
    plane; commands that reach a cluster take --kubeconfig."""
    binary = str(helm_binary())
    home = tmp_path_factory.mktemp("helm")  # helm's config, cache and data stay per session
    env = {
        # Never the developer's cluster by accident.
        **{k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(
        *args: str, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )

    return run


# -- local node (celeriac.localnode): pods as local processes; needs root, iproute2, redis ---
# Self-contained section: its imports are here so it can be moved or dropped as a whole.
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from celeriac.localnode.launcher import LocalNode  # noqa: E402


@pytest.fixture(scope="session")
def local_node(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalNode]:
    """Nodes localnode-1..3 that run bound pods as local processes (see README)."""
    if os.geteuid() != 0:
        pytest.skip("the local node needs root (network namespaces, mounts, /etc/hosts)")
    node = LocalNode(
        control_plane.kubeconfig,
        nodes=3,
        state_dir=tmp_path_factory.mktemp("local-node"),
        env={
            "CELERIAC_LOCALNODE_BACKOFF_BASE": "1",
            "CELERIAC_WORKER_VENV": sys.prefix,
            "CELERIAC_WORKER_PYTHONPATH": str(Path(__file__).parent / "apps"),
        },
    )
    node.start()
    yield node
    node.stop()  # raises if anything the agent started is left behind
