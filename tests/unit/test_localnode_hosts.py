"""The managed /etc/hosts block of the local node, from EndpointSlices."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celeriac.localnode.hosts import host_entries, render_block, replace_block, write_block


def eps(service: str, ns: str, endpoints: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{service}-abc",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        **extra,
    }


def test_service_and_pod_names_follow_ready_endpoints() -> None:
    slices = [
        eps(
            "redis",
            "prod",
            [
                {"addresses": ["10.250.1.2"], "hostname": "redis-0", "conditions": {"ready": True}},
                {
                    "addresses": ["10.250.2.2"],
                    "hostname": "redis-1",
                    "conditions": {"ready": False},
                },
                {"addresses": ["10.250.3.2"], "conditions": {}},  # unknown counts as ready
            ],
        ),
        eps("web", "prod", [{"addresses": ["10.250.1.3"], "conditions": {"ready": True}}]),
        eps("v6", "prod", [{"addresses": ["fd00::1"]}], addressType="IPv6"),
        {"metadata": {"name": "orphan", "namespace": "prod"}, "endpoints": []},
    ]
    svc = "redis.prod.svc.cluster.local redis.prod.svc redis.prod"
    assert host_entries(slices) == [
        ("10.250.1.2", "redis-0.redis.prod.svc.cluster.local redis-0.redis.prod.svc"),
        ("10.250.1.2", svc),
        ("10.250.3.2", svc),
        ("10.250.1.3", "web.prod.svc.cluster.local web.prod.svc web.prod"),
    ]


def test_block_replacement_keeps_other_content() -> None:
    block = render_block("a1", [("10.250.1.2", "x.ns.svc")])
    assert block == (
        "# BEGIN celeriac-localnode a1\n10.250.1.2 x.ns.svc\n# END celeriac-localnode a1\n"
    )
    base = "127.0.0.1 localhost\n::1 ip6-localhost"
    text = replace_block(base, "a1", block)
    assert text == base + "\n" + block
    other = render_block("b2", [])
    both = replace_block(text, "b2", other)
    assert replace_block(both, "a1", render_block("a1", [])).count("10.250") == 0
    assert replace_block(both, None, "") == base + "\n"  # every agent's block goes


def test_write_in_place_keeps_the_inode(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    inode = os.stat(hosts).st_ino
    block = render_block("a1", [("10.250.1.2", "x.ns.svc")])
    assert write_block(hosts, "a1", block)
    assert not write_block(hosts, "a1", block)  # unchanged: no write
    assert write_block(hosts, "a1", "")
    assert hosts.read_text() == "127.0.0.1 localhost\n"
    assert os.stat(hosts).st_ino == inode  # bind mounts of the file stay live
