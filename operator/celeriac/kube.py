"""Thin helpers over the Kubernetes API client (no decisions here)."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Mapping
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

FIELD_MANAGER = "celeriac"


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """From a kubeconfig path, KUBECONFIG/~/.kube/config, or the in-cluster account."""
    # Read KUBECONFIG now: the client library captures it once, at import time.
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
    if not kubeconfig and os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig
    )
    return api


def reachable(api: client.ApiClient, timeout: float = 3.0) -> bool:
    try:
        client.VersionApi(api).get_code(_request_timeout=timeout)
        return True
    except Exception:
        return False


def apply_crds(api: client.ApiClient, crds: list[dict[str, Any]], timeout: float = 30) -> None:
    """Server-side apply the CRDs and wait until the API server serves them."""
    ext = client.ApiextensionsV1Api(api)
    for crd in crds:
        ext.patch_custom_resource_definition(
            crd["metadata"]["name"],
            crd,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    deadline = time.monotonic() + timeout
    for crd in crds:
        while True:
            got = ext.read_custom_resource_definition(crd["metadata"]["name"])
            conds = {c.type: c.status for c in ((got.status and got.status.conditions) or [])}
            if conds.get("Established") == "True":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {crd['metadata']['name']} not Established")
            time.sleep(0.1)


def get_custom(
    api: client.ApiClient, group: str, version: str, plural: str, namespace: str, name: str
) -> dict[str, Any] | None:
    try:
        obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
            group, version, namespace, plural, name
        )
        return cast(dict[str, Any], obj)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def secret_value(data: Mapping[str, Any] | None, key: str) -> str | None:
    """One key of a Secret's `data` (base64), decoded; None when absent."""
    raw = (data or {}).get(key)
    return base64.b64decode(raw).decode() if raw is not None else None
