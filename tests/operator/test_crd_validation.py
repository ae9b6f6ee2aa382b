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

REDIS: dict[str, Any] = {"type": "redis", "redis": {"host": "redis.example"}}

BAD: list[tuple[str, dict[str, Any], str]] = [
    ("wrong-backend-enum", {"backend": {"type": "postgres"}}, 'Unsupported value: "postgres"'),
    (
        "negative-replicas",
        {"replicas": -1, "backend": REDIS},
        "spec.replicas in body should be greater than or equal to 0",
    ),
    (
        "embedded-with-3-replicas",
        {"replicas": 3, "backend": {"type": "embedded"}},
        "the embedded backend keeps its data in one pod: replicas must be 0 or 1",
    ),
    (
        "password-ref-without-key",
        {"backend": {"type": "redis", "redis": {"host": "r", "passwordSecretRef": {"name": "s"}}}},
        "spec.backend.redis.passwordSecretRef.key: Required value",
    ),
    (
        "password-given-inline",
        {"backend": {"type": "redis", "redis": {"host": "r", "password": "hunter2"}}},
        'unknown field "spec.backend.redis.password"',
    ),
    (
        "unknown-backend-field",
        {"backend": {"type": "redis", "redis": {"hostname": "r"}}},
        'unknown field "spec.backend.redis.hostname"',
    ),
    (
        "type-without-its-section",
        {"backend": {"type": "redis"}},
        "backend.redis must be set exactly when backend.type is redis",
    ),
    (
        "section-of-another-type",
        {"backend": {"type": "embedded", "redis": {"host": "r"}}},
        "backend.redis must be set exactly when backend.type is redis",
    ),
    (
        "mongodb-without-uri-secret",
        {"backend": {"type": "mongodb", "mongodb": {"database": "x"}}},
        "spec.backend.mongodb.uriSecretRef: Required value",
    ),
    (
        "port-out-of-range",
        {"backend": {"type": "redis", "redis": {"host": "r", "port": 70000}}},
        "spec.backend.redis.port in body should be less than or equal to 65535",
    ),
    (
        "redis-cluster-without-nodes",
        {"backend": {"type": "redisCluster", "redisCluster": {"nodes": []}}},
        "spec.backend.redisCluster.nodes in body should have at least 1 items",
    ),
    (
        "cluster-node-without-port",
        {"backend": {"type": "redisCluster", "redisCluster": {"nodes": ["r1"]}}},
        "spec.backend.redisCluster.nodes[0] in body should match",
    ),
    (
        "bad-memory-namespace",
        {"memoryNamespace": "a/b", "backend": REDIS},
        "spec.memoryNamespace in body should match",
    ),
    (
        "pdb-both-min-and-max",
        {"backend": REDIS, "disruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}},
        "set at most one of disruptionBudget.minAvailable and disruptionBudget.maxUnavailable",
    ),
    (
        "sampling-ratio-above-one",
        {"backend": REDIS, "telemetry": {"samplingRatio": 1.5}},
        "spec.telemetry.samplingRatio in body should be less than or equal to 1",
    ),
    (
        "otlp-endpoint-not-http",
        {"backend": REDIS, "telemetry": {"otlpEndpoint": "ftp://collector:4318"}},
        "spec.telemetry.otlpEndpoint in body should match",
    ),
    (
        "auth-secret-with-auth-off",
        {"backend": REDIS, "auth": {"enabled": False, "secretRef": {"name": "t"}}},
        "auth.secretRef is only used when auth.enabled is true",
    ),
    (
        "image-pull-policy-enum",
        {"backend": REDIS, "imagePullPolicy": "Sometimes"},
        'spec.imagePullPolicy: Unsupported value: "Sometimes"',
    ),
    (
        "storage-class-with-emptydir",
        {
            "backend": {
                "type": "embedded",
                "embedded": {"storage": "emptyDir", "storageClassName": "x"},
            }
        },
        "storageClassName only applies to storage persistentVolumeClaim",
    ),
    ("missing-backend", {"replicas": 1}, "spec.backend: Required value"),
]


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
    assert spec["auth"] == {"enabled": True}
    assert spec["backend"] == {"type": "embedded"}  # its section's defaults: the operator's
    assert spec["cache"] == {"ttlSeconds": 30, "maxEntries": 10000}
    assert spec["probes"]["liveness"]["periodSeconds"] == 10
    assert spec["disruptionBudget"] == {"enabled": True}


# -- Redis TLS and ACL user (kept apart from the table above) ----------------------------

REDIS_TLS_BAD: list[tuple[str, dict[str, Any], str]] = [
    (
        "tls-files-with-tls-off",
        {
            "type": "redis",
            "redis": {"host": "r", "tls": {"enabled": False, "caSecretRef": {"name": "ca"}}},
        },
        "tls.caSecretRef and tls.clientCertificateSecretRef need tls.enabled",
    ),
    (
        "tls-client-secret-bad-name",
        {
            "type": "redisCluster",
            "redisCluster": {
                "nodes": ["r:6379"],
                "tls": {"clientCertificateSecretRef": {"name": "Not_A_Name"}},
            },
        },
        "spec.backend.redisCluster.tls.clientCertificateSecretRef.name in body should match",
    ),
    (
        "tls-ca-ref-without-name",
        {"type": "redis", "redis": {"host": "r", "tls": {"caSecretRef": {"key": "ca.pem"}}}},
        "spec.backend.redis.tls.caSecretRef.name: Required value",
    ),
    (
        "tls-not-an-object",
        {"type": "redis", "redis": {"host": "r", "tls": True}},
        "spec.backend.redis.tls: Invalid value",
    ),
    (
        "tls-unknown-field",
        {"type": "redis", "redis": {"host": "r", "tls": {"insecureSkipVerify": True}}},
        'unknown field "spec.backend.redis.tls.insecureSkipVerify"',
    ),
    (
        "username-and-username-secret",
        {
            "type": "redisCluster",
            "redisCluster": {
                "nodes": ["r:6379"],
                "username": "memstore",
                "usernameSecretRef": {"name": "u", "key": "username"},
            },
        },
        "set at most one of username and usernameSecretRef",
    ),
    (
        "username-with-space",
        {"type": "redis", "redis": {"host": "r", "username": "mem store"}},
        "spec.backend.redis.username in body should match",
    ),
]


@pytest.mark.parametrize(
    ("case", "backend", "message"), REDIS_TLS_BAD, ids=[b[0] for b in REDIS_TLS_BAD]
)
def test_invalid_redis_tls_spec_is_rejected_by_the_apiserver(
    kube_api: KubeAPI, validation_ns: str, case: str, backend: dict[str, Any], message: str
) -> None:
    out = dry_run(kube_api, validation_ns, "bad", {"backend": backend})
    assert out.returncode != 0, f"{case} was accepted"
    assert message in out.stderr, out.stderr


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
