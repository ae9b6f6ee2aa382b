"""A MemoryStore with a secondary backend: the CRD's rules (real kube-apiserver), the
settings the pods get (read back by the service's own Settings), and the ``Degraded``
condition the operator sets from which backends answer (operator against the test
control plane, with real Redis servers)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memstore.core.settings import Settings
from memstore_operator import builders
from memstore_operator.model import InvalidSpec, parse_spec
from tests.operator.conftest import GROUP, VERSION, Cluster, OperatorProcess, store_selector
from tests.servers.kube import KubeAPI, free_port
from tests.support.waiting import wait_for

MONGO = {"type": "mongodb", "mongodb": {"uriSecretRef": {"name": "m", "key": "uri"}}}
REDIS = {"type": "redis", "redis": {"host": "redis.example"}}
VALID = {"backend": REDIS, "secondaryBackend": MONGO, "failureMode": "lenient"}

BAD: list[tuple[str, dict[str, Any], str]] = [
    (
        "secondary embedded",
        {"backend": REDIS, "secondaryBackend": {"type": "embedded"}},
        "secondaryBackend.type must be redis, redisCluster or mongodb",
    ),
    (
        "lenient without a secondary",
        {"backend": REDIS, "failureMode": "lenient"},
        "failureMode lenient needs a secondaryBackend",
    ),
    (
        "secondary section of another type",
        {"backend": REDIS, "secondaryBackend": {"type": "redis", "mongodb": MONGO["mongodb"]}},
        "secondaryBackend.redis must be set exactly when secondaryBackend.type is redis",
    ),
    (
        "secondary over TLS",
        {
            "backend": MONGO,
            "secondaryBackend": {"type": "redis", "redis": {"host": "r", "tls": {"enabled": True}}},
        },
        "secondaryBackend does not support Redis TLS yet",
    ),
    (
        "unknown failure mode",
        {"backend": REDIS, "secondaryBackend": MONGO, "failureMode": "maybe"},
        'Unsupported value: "maybe"',
    ),
]


@pytest.fixture(scope="module")
def validation_ns(crd: Path, kube_api: KubeAPI) -> Iterator[str]:
    ns = "failover-validation"
    kube_api.cluster.kubectl("create", "namespace", ns, check=False)
    yield ns
    kube_api.cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def dry_run(kube: KubeAPI, ns: str, spec: dict[str, Any]) -> Any:
    doc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MemoryStore",
        "metadata": {"name": "fo", "namespace": ns},
        "spec": spec,
    }
    return kube.cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(doc), check=False
    )


def test_a_store_with_a_secondary_is_accepted(kube_api: KubeAPI, validation_ns: str) -> None:
    out = dry_run(kube_api, validation_ns, copy.deepcopy(VALID))
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(("case", "spec", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_secondary_specs_are_refused(
    kube_api: KubeAPI, validation_ns: str, case: str, spec: dict[str, Any], message: str
) -> None:
    out = dry_run(kube_api, validation_ns, copy.deepcopy(spec))
    assert out.returncode != 0, f"{case} was accepted"
    assert message in out.stderr, out.stderr
    if case != "unknown failure mode":
        # The operator refuses it too (a spec that never met the API server's check).
        with pytest.raises(InvalidSpec, match=r"secondaryBackend|failureMode"):
            parse_spec("fo", "ns", spec)


def test_the_pods_get_the_secondary_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = parse_spec(
        "fo",
        "ns",
        {
            "backend": REDIS,
            "secondaryBackend": {
                "type": "mongodb",
                "mongodb": {"uriSecretRef": {"name": "m2", "key": "uri"}, "database": "copy"},
            },
            "failureMode": "strict",
        },
    )
    data = builders.config_data(spec)
    assert data["MEMSTORE_SECONDARY_BACKEND"] == "mongodb"
    assert data["MEMSTORE_SECONDARY_MONGODB_DB"] == "copy"
    assert data["MEMSTORE_FAILURE_MODE"] == "strict"
    env = builders.deployment(spec, "hash")["spec"]["template"]["spec"]["containers"][0]["env"]
    uri = next(e for e in env if e["name"] == "MEMSTORE_SECONDARY_MONGODB_URI")
    assert uri["valueFrom"]["secretKeyRef"] == {"name": "m2", "key": "uri"}
    assert ("m2", "uri") in {(r.name, r.key) for r in spec.secret_refs}
    # The service reads them as its secondary backend's settings.
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MEMSTORE_SECONDARY_MONGODB_URI", "mongodb://copy.example:27017/")
    settings = Settings()
    secondary = settings.secondary_settings()
    assert (settings.memory_type, settings.redis_host) == ("redis", "redis.example")
    assert (secondary.memory_type, secondary.mongodb_db) == ("mongodb", "copy")
    assert secondary.mongodb_uri.get_secret_value() == "mongodb://copy.example:27017/"
    assert settings.failure_mode == "strict"


def test_degraded_condition_follows_which_backend_answers(
    op: OperatorProcess, kube_api: KubeAPI, kube_namespace: str, redis_factory: Any
) -> None:
    c = Cluster(kube_api, kube_namespace)
    primary_port = free_port()  # nothing listens there yet
    secondary = redis_factory()
    c.apply(
        "fo",
        {
            "replicas": 1,
            "backend": {"type": "redis", "redis": {"host": "127.0.0.1", "port": primary_port}},
            "secondaryBackend": {
                "type": "redis",
                "redis": {"host": "127.0.0.1", "port": secondary.port},
            },
        },
    )

    def degraded(status: str) -> Any:
        cond = c.condition("fo", "Degraded") or {}
        return cond if cond.get("status") == status else None

    serving = wait_for(lambda: degraded("True"), what="Degraded True")
    assert serving["reason"] == "SecondaryServing"
    assert f"127.0.0.1:{primary_port}" in serving["message"]
    wait_for(lambda: c.mark_pods_ready(store_selector("fo")) == 1, what="one pod")
    wait_for(lambda: (c.store("fo").get("status") or {}).get("phase") == "Degraded", what="phase")
    ready = c.condition("fo", "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("True", "SecondaryServing")

    redis_factory(port=primary_port)  # the primary comes up
    healthy = wait_for(lambda: degraded("False"), what="Degraded False")
    assert healthy["reason"] == "BothReachable"
    wait_for(lambda: (c.store("fo").get("status") or {}).get("phase") == "Ready", what="Ready")

    secondary.stop()  # the secondary goes away: nothing to fail over to
    lost = wait_for(lambda: degraded("True"), what="Degraded True again")
    assert lost["reason"] == "SecondaryUnreachable"
