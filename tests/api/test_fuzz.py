"""Schema-driven fuzzing of the live service: no 5xx, every response matches /openapi.json.

Schemathesis generates requests from the served document (valid and invalid ones) against
a real ``memstore serve`` process, and checks status codes, content types, headers and
bodies against the same document. One test per operation of the route table, 100 examples
each. (``schemathesis.pytest.from_fixture`` trips over pytest 9's node ids, so the
operations are parametrised from the route table and driven through Hypothesis directly.)
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

from memstore.api.routes import ROUTES
from tests.support.procs import ServiceProcess

# The document does not describe itself.
# A cursor is an opaque token the server issued; a random string that fits the schema is
# still not one, so rejecting it with 400 is right and "positive data" does not apply.
OPAQUE_PARAMS = {"cursor"}

OPERATIONS = [(r.method, r.path) for r in ROUTES if r.path != "/openapi.json"]
TAKES_INPUT = {(r.method, r.path): bool(r.params or r.body) for r in ROUTES}


@pytest.fixture(scope="module")
def api_schema(live_service: ServiceProcess) -> schemathesis.BaseSchema:
    # 412 answers a well-formed conditional request whose precondition does not hold.
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {
            "checks": {
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "3xx", "404", "412"],
                }
            }
        }
    )
    return schemathesis.openapi.from_url(live_service.url + "/openapi.json", config=config)


def test_every_route_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    served = {
        (op.method.upper(), op.path)
        for result in api_schema.get_all_operations()
        for op in [result.ok()]
    }
    assert served == set(OPERATIONS)


# Negative examples need something to break: operations without parameters or body have none.
CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in schemathesis.GenerationMode
    if mode is schemathesis.GenerationMode.POSITIVE or TAKES_INPUT[(method, path)]
]


@pytest.mark.parametrize(
    ("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES]
)
def test_operation_conforms_to_the_schema(
    api_schema: schemathesis.BaseSchema,
    method: str,
    path: str,
    mode: schemathesis.GenerationMode,
) -> None:
    """Positive mode: schema-valid requests must be accepted; negative mode: invalid ones
    must be rejected with a documented 4xx. Both: no 5xx, responses match the document."""
    operation = api_schema[path][method]

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        opaque = OPAQUE_PARAMS & set(case.query or {})
        case.call_and_validate(excluded_checks=[positive_data_acceptance] if opaque else None)

    run()
