"""Schemathesis against the live service with auth off: every check schemathesis has
(``--checks all``: no 5xx, status codes, content types, headers and bodies as documented,
positive data accepted and negative data rejected, 405 with ``Allow`` for undeclared
methods, missing required headers, use after delete, resource availability), over every
operation of the route table, in every phase (coverage, fuzzing, stateful along the
document's links). ``tests/security/test_fuzz_auth.py`` does the same with auth on."""

from __future__ import annotations

from pathlib import Path

from tests.support.fuzz import run_schemathesis
from tests.support.procs import ServiceProcess

MAX_EXAMPLES = 60


def test_every_check_over_every_operation(live_service: ServiceProcess, tmp_path: Path) -> None:
    report = run_schemathesis(live_service.url, tmp_path, max_examples=MAX_EXAMPLES)
    assert report["test_cases"]["generated"] > 1000, report["test_cases"]
