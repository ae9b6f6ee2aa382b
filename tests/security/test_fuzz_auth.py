"""Schemathesis against a live, auth-enabled service: every operation, 100 examples each in
positive and negative mode with an admin token, then stateful sequences along the
document's OpenAPI links. Checks: no 5xx, responses match the document, and (``ignored_auth``)
every operation that declares bearer auth refuses the same request without it.

Complements ``tests/api/test_fuzz.py`` (same service, auth off).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import ignored_auth

from memstore.server.routes import ROUTES
from tests.security.conftest import write_tokens_file
from tests.support.fuzz import CASE_IDS, CASES, excluded_checks, fuzz_operation, load_schema
from tests.support.procs import ServiceProcess, running_service

ADMIN_TOKEN = "fuzz-admin-token-5b0d1c2e9f"
# OpenAPI-aware: schemathesis sends the token where the document asks for it, and leaves
# it out when it tests what the server does without it.
AUTH = {"openapi": {"bearerAuth": {"bearer": ADMIN_TOKEN}}}


@pytest.fixture(scope="module")
def auth_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    data = tmp_path_factory.mktemp("fuzz-auth")
    tokens = write_tokens_file(
        Path(data) / "tokens.json", [("admin", ADMIN_TOKEN, ["*"], ["read", "write", "admin"])]
    )
    env = {"MEMSTORE_AUTH_ENABLED": "true", "MEMSTORE_AUTH_TOKENS_FILE": str(tokens)}
    with running_service(data, env) as svc:
        yield svc


@pytest.fixture(scope="module")
def api_schema(auth_service: ServiceProcess) -> schemathesis.BaseSchema:
    return load_schema(auth_service.url, auth=AUTH)


def test_the_document_declares_auth(api_schema: schemathesis.BaseSchema) -> None:
    raw = api_schema.raw_schema
    assert raw["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    secured = {
        (method.upper(), path)
        for path, item in raw["paths"].items()
        for method, op in item.items()
        if op.get("security")
    }
    assert secured == {
        (r.method, r.path)
        for r in ROUTES
        if r.operation_id not in ("livez", "readyz", "prometheusMetrics", "openapi")
    }
    assert raw["paths"]["/v1/namespaces/{namespace}/entities/{entity_type}/{entity_id}"]["put"][
        "responses"
    ]["201"]["links"]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=CASE_IDS)
def test_operation_conforms_with_auth(
    api_schema: schemathesis.BaseSchema, method: str, path: str, mode: schemathesis.GenerationMode
) -> None:
    fuzz_operation(api_schema, method, path, mode, additional_checks=[ignored_auth])


@pytest.mark.slow
def test_stateful_sequences_along_links(auth_service: ServiceProcess) -> None:
    # Sequences of valid requests (invalid ones are the stateless test's job).
    base = load_schema(
        auth_service.url, auth=AUTH, generation={"mode": "positive"}
    ).as_state_machine()

    scenarios = itertools.count()

    class WithToken(base):  # type: ignore[valid-type,misc]
        def setup(self) -> None:
            self.scenario = next(scenarios)

        def before_call(self, case: schemathesis.Case[Any]) -> None:
            # Every scenario in namespaces of its own: Hypothesis replays a scenario to
            # shrink it, and the replay must meet the same (empty) state.
            params = case.path_parameters
            if params and "namespace" in params:
                params["namespace"] = f"s{self.scenario}-{params['namespace']}"[:64]

        def validate_response(
            self, response: object, case: schemathesis.Case[Any], **kwargs: object
        ) -> None:
            # Links may carry a null next_cursor as "None": not a cursor the server issued.
            case.validate_response(
                response,
                excluded_checks=excluded_checks(case),
                additional_checks=[ignored_auth],
                transport_kwargs=kwargs,
            )

    WithToken.run(
        settings=hypothesis.settings(
            max_examples=100,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            derandomize=True,
            database=None,
        )
    )
