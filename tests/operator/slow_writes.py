"""The operator with a pause before every write to the API server, so that a test's
SIGKILL lands between two writes of one reconcile (a half-done reconcile) rather than
mostly between reconciles.

``python -m tests.operator.slow_writes SECONDS [memstore-operator options]``, run from
the repository root by :class:`tests.operator.conftest.OperatorProcess`. The pause wraps
the writing methods of :class:`memstore_operator.kube.Kube` in this test process only.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any

from memstore_operator.cli import main
from memstore_operator.kube import Kube

WRITES = ("apply", "create_secret_if_absent", "delete_secret", "patch_status")


def pause_before_writes(seconds: float) -> None:
    def slowed(write: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(write)
        def paused(self: Kube, *args: Any, **kwargs: Any) -> Any:
            time.sleep(seconds)
            return write(self, *args, **kwargs)

        return paused

    for name in WRITES:
        setattr(Kube, name, slowed(getattr(Kube, name)))


if __name__ == "__main__":
    pause_before_writes(float(sys.argv[1]))
    main(sys.argv[2:], prog_name="memstore-operator")
