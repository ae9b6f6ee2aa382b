"""``python -m tests.support.standby_serve``: ``memstore serve`` started up to its imports,
then waiting for a line on stdin before it serves (end of input: it exits, having served
nothing). :class:`tests.support.procs.ServiceProcess` starts one this way, with the same
environment, while the service it replaces still runs, for tests that kill the service
and start it again many times: a restart then costs what ``serve`` does, not the seconds
of imports before it. Nothing of the store is opened before the line arrives.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # What ``memstore serve`` imports with one worker (memstore/cli.py, ``serve``).
    import memstore.core.settings
    import memstore.observability.logs
    import memstore.server.app  # noqa: F401
    from memstore.cli import main

    if not sys.stdin.readline():
        sys.exit(0)
    main(["serve"], prog_name="memstore")
