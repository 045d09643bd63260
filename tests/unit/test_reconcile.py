from __future__ import annotations

from typing import Any

from celeriac.reconcile import broker_status, pool_status

POOL = {"brokerRef": {"name": "b"}, "image": "img", "app": "proj:app"}


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def test_broker_status_records_generation() -> None:
    out = broker_status({"mode": "sentinel"}, 4, {}, "t")
    assert out["observedGeneration"] == 4
    assert ready(out)["reason"] == "Reconciling"


def test_broker_invalid_spec_names_the_field_without_echoing_values() -> None:
    out = broker_status({"mode": "sentinel", "sentinel": {"replicas": "s3cr3t"}}, 1, {}, "t")
    cond = ready(out)
    assert (cond["status"], cond["reason"]) == ("False", "ConfigInvalid")
    assert "spec.sentinel.replicas" in cond["message"]
    assert "s3cr3t" not in cond["message"]


def test_pool_reasons() -> None:
    assert ready(pool_status(POOL, 1, {}, None, "t"))["reason"] == "BrokerNotFound"
    broker: dict[str, Any] = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    assert ready(pool_status(POOL, 1, {}, broker, "t"))["reason"] == "BrokerNotReady"
    broker["status"]["conditions"][0]["status"] = "True"
    assert ready(pool_status(POOL, 1, {}, broker, "t"))["reason"] == "Reconciling"
    bad = {**POOL, "concurrency": 0}
    assert ready(pool_status(bad, 2, {}, broker, "t"))["reason"] == "ConfigInvalid"
