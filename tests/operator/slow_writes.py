"""The operator with a pause before every write to the API server, so that a test's
SIGKILL lands between two writes of one reconcile (a half-done reconcile) rather than
mostly between reconciles.

``python -m tests.operator.slow_writes SECONDS [--standby] [memstore-operator options]``,
run from the repository root by :class:`tests.operator.conftest.OperatorProcess`. The pause
wraps the writing methods of :class:`memstore_operator.kube.Kube` in this test process only.

``--standby``: import what the operator imports, then wait for a line on stdin before
running it (end of input: exit without running). A test that kills the operator many
times starts the next one this way while the current one runs, so each restart after a
kill skips the seconds of imports; the operator itself starts from nothing as before (its
state is in the API server).
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


def wait_for_go() -> bool:
    """The imports the operator does when it starts (``memstore_operator.cli.main``), then
    a line on stdin: True to run, False at the end of input (the test is gone)."""
    import kopf  # noqa: F401

    import memstore_operator.handlers  # noqa: F401

    return bool(sys.stdin.readline())


if __name__ == "__main__":
    pause_before_writes(float(sys.argv[1]))
    args = sys.argv[2:]
    if args[:1] == ["--standby"]:
        args = args[1:]
        if not wait_for_go():
            sys.exit(0)
    main(args, prog_name="memstore-operator")
