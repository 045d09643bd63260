from __future__ import annotations

from celeriac.apply import contains, object_path


def test_contains_ignores_server_defaults() -> None:
    live = {"spec": {"replicas": 1, "revisionHistoryLimit": 10, "template": {"x": [1, 2]}}}
    assert contains(live, {"spec": {"replicas": 1}})
    assert contains(live, {"spec": {"template": {"x": [1, 2]}}})


def test_contains_sees_changes_missing_fields_and_list_lengths() -> None:
    live = {"data": {"a": "1"}, "items": [{"n": 1, "default": True}]}
    assert not contains(live, {"data": {"a": "2"}})
    assert not contains(live, {"data": {"b": "1"}})
    assert not contains(live, {"items": [{"n": 1}, {"n": 2}]})
    assert contains(live, {"items": [{"n": 1}]})
    assert not contains(live, {"data": "a"})


def test_object_paths() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "ns"}}
    assert object_path(cm, "x") == "/api/v1/namespaces/ns/configmaps/x"
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"namespace": "ns"}}
    assert object_path(sts) == "/apis/apps/v1/namespaces/ns/statefulsets"
