"""`celeriac run`: the operator process, against KUBECONFIG or a local plane."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
from contextlib import ExitStack
from pathlib import Path

import kopf

from . import kube
from .api.crdgen import all_crds

log = logging.getLogger("celeriac")
# Random peering priorities stay below this, so `--priority` above it (e.g. a
# developer's operator) always takes over from the deployed replicas.
PRIORITY_MAX = 2**30


def say(message: str) -> None:
    print(f"celeriac: {message}", file=sys.stderr, flush=True)


def start_local_plane(stack: ExitStack, workdir: Path | None) -> str:
    """Start the built-in control plane (development only) and install the CRDs."""
    from .localplane.controlplane import ControlPlane

    say(
        "no reachable cluster in KUBECONFIG: starting the built-in LOCAL control plane "
        "(development only; building it from Go modules the first time takes a while)"
    )
    plane = stack.enter_context(ControlPlane(workdir=workdir))
    kubeconfig = str(plane.kubeconfig)
    kube.apply_crds(kube.api_client(kubeconfig), all_crds())
    say(f"local control plane ready at {plane.server}; CRDs installed")
    start_local_node(stack, kubeconfig, None if workdir is None else workdir / "localnode")
    say(f"use it with: export KUBECONFIG={kubeconfig}")
    return kubeconfig


def start_local_node(stack: ExitStack, kubeconfig: str, state_dir: Path | None) -> None:
    """Nodes that run the plane's pods as local processes (development only).

    Entered after the plane, so the ExitStack stops it before the plane.
    """
    from .localnode.launcher import LocalNode, LocalNodeError

    try:
        node = stack.enter_context(LocalNode(kubeconfig, nodes=3, state_dir=state_dir))
    except (LocalNodeError, OSError) as e:
        say(f"local node not started, pods will stay Pending: {e}")
        return
    say(
        f"local node ready ({', '.join(node.nodes)}): pods run as local processes, "
        f"logs in {node.state_dir}/pods (see README, 'The local node')"
    )


def run(
    namespaces: list[str],
    kubeconfig: str | None,
    local: bool | None,
    install_crds: bool,
    verbose: bool,
    liveness: str | None,
    metrics_port: int | None = None,
    workdir: Path | None = None,
    peering: str | None = None,
    priority: int | None = None,
    scan: bool = True,
) -> int:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO)
    with ExitStack() as stack:
        if kubeconfig:
            os.environ["KUBECONFIG"] = kubeconfig
        use_local = local
        if use_local is None:
            try:
                use_local = not kube.reachable(kube.api_client())
            except Exception:
                use_local = True
        if use_local:
            os.environ["KUBECONFIG"] = start_local_plane(stack, workdir)
        else:
            say("using the cluster in " + os.environ.get("KUBECONFIG", "the default kubeconfig"))
            if install_crds:
                kube.apply_crds(kube.api_client(), all_crds())
                say("CRDs installed")
        from . import handlers  # noqa: F401  (registers the kopf handlers)

        if metrics_port is not None:
            from .metrics import serve

            serve(metrics_port)
            say(f"metrics on :{metrics_port}/metrics")

        scope = ", ".join(namespaces) if namespaces else "all namespaces"
        if peering is not None:
            # kopf pauses every peer that ties on priority, so replicas of one
            # Deployment must differ: a random one unless given.
            if priority is None:
                priority = random.SystemRandom().randint(1, PRIORITY_MAX)
            say(f"peering {peering!r} with priority {priority}: one peer acts at a time")
        say(f"operator running, watching {scope}")
        settings = kopf.OperatorSettings()
        # kopf watches namespaces and CRDs cluster-wide; with only namespaced Roles
        # it would retry the refused requests for about a minute before starting.
        settings.scanning.disabled = not scan
        # kopf handles SIGINT/SIGTERM itself and returns after a graceful stop.
        asyncio.run(
            kopf.operator(
                settings=settings,
                clusterwide=not namespaces,
                namespaces=namespaces,
                standalone=peering is None,
                peering_name=peering,
                priority=priority,
                liveness_endpoint=liveness,
                memo=kopf.Memo(namespaces=list(namespaces)),
            )
        )
        say("operator stopped")
    return 0
