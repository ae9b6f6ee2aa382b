"""Schemathesis with every check it has, over every operation of a live service: the
shared runner of the schema fuzz tests (auth off in tests/api, auth on in tests/security).

It runs ``schemathesis run --checks all`` as schemathesis' own CLI does (all phases:
coverage, which sends the undeclared methods and missing headers; fuzzing, positive and
negative; stateful sequences along the document's OpenAPI links), against a real
``memstore serve`` process, deterministically. The JSON run report says what ran; the
test fails on any failure, error or untested operation, and prints the CLI's report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from memstore.server.routes import ROUTES

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")

# Operations that take a cursor: a string matching the cursor's pattern is still not one
# the server issued (the document says so), so "positive data" may be answered 400.
# schemathesis_hooks.py's check then requires the 400 to be for that reason.
CURSOR_OPERATIONS = sorted(
    r.operation_id for r in ROUTES if any(p.name == "cursor" for p in r.params)
)

# Operations with a JSON body: an integer literal wider than 64 bits is a 400, a rule the
# document states in words only (JSON Schema cannot tell 10**20 from 1e20, which is
# stored), so generated "positive" bodies may hold one (and the hook's check requires the
# 400 to say so).
BODY_OPERATIONS = sorted(r.operation_id for r in ROUTES if r.body is not None)

# Operations with an analytics window (``bucket``, ``since``, ``until``): a ``since`` after
# ``until``, or a window of more buckets than the document's stated maximum, is a 400 the
# parameters' descriptions state in words (JSON Schema cannot compare two parameters).
WINDOW_OPERATIONS = sorted(
    r.operation_id for r in ROUTES if {"bucket", "since"} <= {p.name for p in r.params}
)

# Operations with a raw body (the import's dump): any text is schema-valid, only an intact
# dump is accepted (a 400 ``invalid_dump`` otherwise, as the operation's description says).
RAW_BODY_OPERATIONS = sorted(r.operation_id for r in ROUTES if r.raw_body is not None)

# An entity read "as of" takes a version or an instant, not both (a 400 its parameters'
# descriptions state; JSON Schema cannot relate two query parameters).
AS_OF_OPERATIONS = sorted(
    r.operation_id for r in ROUTES if {"as_of", "as_of_version"} <= {p.name for p in r.params}
)

# Creating a snapshot whose name is taken is a 409 ``already_exists`` (the route says so):
# generated requests repeat names. (Body operations too: one entry says both.)
NEW_NAME_OPERATIONS = ["createSnapshot"]

REFUSABLE_OPERATIONS = sorted(
    set(
        CURSOR_OPERATIONS
        + BODY_OPERATIONS
        + WINDOW_OPERATIONS
        + RAW_BODY_OPERATIONS
        + AS_OF_OPERATIONS
    )
    - set(NEW_NAME_OPERATIONS)
)

# 412 answers a well-formed conditional request whose precondition does not hold (a
# random If-Match, or If-None-Match: * on an entity that exists).
POSITIVE = ["2xx", "3xx", "404", "412"]


def config_toml(max_examples: int, bearer: str | None) -> str:
    lines = [
        "workers = 1",
        "[generation]",
        f"max-examples = {max_examples}",
        "deterministic = true",
        'database = "none"',
        "[checks.positive_data_acceptance]",
        f"expected-statuses = {json.dumps(POSITIVE)}",
        "[[operations]]",
        f'include-operation-id-regex = "^({"|".join(REFUSABLE_OPERATIONS)})$"',
        f"checks.positive_data_acceptance.expected-statuses = {json.dumps([*POSITIVE, '400'])}",
        "[[operations]]",
        f'include-operation-id-regex = "^({"|".join(NEW_NAME_OPERATIONS)})$"',
        "checks.positive_data_acceptance.expected-statuses = "
        f"{json.dumps([*POSITIVE, '400', '409'])}",
    ]
    if bearer is not None:
        # OpenAPI-aware: sent where the document asks for it, left out when schemathesis
        # checks that the server refuses the request without it (ignored_auth).
        lines += ["[auth.openapi.bearerAuth]", f'bearer = "{bearer}"']
    return "\n".join(lines) + "\n"


def run_schemathesis(
    url: str, workdir: Path, *, max_examples: int, bearer: str | None = None
) -> dict[str, Any]:
    """Run every check over every operation; return the JSON report after asserting that
    nothing failed."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "schemathesis.toml"
    config.write_text(config_toml(max_examples, bearer))
    report_path = workdir / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "--no-color",
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--report",
            "json",
            "--report-json-path",
            str(report_path),
        ],
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
        cwd=workdir,  # its .schemathesis cache stays in the test's directory
        capture_output=True,
        text=True,
        check=False,
    )
    assert report_path.exists(), proc.stdout + proc.stderr
    report: dict[str, Any] = json.loads(report_path.read_text())
    summary = {k: report[k] for k in ("operations", "test_cases", "failures", "errors")}
    assert proc.returncode == 0, f"{summary}\n{proc.stdout}{proc.stderr}"
    assert report["failures"] == [] and report["errors"] == [], proc.stdout
    assert report["complete"] and report["stop_reason"] == "completed", summary
    # Every operation of the route table but the document itself, which schemathesis
    # leaves out of a run on the document's own URL.
    expected = {f"{r.method} {r.path}" for r in ROUTES if r.path != "/openapi.json"}
    assert set(report["valid_rates"]) == expected, report["valid_rates"].keys()
    ops = report["operations"]
    assert ops["tested"] == ops["total"] == len(expected), (ops, proc.stdout)
    for phase in ("coverage", "fuzzing", "stateful"):
        assert report["phases"][phase]["status"] == "success", (report["phases"], proc.stdout)
    return report
