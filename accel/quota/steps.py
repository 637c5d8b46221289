"""Work done in steps: a generator that yields between sub-millisecond steps, so an event loop serves
other requests in between, and returns its result (accel.admission.context `context_steps`,
accel.quota.charges `ChargeMemo.usage_steps`, accel.admission.jobs `JobTypes.update_steps`,
accel.quota.pod_changes `diff_steps`). `finish_steps` runs the rest of one at once."""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

T = TypeVar("T")


def finish_steps(steps: Generator[None, None, T]) -> T:
    """Run the remaining steps of `steps` at once; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result
