"""Every Kubernetes permission the operator needs, and why: the list the Helm
chart's RBAC (charts/celeriac/templates/_rbac.tpl, rbac.yaml) must equal.

Each grant names, as a regular expression over operator/celeriac/*.py, the code
that makes the request. tests/integration/test_chart.py fails when a grant's
evidence is gone or the chart and this list differ; test_chart_rbac.py runs the
operator under the chart's ServiceAccount and fails on a refused request, on a
request not listed here, and on a listed grant it never uses. `pending` marks a
grant given ahead of the code that will need it (none at present).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Grant:
    group: str
    resource: str
    verbs: tuple[str, ...]
    why: str
    evidence: str | None = None  # regex over the operator's sources
    pending: bool = False

    def triples(self) -> set[tuple[str, str, str]]:
        return {(self.group, self.resource, verb) for verb in self.verbs}


def _applied(group: str, resource: str, kind: str, api_version: str) -> tuple[Grant, Grant]:
    """A kind render/ produces: Applier.get and server-side apply, which the API
    server authorizes as `create` too when the object does not exist yet; and
    Applier.prune (list, delete)."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return (
        Grant(
            group,
            resource,
            ("get", "create", "patch"),
            f"server-side apply of {kind}s",
            f'"kind": "{kind}"',
        ),
        Grant(
            group,
            resource,
            ("list", "delete"),
            f"pruning {kind}s no longer desired",
            rf'\("{api_version}", "{kind}"\): \("{prefix}", "{resource}"\)',
        ),
    )


BROKERS = "workflowbrokers"
POOLS = "workerpools"
KOPF_WATCHES = r"kopf\.(on\.resume|timer|daemon)\(\s*GROUP,\s*VERSION,\s*{}\.plural"

# Needed in every watched namespace (a Role there, or the ClusterRole).
NAMESPACED: tuple[Grant, ...] = (
    Grant(
        "celeriac.io",
        BROKERS,
        ("list", "watch"),
        "kopf watches brokers",
        KOPF_WATCHES.format("WORKFLOW_BROKER"),
    ),
    Grant(
        "celeriac.io",
        POOLS,
        ("list", "watch"),
        "kopf watches pools",
        KOPF_WATCHES.format("WORKER_POOL"),
    ),
    Grant(
        "celeriac.io",
        BROKERS,
        ("patch",),
        "kopf's finalizer and progress annotations",
        r"AnnotationsProgressStorage",
    ),
    Grant(
        "celeriac.io",
        POOLS,
        ("patch",),
        "kopf's finalizer and progress annotations",
        r"AnnotationsProgressStorage",
    ),
    Grant("celeriac.io", BROKERS, ("get",), "a pool reads its broker", r"kube\.get_custom\("),
    Grant(
        "celeriac.io",
        f"{BROKERS}/status",
        ("patch",),
        "broker status (kopf's patch, the failover daemon)",
        r"patch_namespaced_custom_object_status\(",
    ),
    Grant("celeriac.io", f"{POOLS}/status", ("patch",), "pool status", r"patch\.status\.update\("),
    Grant("", "events", ("create",), "kopf.event about the resources", r"kopf\.event\("),
    Grant(
        "", "events", ("create",), "one Event per scaling decision", r"create_namespaced_event\("
    ),
    Grant("", "secrets", ("get",), "broker passwords", r"read_namespaced_secret\("),
    Grant("", "secrets", ("create",), "generated broker passwords", r"create_namespaced_secret\("),
    *_applied("", "configmaps", "ConfigMap", "v1"),
    *_applied("", "services", "Service", "v1"),
    *_applied("apps", "statefulsets", "StatefulSet", "apps/v1"),
    *_applied("policy", "poddisruptionbudgets", "PodDisruptionBudget", "policy/v1"),
    Grant(
        "",
        "serviceaccounts",
        ("list", "delete"),
        "pruning ServiceAccounts no longer desired",
        r'\("v1", "ServiceAccount"\): \("/api/v1", "serviceaccounts"\)',
    ),
    *_applied("apps", "deployments", "Deployment", "apps/v1"),
    Grant(
        "apps",
        "deployments/scale",
        ("patch",),
        "the autoscaler sets worker replicas through the scale subresource",
        r"patch_namespaced_deployment_scale\(",
    ),
    Grant(
        "",
        "pods",
        ("list",),
        "Redis pods' roles and rollout state; worker pods the autoscaler reads",
        r"list_namespaced_pod\(",
    ),
    Grant(
        "apps",
        "deployments",
        ("watch",),
        "pool reconciles read worker Deployments from a watch",
        r'Mirror\(api, "apps/v1", "Deployment"',
    ),
    Grant(
        "",
        "pods",
        ("watch",),
        "pool reconciles read worker pods from a watch",
        r'Mirror\(api, "v1", "Pod"',
    ),
    Grant(
        "",
        "pods",
        ("patch",),
        "master/replica role labels; worker pods' deletion cost",
        r"patch_namespaced_pod\(",
    ),
    Grant(
        "", "pods", ("delete",), "OnDelete rollouts, one pod at a time", r"delete_namespaced_pod\("
    ),
)

# Cluster-scoped: only a ClusterRole can grant these.
CRDS = Grant(
    "apiextensions.k8s.io",
    "customresourcedefinitions",
    ("list", "watch"),
    "kopf follows the CRDs of the kinds it serves",
    r"kopf\.operator\(",
)
NAMESPACES = Grant(
    "",
    "namespaces",
    ("list", "watch"),
    "kopf checks that the watched namespaces exist",
    r"namespaces=namespaces",
)
CLUSTER_PEERING = Grant(
    "kopf.dev",
    "clusterkopfpeerings",
    ("list", "watch", "patch"),
    "peering keep-alives when watching all namespaces",
    r"peering_name=peering",
)
NAMESPACED_PEERING = Grant(
    "kopf.dev",
    "kopfpeerings",
    ("list", "watch", "patch"),
    "peering keep-alives per watched namespace",
    r"peering_name=peering",
)


def cluster_role(*, all_namespaces: bool, peering: bool) -> tuple[Grant, ...]:
    """The ClusterRole of rbac.scope=cluster."""
    extra = [CRDS] if all_namespaces else [CRDS, NAMESPACES]
    if peering:
        extra.append(CLUSTER_PEERING if all_namespaces else NAMESPACED_PEERING)
    return (*NAMESPACED, *extra)


def role(*, peering: bool) -> tuple[Grant, ...]:
    """The Role in each watched namespace of rbac.scope=namespace."""
    return (*NAMESPACED, NAMESPACED_PEERING) if peering else NAMESPACED


def triples(grants: tuple[Grant, ...]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every grant."""
    return {t for g in grants for t in g.triples()}
