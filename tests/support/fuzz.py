"""Schemathesis pieces shared by the schema fuzz tests (auth off in tests/api, auth on in
tests/security): which operations and modes to run, and how one operation is fuzzed."""

from __future__ import annotations

from typing import Any

import hypothesis
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

from memstore.server.routes import ROUTES

# The document does not describe itself.
OPERATIONS = [(r.method, r.path) for r in ROUTES if r.path != "/openapi.json"]
_TAKES_INPUT = {(r.method, r.path): bool(r.params or r.body) for r in ROUTES}
# Negative examples need something to break: operations without parameters or body have none.
CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in schemathesis.GenerationMode
    if mode is schemathesis.GenerationMode.POSITIVE or _TAKES_INPUT[(method, path)]
]
CASE_IDS = [f"{m} {p} {g.value}" for m, p, g in CASES]

# A cursor is an opaque token the server issued; a random string that fits the schema is
# still not one, so rejecting it with 400 is right and "positive data" does not apply.
_OPAQUE_PARAMS = {"cursor"}

SETTINGS = hypothesis.settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
    database=None,
)


def excluded_checks(case: schemathesis.Case[Any]) -> list[Any] | None:
    """Checks that do not apply to ``case`` (positive-data acceptance with an opaque param)."""
    return [positive_data_acceptance] if _OPAQUE_PARAMS & set(case.query or {}) else None


def load_schema(url: str, **extra: Any) -> schemathesis.BaseSchema:
    """The live service's document; ``extra`` adds schemathesis config (auth, modes)."""
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {
            # 412 answers a well-formed conditional request whose precondition does not hold.
            "checks": {
                "positive_data_acceptance": {"expected-statuses": ["2xx", "3xx", "404", "412"]}
            },
            **extra,
        }
    )
    return schemathesis.openapi.from_url(url + "/openapi.json", config=config)


def fuzz_operation(
    schema: schemathesis.BaseSchema,
    method: str,
    path: str,
    mode: schemathesis.GenerationMode,
    additional_checks: list[Any] | None = None,
) -> None:
    """100 examples of one operation in one mode: no 5xx, responses match the document;
    positive examples must be accepted, negative ones rejected with a documented 4xx."""
    operation = schema[path][method]

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @SETTINGS
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(
            excluded_checks=excluded_checks(case), additional_checks=additional_checks
        )

    run()
