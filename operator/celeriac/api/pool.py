"""WorkerPool: Celery or PyWorkflow workers wired to a WorkflowBroker, optionally
autoscaled on the broker's real backlog."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import (
    CommonStatus,
    KubeObjectList,
    LocalObjectReference,
    Model,
    PodSettings,
    ResourceRequirements,
    cel,
    with_rules,
)

QueueName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:@-]+$")]


class ResultBackend(Model):
    """Where task results go."""

    model_config = with_rules(
        cel(
            "self.type == 'broker' || !has(self.brokerRef)",
            "spec.resultBackend.brokerRef is only allowed when spec.resultBackend.type is broker",
            ".brokerRef",
        )
    )

    type: Literal["broker", "none"] = Field(
        "broker",
        description="broker: the results database of a WorkflowBroker; none: results are "
        "not stored.",
    )
    broker_ref: LocalObjectReference | None = Field(
        None, description="WorkflowBroker for results; defaults to spec.brokerRef."
    )


class QueueKeys(Model):
    """kombu Redis transport options that change key names. Rendered into the
    workers' broker_transport_options and used to count the backlog, so both
    agree; set them here rather than only in the app."""

    global_keyprefix: str | None = Field(
        None, max_length=128, description="Prefix of every key (kombu global_keyprefix)."
    )
    priority_steps: list[Annotated[int, Field(ge=0, le=255)]] | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Priority steps, each a separate list (kombu default [0, 3, 6, 9]).",
    )
    sep: str | None = Field(
        None,
        min_length=1,
        max_length=8,
        description="Separator between a queue name and its priority step (kombu default "
        "\\x06\\x16).",
    )


class ScalingRules(Model):
    """How fast replicas may change in one direction."""

    stabilization_seconds: int | None = Field(
        None,
        ge=0,
        le=3600,
        description="The highest (scale-down) or lowest (scale-up) recommendation over this "
        "window is used. Defaults: 0 up, 60 down.",
    )
    max_step: int | None = Field(
        None, ge=1, le=1000, description="Most replicas added or removed in one decision."
    )


class Autoscaling(Model):
    """Scale on the broker's backlog: waiting + reserved + running tasks."""

    model_config = with_rules(
        cel(
            "self.minReplicas <= self.maxReplicas",
            "spec.autoscaling.minReplicas must not exceed spec.autoscaling.maxReplicas",
            ".minReplicas",
        )
    )

    enabled: bool = Field(True, description="Scale automatically; spec.replicas is then ignored.")
    min_replicas: int = Field(
        0, ge=0, le=1000, description="Fewest replicas; 0 allows scale to zero."
    )
    max_replicas: int = Field(10, ge=1, le=1000, description="Most replicas.")
    target_per_replica: int | None = Field(
        None,
        ge=1,
        le=100000,
        description="Tasks (waiting + reserved + running) one replica should carry; "
        "defaults to the worker concurrency.",
    )
    poll_interval_seconds: int = Field(
        5, ge=1, le=300, description="How often the broker's queues are measured."
    )
    activation_threshold: int = Field(
        0, ge=0, le=100000, description="Backlog that must be exceeded to leave zero replicas."
    )
    idle_seconds_before_zero: int = Field(
        120,
        ge=0,
        le=86400,
        description="Idle time (nothing waiting, reserved or running) before scaling to zero.",
    )
    scale_up: ScalingRules | None = Field(None, description="Scale-up behaviour.")
    scale_down: ScalingRules | None = Field(None, description="Scale-down behaviour.")


class WorkerPoolSpec(Model):
    """Desired state of a WorkerPool."""

    model_config = with_rules(
        cel(
            "self.runtime != 'celery' || has(self.app)",
            "spec.app is required for the celery runtime (for example proj.celery:app)",
            ".app",
        ),
        cel(
            "!has(self.softTimeLimitSeconds) || !has(self.timeLimitSeconds)"
            " || self.softTimeLimitSeconds < self.timeLimitSeconds",
            "spec.softTimeLimitSeconds must be less than spec.timeLimitSeconds",
            ".softTimeLimitSeconds",
        ),
        cel(
            "self.runtime != 'pyworkflow' || !has(self.resultBackend)"
            " || !has(self.resultBackend.brokerRef)"
            " || self.resultBackend.brokerRef.name == self.brokerRef.name",
            "spec.resultBackend.brokerRef must name spec.brokerRef for the pyworkflow runtime "
            "(PyWorkflow uses one Sentinel master for both)",
            ".resultBackend",
        ),
    )

    broker_ref: LocalObjectReference = Field(
        description="The WorkflowBroker the workers consume from."
    )
    result_backend: ResultBackend = Field(
        default_factory=ResultBackend, description="Where results go (default: the broker)."
    )
    runtime: Literal["celery", "pyworkflow"] = Field(
        "celery",
        description="celery: `celery -A <app> worker`; pyworkflow: `pyworkflow worker run`.",
    )
    image: str = Field(min_length=1, max_length=512, description="Worker image with the app.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        None, description="Image pull policy."
    )
    app: str | None = Field(
        None,
        max_length=256,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_.]*)?$",
        description="Celery app, as for `celery -A` (module or module:attribute).",
    )
    queues: list[QueueName] = Field(
        default_factory=lambda: ["celery"],
        min_length=1,
        max_length=32,
        description="Queues to consume (default: celery).",
        json_schema_extra={"default": ["celery"], "x-kubernetes-list-type": "set"},
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Worker processes/threads per pod; default from the container CPU limit "
        "(never the node's CPU count), 1 without a limit.",
    )
    pool: Literal["prefork", "threads", "solo", "gevent", "eventlet"] = Field(
        "prefork", description="Celery execution pool."
    )
    prefetch_multiplier: int = Field(
        1, ge=1, le=1000, description="Messages each worker slot reserves ahead (Celery default 4)."
    )
    acks_late: bool | None = Field(
        None, description="Acknowledge after the task ran; unset keeps the app's setting."
    )
    soft_time_limit_seconds: int | None = Field(
        None, ge=1, le=604800, description="Soft time limit (SoftTimeLimitExceeded in the task)."
    )
    time_limit_seconds: int | None = Field(
        None, ge=1, le=604800, description="Hard time limit: the task's process is killed."
    )
    max_tasks_per_child: int | None = Field(
        None, ge=1, le=1000000, description="Recycle a worker process after this many tasks."
    )
    max_memory_per_child_kb: int | None = Field(
        None, ge=1024, description="Recycle a worker process above this resident memory (KiB)."
    )
    soft_shutdown_seconds: int = Field(
        0,
        ge=0,
        le=86400,
        description="Celery 5.5+ soft shutdown: on SIGTERM, wait this long for running tasks "
        "before a cold shutdown requeues them.",
    )
    visibility_timeout_seconds: int = Field(
        3600,
        ge=60,
        le=2592000,
        description="Seconds before an unacknowledged task is redelivered; must exceed the "
        "longest task and ETA.",
    )
    queue_keys: QueueKeys | None = Field(
        None, description="How the app names its Redis keys (prefix, priority steps)."
    )
    extra_args: list[Annotated[str, Field(max_length=1024)]] | None = Field(
        None, max_length=64, description="Extra worker command-line arguments, appended as is."
    )
    env: KubeObjectList | None = Field(None, description="Extra environment (core/v1 EnvVar).")
    env_from: KubeObjectList | None = Field(None, description="Environment sources (core/v1).")
    resources: ResourceRequirements | None = Field(None, description="Worker container resources.")
    pod: PodSettings | None = Field(None, description="Placement and pod settings.")
    replicas: int = Field(
        1, ge=0, le=1000, description="Replicas when autoscaling is off (scale subresource)."
    )
    autoscaling: Autoscaling | None = Field(None, description="Scale on the backlog.")


class QueueStatus(Model):
    name: str = Field(description="Queue name.")
    waiting: int = Field(0, description="Messages in the queue and its priority lists.")
    reserved: int = Field(0, description="Delivered to a worker, not yet acknowledged.")
    eta: int = Field(0, description="Reserved tasks held for a future ETA/countdown.")
    running: int = Field(0, description="Tasks executing now.")


class WorkerPoolStatus(CommonStatus):
    """Observed state of a WorkerPool."""

    replicas: int | None = Field(None, description="Worker pods (scale subresource).")
    ready_replicas: int | None = Field(None, description="Ready worker pods.")
    desired_replicas: int | None = Field(None, description="What the autoscaler wants.")
    selector: str | None = Field(
        None, description="Label selector of the pods (scale subresource)."
    )
    backlog: int | None = Field(None, description="waiting + reserved + running over all queues.")
    queues: list[QueueStatus] | None = Field(None, description="Per-queue counts.")
    last_scale_time: str | None = Field(None, description="When replicas last changed (RFC 3339).")
    last_scale_reason: str | None = Field(None, description="Why replicas last changed.")
