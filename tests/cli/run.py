"""Running the installed ``memstore`` command as a user does, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sysconfig
from pathlib import Path

# The console script itself (not ``python -m``): completion and usage lines read the
# program's name.
MEMSTORE = str(Path(sysconfig.get_path("scripts")) / "memstore")

# Variables that would change what a command talks to, removed unless a test sets them.
_TARGET_ENV = ("MEMSTORE_URL", "MEMORY_NAMESPACE", "MEMSTORE_TOKEN", "MEMSTORE_LOG_LEVEL")


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in _TARGET_ENV}
    return subprocess.run(
        [MEMSTORE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        check=False,
    )


def ok(*args: str, env: dict[str, str] | None = None) -> str:
    """stdout of a command that must succeed."""
    result = run(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


__all__ = ["MEMSTORE", "ok", "run"]
