"""Server-side apply of rendered objects under one field manager.

Desired objects are plain dicts from render/. `apply` skips the request when the
live object already carries every desired field (so an idle reconcile makes no
write), and otherwise sends a server-side apply that owns exactly the fields we
render: fields set by other managers (an HPA, kubectl, a GitOps tool) survive."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kubernetes import client
from kubernetes.client.exceptions import ApiException

FIELD_MANAGER = "celeriac"
MANAGED_BY = "app.kubernetes.io/managed-by"
OWNER_LABEL = "celeriac.io/owner-uid"

# kind -> (API path prefix, plural); the kinds the operator renders.
RESOURCES: dict[tuple[str, str], tuple[str, str]] = {
    ("v1", "ConfigMap"): ("/api/v1", "configmaps"),
    ("v1", "Secret"): ("/api/v1", "secrets"),
    ("v1", "Service"): ("/api/v1", "services"),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts"),
    ("v1", "Pod"): ("/api/v1", "pods"),  # only listed (worker pods), never applied or pruned
    ("apps/v1", "StatefulSet"): ("/apis/apps/v1", "statefulsets"),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments"),
    ("policy/v1", "PodDisruptionBudget"): ("/apis/policy/v1", "poddisruptionbudgets"),
}

Outcome = Literal["created", "updated", "unchanged"]


def contains(live: Any, desired: Any) -> bool:
    """True when every field of `desired` has the same value in `live` (lists must
    match element by element). Server defaults in `live` are ignored."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and contains(live[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


def object_path(obj: Mapping[str, Any], name: str | None = None) -> str:
    prefix, plural = RESOURCES[(obj["apiVersion"], obj["kind"])]
    ns = obj["metadata"].get("namespace")
    base = f"{prefix}/namespaces/{ns}/{plural}" if ns else f"{prefix}/{plural}"
    return f"{base}/{name}" if name else base


@dataclass
class Applier:
    api: client.ApiClient
    field_manager: str = FIELD_MANAGER

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One raw API request (the typed clients cannot send apply patches of any kind)."""
        method, url, headers, data, _ = self.api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.api.call_api(method, url, headers, data)
        raw = resp.read()  # type: ignore[no-untyped-call]
        if not 200 <= resp.status < 300:
            raise ApiException(http_resp=resp)
        return json.loads(raw) if raw else None

    def get(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            live: dict[str, Any] = self._call("GET", object_path(obj, obj["metadata"]["name"]))
            return live
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def apply(self, obj: Mapping[str, Any], live: Mapping[str, Any] | None = None) -> Outcome:
        """Apply one object; `live` may be passed when the caller already read it."""
        current = live if live is not None else self.get(obj)
        if current is not None and contains(current, obj):
            return "unchanged"
        self._call(
            "PATCH",
            object_path(obj, obj["metadata"]["name"]),
            body=dict(obj),
            query=[("fieldManager", self.field_manager), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )
        return "created" if current is None else "updated"

    def list_objects(
        self, api_version: str, kind: str, namespace: str, selector: str
    ) -> list[dict[str, Any]]:
        """Objects of one kind in a namespace, by label selector."""
        probe = {"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace}}
        listed = self._call("GET", object_path(probe), query=[("labelSelector", selector)])
        return list(listed.get("items", []))

    def prune(
        self,
        namespace: str,
        owner_uid: str,
        kinds: Iterable[tuple[str, str]],
        keep: set[tuple[str, str]],
    ) -> list[tuple[str, str]]:
        """Delete objects we made for `owner_uid` that are no longer desired."""
        removed = []
        for api_version, kind in kinds:
            probe = {"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace}}
            selector = f"{MANAGED_BY}=celeriac,{OWNER_LABEL}={owner_uid}"
            for item in self.list_objects(api_version, kind, namespace, selector):
                name = item["metadata"]["name"]
                if (kind, name) not in keep:
                    self._call(
                        "DELETE",
                        object_path(probe, name),
                        query=[("propagationPolicy", "Background")],
                    )
                    removed.append((kind, name))
        return removed
