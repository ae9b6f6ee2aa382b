"""``--token`` like ``--url`` and ``-n``: before or after the command, the later one wins,
``MEMSTORE_TOKEN`` beneath both; against a real service with auth on."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.run import ok, run
from tests.security.conftest import write_tokens_file
from tests.support.procs import ServiceProcess, running_service

TOKEN = secrets.token_urlsafe(24)
WRONG = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def auth_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    data = tmp_path_factory.mktemp("cli-auth")
    tokens = write_tokens_file(
        Path(data) / "tokens.json", [("cli", TOKEN, ["cli-auth"], ["read", "write"])]
    )
    env = {"MEMSTORE_AUTH_ENABLED": "true", "MEMSTORE_AUTH_TOKENS_FILE": str(tokens)}
    with running_service(data, env) as svc:
        yield svc


def test_the_token_goes_before_or_after_the_command(auth_service: ServiceProcess) -> None:
    target = ("--url", auth_service.url, "-n", "cli-auth")
    refused = run(*target, "tools")
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: unauthorized: ")
    assert ok(*target, "tools", env={"MEMSTORE_TOKEN": TOKEN}) == "[]\n"
    assert ok("--token", TOKEN, *target, "tools") == "[]\n"
    assert ok(*target, "tools", "--token", TOKEN) == "[]\n"
    assert ok("--token", WRONG, *target, "tools", "--token", TOKEN) == "[]\n"
    assert ok(*target, "tools", "--token", TOKEN, env={"MEMSTORE_TOKEN": WRONG}) == "[]\n"
    wrong = run("--token", TOKEN, *target, "tools", "--token", WRONG)
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("Error: unauthorized: ")
    assert WRONG not in wrong.stderr and TOKEN not in wrong.stderr
