"""Schemathesis against a live, auth-enabled service: every check schemathesis has, over
every operation, in every phase, with an admin token that schemathesis sends where the
document asks for it (OpenAPI-aware) and leaves out to check that the server refuses the
request without it (``ignored_auth``). Complements ``tests/api/test_fuzz.py`` (auth off)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis

from memstore.server.routes import ROUTES
from tests.security.conftest import write_tokens_file
from tests.support.fuzz import run_schemathesis
from tests.support.procs import ServiceProcess, running_service

ADMIN_TOKEN = "fuzz-admin-token-5b0d1c2e9f"
MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def auth_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    data = tmp_path_factory.mktemp("fuzz-auth")
    tokens = write_tokens_file(
        Path(data) / "tokens.json", [("admin", ADMIN_TOKEN, ["*"], ["read", "write", "admin"])]
    )
    env = {
        "MEMSTORE_AUTH_ENABLED": "true",
        "MEMSTORE_AUTH_TOKENS_FILE": str(tokens),
        # Webhooks are stored but not delivered: fuzzed webhook URLs must not be called.
        "MEMSTORE_WEBHOOKS_ENABLED": "false",
        # long-polls of the fuzzer (every `wait` the document allows) stay short
        "MEMSTORE_CHANGES_MAX_WAIT_SECONDS": "0.2",
    }
    with running_service(data, env) as svc:
        yield svc


def test_the_document_declares_auth(auth_service: ServiceProcess) -> None:
    raw = schemathesis.openapi.from_url(auth_service.url + "/openapi.json").raw_schema
    assert raw["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    secured = {
        (method.upper(), path)
        for path, item in raw["paths"].items()
        for method, op in item.items()
        if op.get("security")
    }
    assert secured == {(r.method, r.path) for r in ROUTES if r.role is not None}
    assert raw["paths"]["/v1/namespaces/{namespace}/entities/{entity_type}/{entity_id}"]["put"][
        "responses"
    ]["201"]["links"]


def test_every_check_over_every_operation_with_auth(
    auth_service: ServiceProcess, tmp_path: Path
) -> None:
    report = run_schemathesis(
        auth_service.url, tmp_path, max_examples=MAX_EXAMPLES, bearer=ADMIN_TOKEN
    )
    assert report["test_cases"]["generated"] > 1000, report["test_cases"]
    assert report["warnings"]["missing_auth"] == [], report["warnings"]
