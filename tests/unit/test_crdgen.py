"""The generated CRDs are structural, documented and match the committed files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from celeriac.api import KINDS, WorkerPoolSpec, WorkflowBrokerSpec
from celeriac.api.crdgen import all_crds, render_files
from celeriac.cli import main

ROOT = Path(__file__).resolve().parents[2]
STRUCTURAL_KEYS = {
    "type",
    "format",
    "description",
    "default",
    "enum",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "items",
    "properties",
    "additionalProperties",
    "nullable",
    "anyOf",
}
# Core Kubernetes objects we pass through to pod specs; nothing else may be open.
OPEN_FIELDS = {"affinity", "tolerations", "topologySpreadConstraints", "env", "envFrom"}


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def schemas() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for crd in all_crds():
        root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in walk(root):
            yield crd["spec"]["names"]["kind"], path, node


def test_schemas_are_structural() -> None:
    for kind, path, node in schemas():
        where = f"{kind}{path}"
        assert (
            not set(node) - STRUCTURAL_KEYS - {k for k in node if k.startswith("x-kubernetes-")}
        ), where
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], where
        else:
            assert "type" in node, f"{where} has no type"
            assert "anyOf" not in node, where
        assert not ("properties" in node and "additionalProperties" in node), where
        if node.get("type") == "object" and "properties" not in node and path != ".metadata":
            assert "additionalProperties" in node or node.get(
                "x-kubernetes-preserve-unknown-fields"
            ), f"{where} is an object without a schema"


def test_open_objects_only_where_meant() -> None:
    opened = {
        path.rstrip("[]").rsplit(".", 1)[-1]
        for _, path, node in schemas()
        if node.get("x-kubernetes-preserve-unknown-fields")
    }
    assert opened == OPEN_FIELDS


def test_every_field_is_documented() -> None:
    for kind, path, node in schemas():
        last = path.rsplit(".", 1)[-1]
        if path.count(".") <= 1 and last in {"apiVersion", "kind", "metadata", ""}:
            continue
        if path.endswith("[]") or path.endswith("{}") or path.endswith("[].name"):
            continue
        assert node.get("description"), f"{kind}{path} has no description"


def test_names_subresources_and_columns() -> None:
    by_kind = {c["spec"]["names"]["kind"]: c for c in all_crds()}
    broker, pool = by_kind["WorkflowBroker"], by_kind["WorkerPool"]
    assert broker["spec"]["names"]["shortNames"] == ["wfb"]
    assert pool["spec"]["names"]["shortNames"] == ["wp"]
    for crd in (broker, pool):
        assert crd["spec"]["names"]["categories"] == ["celeriac"]
        assert "status" in crd["spec"]["versions"][0]["subresources"]
    assert pool["spec"]["versions"][0]["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert "scale" not in broker["spec"]["versions"][0]["subresources"]
    cols = [c["name"] for c in broker["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert {"Mode", "Master", "Ready", "Age"} <= set(cols)
    cols = [c["name"] for c in pool["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert {"Broker", "Replicas", "Desired", "Backlog", "Age"} <= set(cols)


def test_status_paths_of_columns_exist_in_the_schema() -> None:
    for crd in all_crds():
        version = crd["spec"]["versions"][0]
        root = version["schema"]["openAPIV3Schema"]
        for col in version["additionalPrinterColumns"]:
            node = root
            for part in col["jsonPath"].split("[")[0].strip(".").split("."):
                if part == "metadata":
                    break
                assert part in node.get("properties", {}), col["jsonPath"]
                node = node["properties"][part]


def test_committed_crds_match_the_models() -> None:
    files = render_files()
    for folder in (ROOT / "crds", ROOT / "charts/celeriac/crds"):
        committed = {p.name: p.read_text() for p in folder.glob("*.yaml")}
        assert committed == files, (
            f"{folder} drifted: run `celeriac crds -o crds -o charts/celeriac/crds`"
        )
    assert main(["crds", "--check"]) == 0


def test_crds_check_detects_drift(tmp_path: Path) -> None:
    (tmp_path / "workerpools.celeriac.io.yaml").write_text("stale")
    assert main(["crds", "--check", "-o", str(tmp_path)]) == 1
    assert main(["crds", "-o", str(tmp_path)]) == 0
    assert main(["crds", "--check", "-o", str(tmp_path)]) == 0


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_parse_with_the_models(path: Path) -> None:
    models = {"WorkflowBroker": WorkflowBrokerSpec, "WorkerPool": WorkerPoolSpec}
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        if doc["kind"] in models:
            models[doc["kind"]].model_validate(doc["spec"])


def test_kinds_registry_matches_crds() -> None:
    assert [k.crd_name for k in KINDS] == [c["metadata"]["name"] for c in all_crds()]
