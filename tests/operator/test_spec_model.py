"""The spec models and the CRD agree: every CRD property is a model field and the other
way round, a property the CRD defaults is a required field (the model holds no default of
its own), and the operator's defaulting of a bare spec gives what the real API server
stores for it."""

from __future__ import annotations

import copy
import json
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from memstore_operator import model
from memstore_operator.model import MemoryStoreSpec, parse_spec, spec_schema, with_defaults
from tests.operator.conftest import CRD_FILE, Cluster
from tests.servers.kube import KubeAPI


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``X``, ``X | None`` or ``tuple[X, ...]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = nested_model(arg)
        if found is not None:
            return found
    return None


def disagreements(cls: type[BaseModel], schema: dict[str, Any], path: str) -> list[str]:
    props: dict[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    fields = {(f.alias or name): f for name, f in cls.model_fields.items()}
    out = [f"{path}.{k}: in the CRD, not in {cls.__name__}" for k in props if k not in fields]
    out += [f"{path}.{k}: in {cls.__name__}, not in the CRD" for k in fields if k not in props]
    for key, field in fields.items():
        sub = props.get(key)
        if sub is None:
            continue
        where = f"{path}.{key}"
        if "default" in sub and not field.is_required():
            out.append(f"{where}: the CRD defaults it, the model has a default of its own")
        if "default" not in sub and key not in required and field.is_required():
            out.append(f"{where}: optional in the CRD (no default), required in the model")
        if key in required and "default" not in sub and not field.is_required():
            out.append(f"{where}: required in the CRD, optional in the model")
        inner = nested_model(field.annotation)
        if inner is not None:
            node = sub["items"] if sub.get("type") == "array" else sub
            # a map of objects (dict[str, X]): the schema of its values
            node = node.get("additionalProperties", node)
            out += disagreements(inner, node, where)
    return out


def test_the_models_mirror_the_crd_and_declare_none_of_its_defaults() -> None:
    assert disagreements(MemoryStoreSpec, spec_schema(), "spec") == []


def test_the_agreement_check_catches_a_default_in_the_model() -> None:
    """The check above can fail: a model that re-declares a CRD default is reported."""

    class Cache(model.SpecModel):
        ttl_seconds: float = 30
        max_entries: int
        memcached: model.Memcached | None = None

    schema = spec_schema()["properties"]["cache"]
    assert disagreements(Cache, schema, "spec.cache") == [
        "spec.cache.ttlSeconds: the CRD defaults it, the model has a default of its own"
    ]


def test_the_packaged_crd_is_the_charts() -> None:
    assert model.crd() == yaml.safe_load(CRD_FILE.read_text())


def test_a_bare_spec_takes_every_value_from_the_crd() -> None:
    schema = spec_schema()["properties"]
    spec = parse_spec("m", "ns", {"backend": {"type": "embedded"}})
    assert spec.replicas == schema["replicas"]["default"]
    assert spec.workers == schema["workers"]["default"] == 1
    assert spec.image == schema["image"]["default"]
    assert spec.resources == schema["resources"]["default"]
    assert spec.cache.ttl_seconds == schema["cache"]["properties"]["ttlSeconds"]["default"]
    probe = schema["probes"]["properties"]["liveness"]["properties"]
    assert spec.probes.readiness.period_seconds == probe["periodSeconds"]["default"]
    embedded = schema["backend"]["properties"]["embedded"]["properties"]
    assert spec.backend.embedded is not None
    assert spec.backend.embedded.size == embedded["size"]["default"]


# Specs as a user writes them (the backend's section given: the API server does not make
# one up), with partly filled nested objects.
SPECS: dict[str, dict[str, Any]] = {
    "embedded": {"backend": {"type": "embedded", "embedded": {}}},
    "redis": {
        "backend": {"type": "redis", "redis": {"host": "r"}},
        "probes": {"liveness": {"periodSeconds": 7}},
        "telemetry": {"serviceMonitor": {"enabled": True}},
        "auth": {"secretRef": {"name": "tok"}},
    },
    "mongodb": {
        "backend": {"type": "mongodb", "mongodb": {"uriSecretRef": {"name": "m", "key": "u"}}},
        "imagePullSecrets": [{"name": "pull"}],
        "scheduling": {"tolerations": [{"key": "k", "operator": "Exists"}]},
        "disruptionBudget": {"maxUnavailable": 2},
    },
}


@pytest.mark.parametrize("case", sorted(SPECS))
def test_defaults_as_the_api_server_applies_them(
    crd: Path, kube_api: KubeAPI, kube_namespace: str, case: str
) -> None:
    c = Cluster(kube_api, kube_namespace)
    raw = SPECS[case]
    c.apply(f"d-{case.lower()}", copy.deepcopy(raw))
    stored = c.store(f"d-{case.lower()}")["spec"]
    assert json.dumps(with_defaults(raw), sort_keys=True) == json.dumps(stored, sort_keys=True)
    assert parse_spec("d", kube_namespace, stored) == parse_spec("d", kube_namespace, raw)


def test_nested_model_finds_models_in_unions_and_tuples() -> None:
    assert nested_model(model.Redis | None) is model.Redis
    assert nested_model(tuple[model.ImagePullSecret, ...]) is model.ImagePullSecret
    assert nested_model(types.NoneType) is None
