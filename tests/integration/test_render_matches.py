"""`celeriac render` is what the operator creates: the examples, rendered offline,
compared object by object with what the operator applied on the API server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from waiting import wait_for

from celeriac.apply import MANAGED_BY, OWNER_LABEL, Applier, contains
from celeriac.render.pool import SECRETS_HASH

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
G, V = "celeriac.io", "v1alpha1"
PLURALS = {"WorkflowBroker": "workflowbrokers", "WorkerPool": "workerpools"}


def offline_neutral(obj: dict[str, Any]) -> dict[str, Any]:
    """What only the cluster can know, taken out of an object: owner UIDs, the
    pod-template hash of the password Secrets (offline, no Secret is read) and
    the topology ConfigMap's live data (what the Sentinels report)."""
    out = yaml.safe_load(yaml.safe_dump(obj))
    meta = out["metadata"]
    meta.get("labels", {}).pop(OWNER_LABEL, None)
    for ref in meta.get("ownerReferences", []):
        ref.pop("uid", None)
    template = out.get("spec", {}).get("template", {}).get("metadata", {})
    template.get("annotations", {}).pop(SECRETS_HASH, None)
    if out["kind"] == "ConfigMap" and meta["name"].endswith("-topology"):
        out.pop("data", None)
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        meta.pop(key, None)
    return dict(out)


def test_render_of_the_examples_equals_what_the_operator_creates(
    plain_operator: Path,
    custom: client.CustomObjectsApi,
    kube_api: client.ApiClient,
    namespace: str,
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "render", "-n", namespace]
        + [a for p in EXAMPLES for a in ("-f", str(p))],
        capture_output=True,
        text=True,
        check=True,
    )
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    core = client.CoreV1Api(kube_api)
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "Secret":
                core.create_namespaced_secret(namespace, doc)
            else:
                custom.create_namespaced_custom_object(G, V, namespace, PLURALS[doc["kind"]], doc)

    applier = Applier(kube_api)
    expected = {(o["kind"], o["metadata"]["name"]) for o in rendered}

    def created() -> set[tuple[str, str]]:
        found = set()
        for api_version, kind in [
            ("v1", "ConfigMap"),
            ("v1", "Service"),
            ("apps/v1", "StatefulSet"),
            ("apps/v1", "Deployment"),
            ("policy/v1", "PodDisruptionBudget"),
        ]:
            listed = applier.list_objects(api_version, kind, namespace, f"{MANAGED_BY}=celeriac")
            found |= {(kind, i["metadata"]["name"]) for i in listed}
        return found

    wait_for(lambda: created() >= expected, 90, 0.5, f"the operator's objects {expected}")
    assert created() == expected  # nothing more than rendered either
    for obj in rendered:
        live = applier.get(obj)
        assert live is not None, obj["metadata"]["name"]
        want, have = offline_neutral(obj), offline_neutral(live)
        assert contains(have, want), (obj["kind"], obj["metadata"]["name"])
