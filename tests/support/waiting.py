"""Polling for convergence in tests against real servers (a deadline, not a timing assertion)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(fn: Callable[..., T | None], what: str = "condition", timeout: float = 120) -> T:
    """Poll until ``fn()`` returns something truthy and return it; exceptions count as
    "not yet" (an API object that does not exist yet, a server still starting). ``fn`` is
    called without arguments (``...`` lets a loop bind its variables as lambda defaults)."""
    deadline = time.monotonic() + timeout
    last: object = None
    # First checks close together (most conditions hold within a fraction of a second),
    # then every 0.3 s so that long waits do not busy the shared machine.
    pause = 0.02
    while time.monotonic() < deadline:
        try:
            value = fn()
        except Exception as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        time.sleep(pause)
        pause = min(pause * 2, 0.3)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")
