"""The MemoryStore CRD documents itself: every field has a description, and `kubectl
explain` (the kubectl built from the apiserver's module) shows it from the real
kube-apiserver's published OpenAPI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memstore_operator.model import crd
from tests.servers.kube import KubeAPI
from tests.support.waiting import wait_for

# The API server documents metadata itself (ObjectMeta) and refuses anything in the CRD's
# metadata schema but name/generateName restrictions, a description included.
DOCUMENTED_BY_KUBERNETES = {"metadata"}


def root_schema() -> dict[str, Any]:
    (version,) = crd()["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def fields(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property of the schema, at any depth (list items and map values included),
    as (dotted path, schema)."""
    for name, sub in (node.get("properties") or {}).items():
        where = f"{path}.{name}" if path else name
        yield where, sub
        yield from fields(sub, where)
    if isinstance(node.get("items"), dict):
        yield from fields(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from fields(node["additionalProperties"], f"{path}.*")


def test_every_field_has_a_description() -> None:
    assert root_schema().get("description")
    paths = [p for p, _ in fields(root_schema())]
    assert "spec.backend.redis.tls.caSecretRef.key" in paths  # the walk goes deep
    assert "status.conditions[].reason" in paths  # through list items
    missing = [
        path
        for path, schema in fields(root_schema())
        if path not in DOCUMENTED_BY_KUBERNETES and not str(schema.get("description", "")).strip()
    ]
    assert not missing, f"CRD fields without a description: {missing}"


def description(path: str) -> str:
    node = root_schema()
    for part in path.split("."):
        node = node["properties"][part]
    return str(node["description"])


def words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize(
    "path",
    [
        "spec.backend.redis.tls.verifyHostname",
        "spec.backend.embedded.size",
        "spec.probes.readiness.periodSeconds",
        "status.phase",
    ],
)
def test_kubectl_explain_shows_the_description(crd: Path, kube_api: KubeAPI, path: str) -> None:
    """What a user types; the API server publishes the CRD's schema asynchronously after
    it is established, so the first answers may not know the field yet."""

    def explain() -> str | None:
        out = kube_api.cluster.kubectl("explain", f"memorystores.{path}", check=False)
        return out.stdout if out.returncode == 0 else None

    text = wait_for(explain, f"kubectl explain memorystores.{path}")
    assert f"FIELD: {path.rsplit('.', 1)[1]}" in text, text
    assert words(description(path)) in words(text), text


def test_kubectl_explain_lists_the_documented_fields(crd: Path, kube_api: KubeAPI) -> None:
    """One level of explain: each field of spec.backend.redis with its description."""

    def explain() -> str | None:
        out = kube_api.cluster.kubectl("explain", "memorystores.spec.backend.redis", check=False)
        return out.stdout if out.returncode == 0 else None

    text = words(wait_for(explain, "kubectl explain memorystores.spec.backend.redis"))
    for name in ("host", "port", "db", "prefix", "passwordSecretRef", "username", "tls"):
        assert words(description(f"spec.backend.redis.{name}")) in text, (name, text)
