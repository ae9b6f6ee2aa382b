"""Schema-driven fuzzing of the live service: no 5xx, every response matches /openapi.json.

Schemathesis generates requests from the served document (valid and invalid ones) against
a real ``memstore serve`` process, and checks status codes, content types, headers and
bodies against the same document. One test per operation of the route table, 100 examples
each. (``schemathesis.pytest.from_fixture`` trips over pytest 9's node ids, so the
operations are parametrised from the route table and driven through Hypothesis directly.)
"""

from __future__ import annotations

import pytest
import schemathesis
from schemathesis.core.result import Ok

from tests.support.fuzz import CASE_IDS, CASES, OPERATIONS, fuzz_operation, load_schema
from tests.support.procs import ServiceProcess


@pytest.fixture(scope="module")
def api_schema(live_service: ServiceProcess) -> schemathesis.BaseSchema:
    return load_schema(live_service.url)


def test_every_route_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    served = set()
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        served.add((result.ok().method.upper(), result.ok().path))
    assert served == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=CASE_IDS)
def test_operation_conforms_to_the_schema(
    api_schema: schemathesis.BaseSchema,
    method: str,
    path: str,
    mode: schemathesis.GenerationMode,
) -> None:
    fuzz_operation(api_schema, method, path, mode)
