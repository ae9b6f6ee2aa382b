"""The CRD's schema and CEL rules, enforced by the real kube-apiserver (server-side dry
run through kubectl, which asks for strict field validation, so unknown fields are
errors rather than silently pruned). No operator involved."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.operator.conftest import GROUP, VERSION
from tests.servers.kube import KubeAPI
from tests.support.store_specs import BAD, REDIS, RUNNABLE, UNRUNNABLE


@pytest.fixture(scope="module")
def validation_ns(crd: Path, kube_api: KubeAPI) -> Iterator[str]:
    ns = "crd-validation"
    kube_api.cluster.kubectl("create", "namespace", ns, check=False)
    yield ns
    kube_api.cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def dry_run(kube: KubeAPI, ns: str, name: str, spec: dict[str, Any]) -> Any:
    doc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MemoryStore",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }
    return kube.cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(doc), check=False
    )


def test_a_valid_spec_passes(kube_api: KubeAPI, validation_ns: str) -> None:
    """The control case: the base objects of the table are valid when left alone."""
    for spec in ({"backend": REDIS}, {"backend": {"type": "embedded"}, "replicas": 1}):
        out = dry_run(kube_api, validation_ns, "ok", copy.deepcopy(spec))
        assert out.returncode == 0, out.stderr
        assert "created (server dry run)" in out.stdout


@pytest.mark.parametrize(("case", "spec", "message"), BAD, ids=[b[0] for b in BAD])
def test_invalid_spec_is_rejected_by_the_apiserver(
    kube_api: KubeAPI, validation_ns: str, case: str, spec: dict[str, Any], message: str
) -> None:
    out = dry_run(kube_api, validation_ns, "bad", spec)
    assert out.returncode != 0, f"{case} was accepted"
    assert message in out.stderr, out.stderr


@pytest.mark.parametrize(("case", "spec", "field"), UNRUNNABLE, ids=[u[0] for u in UNRUNNABLE])
def test_unrunnable_values_are_rejected_naming_the_field(
    kube_api: KubeAPI, validation_ns: str, case: str, spec: dict[str, Any], field: str
) -> None:
    out = dry_run(kube_api, validation_ns, "bad", spec)
    assert out.returncode != 0, f"{case} was accepted"
    assert field in out.stderr, out.stderr


@pytest.mark.parametrize(("case", "spec"), RUNNABLE, ids=[r[0] for r in RUNNABLE])
def test_valid_neighbours_are_accepted(
    kube_api: KubeAPI, validation_ns: str, case: str, spec: dict[str, Any]
) -> None:
    out = dry_run(kube_api, validation_ns, "good", spec)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a" * 53, "metadata.name must be a DNS label of at most 52 characters"),
        ("9lives", "metadata.name must be a DNS label of at most 52 characters"),
        ("dotted.name", "metadata.name must be a DNS label of at most 52 characters"),
    ],
    ids=["too-long", "starts-with-digit", "dotted"],
)
def test_invalid_name_is_rejected(
    kube_api: KubeAPI, validation_ns: str, name: str, message: str
) -> None:
    out = dry_run(kube_api, validation_ns, name, {"backend": REDIS})
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


def test_defaults_are_applied_by_the_apiserver(kube_api: KubeAPI, validation_ns: str) -> None:
    doc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MemoryStore",
        "metadata": {"name": "defaults", "namespace": validation_ns},
        "spec": {"backend": {"type": "embedded"}},
    }
    out = kube_api.cluster.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(doc)
    )
    spec = json.loads(out.stdout)["spec"]
    assert spec["replicas"] == 1
    assert spec["workers"] == 1
    # Left out: the operator sizes them by spec.workers (builders.container_resources).
    assert spec["resources"] == {}
    assert spec["auth"] == {"enabled": True}
    assert spec["backend"] == {"type": "embedded"}  # its section's defaults: the operator's
    assert spec["cache"] == {"ttlSeconds": 30, "maxEntries": 10000}
    assert spec["probes"]["liveness"]["periodSeconds"] == 10
    assert spec["disruptionBudget"] == {"enabled": True}


# -- Redis TLS and ACL user ---------------------------------------------------------------


def test_redis_tls_spec_is_accepted_with_its_defaults(
    kube_api: KubeAPI, validation_ns: str
) -> None:
    backend = {
        "type": "redis",
        "redis": {
            "host": "redis.example",
            "username": "memstore",
            "passwordSecretRef": {"name": "redis", "key": "password"},
            "tls": {
                "caSecretRef": {"name": "redis-ca"},
                "clientCertificateSecretRef": {"name": "memstore-redis-client"},
            },
        },
    }
    doc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MemoryStore",
        "metadata": {"name": "tls", "namespace": validation_ns},
        "spec": {"backend": backend},
    }
    out = kube_api.cluster.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(doc)
    )
    tls = json.loads(out.stdout)["spec"]["backend"]["redis"]["tls"]
    assert tls == {
        "enabled": True,
        "verifyHostname": True,
        "caSecretRef": {"name": "redis-ca", "key": "ca.crt"},
        "clientCertificateSecretRef": {"name": "memstore-redis-client"},
    }
