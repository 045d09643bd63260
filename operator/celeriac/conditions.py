"""Pure helpers for status conditions (metav1.Condition semantics)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

Condition = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def set_condition(
    existing: Iterable[Mapping[str, Any]] | None,
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """Return the conditions with one of them set; lastTransitionTime only moves when
    the status flips, so watchers can tell how long a state has lasted."""
    out: list[Condition] = []
    found = False
    for cond in existing or ():
        if cond.get("type") != type_:
            out.append(dict(cond))
            continue
        found = True
        since = cond.get("lastTransitionTime") if cond.get("status") == status else now
        out.append(_condition(type_, status, reason, message, generation, since or now))
    if not found:
        out.append(_condition(type_, status, reason, message, generation, now))
    return out


def get_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Condition | None:
    for cond in conditions or ():
        if cond.get("type") == type_:
            return dict(cond)
    return None


def _condition(
    type_: str, status: str, reason: str, message: str, generation: int | None, since: str
) -> Condition:
    cond: Condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond
