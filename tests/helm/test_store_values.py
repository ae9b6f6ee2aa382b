"""The chart's values schema agrees with the CRD: every MemoryStore spec the API server
rejects (tests/support/store_specs.py, the table tests/operator/test_crd_validation.py runs
against a real kube-apiserver) fails `helm template` as ``memoryStore.spec`` with the
schema's error at the same field, and every spec it accepts renders. So an invalid store in
values fails `helm install`, before anything reaches the cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helm.conftest import Helm
from tests.support.store_specs import BAD, RUNNABLE, UNRUNNABLE, json_pointer
from tools.chartgen import CHART

SCHEMA_ERROR = "values don't meet the specifications of the schema"


def template(helm: Helm, tmp_path: Path, values: dict[str, Any]) -> Any:
    # JSON is YAML: the spec goes in exactly as the API server would get it (no --set
    # type guessing).
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    return helm.run("template", "r", str(CHART), "-f", str(path), check=False)


@pytest.mark.parametrize(("case", "spec", "field"), UNRUNNABLE, ids=[u[0] for u in UNRUNNABLE])
def test_unrunnable_store_in_values_fails_at_its_field(
    helm: Helm, tmp_path: Path, case: str, spec: dict[str, Any], field: str
) -> None:
    out = template(helm, tmp_path, {"memoryStore": {"spec": spec}})
    assert out.returncode != 0, f"{case} rendered"
    assert SCHEMA_ERROR in out.stderr
    assert f"at '/memoryStore{json_pointer(case, field)}'" in out.stderr, out.stderr


# values.yaml's own spec gives backend {type: embedded}: helm merges a spec without a
# backend over it, so that one is valid as chart values.
CHART_BAD = [b for b in BAD if b[0] != "missing-backend"]


@pytest.mark.parametrize(("case", "spec", "message"), CHART_BAD, ids=[b[0] for b in CHART_BAD])
def test_invalid_store_shape_in_values_fails(
    helm: Helm, tmp_path: Path, case: str, spec: dict[str, Any], message: str
) -> None:
    out = template(helm, tmp_path, {"memoryStore": {"spec": spec}})
    assert out.returncode != 0, f"{case} rendered"
    assert SCHEMA_ERROR in out.stderr
    assert "at '/memoryStore/spec" in out.stderr, out.stderr


@pytest.mark.parametrize(("case", "spec"), RUNNABLE, ids=[r[0] for r in RUNNABLE])
def test_valid_store_in_values_renders(
    helm: Helm, tmp_path: Path, case: str, spec: dict[str, Any]
) -> None:
    out = template(helm, tmp_path, {"memoryStore": {"spec": spec}})
    assert out.returncode == 0, out.stderr
    assert "kind: MemoryStore" in out.stdout


@pytest.mark.parametrize(
    ("values", "pointer"),
    [
        ({"operator": {"resources": {"limits": {"memory": "-256Mi"}}}}, "/operator/resources"),
        ({"operator": {"resources": {"requests": {"cpu": -1}}}}, "/operator/resources"),
        (
            {"memoryStore": {"credentials": {"mongodbUri": "mongodb://"}}},
            "/memoryStore/credentials",
        ),
        (
            {"memoryStore": {"credentials": {"mongodbUri": "mongodb://db host/agent"}}},
            "/memoryStore/credentials",
        ),
        ({"prometheusRule": {"runbookUrl": "docs/runbook.md"}}, "/prometheusRule/runbookUrl"),
        ({"image": {"repository": "my registry/memstore"}}, "/image/repository"),
        ({"image": {"tag": "v1 beta"}}, "/image/tag"),
    ],
    ids=[
        "operator-negative-limit",
        "operator-negative-int",
        "mongodb-no-host",
        "mongodb-space",
        "runbook-not-a-url",
        "image-repository-space",
        "image-tag-space",
    ],
)
def test_chart_own_values_reject_unrunnable_values(
    helm: Helm, tmp_path: Path, values: dict[str, Any], pointer: str
) -> None:
    out = template(helm, tmp_path, values)
    assert out.returncode != 0
    assert SCHEMA_ERROR in out.stderr
    assert f"at '{pointer}" in out.stderr, out.stderr


MONGODB_URI = "mongodb+srv://u:p@db.example,db2:27017/agent?tls=true"


@pytest.mark.parametrize(
    "backend",
    [{"type": "mongodb"}, {"type": "mongodb", "mongodb": {"database": "agents"}}],
    ids=["section-from-credentials", "section-completed-by-credentials"],
)
def test_mongodb_uri_from_credentials_completes_the_spec(
    helm: Helm, tmp_path: Path, backend: dict[str, Any]
) -> None:
    out = template(
        helm,
        tmp_path,
        {
            "operator": {"resources": {"requests": {"cpu": "0.1", "memory": 134217728}}},
            "memoryStore": {
                "spec": {"backend": backend},
                "credentials": {"mongodbUri": MONGODB_URI},
            },
        },
    )
    assert out.returncode == 0, out.stderr
    assert "uriSecretRef" in out.stdout


def test_mongodb_without_uri_anywhere_fails(helm: Helm, tmp_path: Path) -> None:
    out = template(helm, tmp_path, {"memoryStore": {"spec": {"backend": {"type": "mongodb"}}}})
    assert out.returncode != 0
    assert SCHEMA_ERROR in out.stderr
    assert "missing property 'mongodb'" in out.stderr, out.stderr
