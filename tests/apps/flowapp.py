"""A PyWorkflow module for pools with the pyworkflow runtime."""

from __future__ import annotations

from pyworkflow import step, workflow  # type: ignore[import-untyped]


@step()
async def double(x: int) -> int:
    return 2 * x


@workflow()
async def doubling(x: int) -> int:
    return await double(x)
