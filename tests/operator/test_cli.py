"""``memstore operator``: the CLI entry, and the service importing nothing of the operator."""

from __future__ import annotations

import subprocess
import sys


def test_service_cli_does_not_import_the_operator() -> None:
    code = (
        "import sys, memstore.cli, memstore.server.app; "
        "assert 'memstore_operator' not in sys.modules; "
        "assert 'kopf' not in sys.modules; assert 'kubernetes' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_operator_subcommand_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "memstore", "operator", "--help"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "Run the Kubernetes operator for MemoryStore resources" in out.stdout
    assert "--namespace" in out.stdout
