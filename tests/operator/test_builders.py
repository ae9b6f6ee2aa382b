"""Unit tests of the pure parts: spec parsing, builders, status, backend URI parsing."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from memstore_operator import builders
from memstore_operator import status as st
from memstore_operator.backendcheck import mongodb_hosts
from memstore_operator.model import InvalidSpec, parse_spec

OWNER = {"metadata": {"name": "m", "uid": "u-1"}}


def spec_of(raw: dict[str, Any]) -> Any:
    return parse_spec("m", "ns", raw)


def container(dep: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0]
    return result


def test_redis_config_has_no_secret_and_env_uses_secret_ref() -> None:
    spec = spec_of(
        {
            "backend": {
                "type": "redis",
                "redis": {
                    "host": "redis.db",
                    "passwordSecretRef": {"name": "rs", "key": "password"},
                    "prefix": "p:",
                },
            },
            "memoryNamespace": "team-a",
        }
    )
    cm = builders.configmap(spec, OWNER)
    assert cm["data"]["MEMORY_TYPE"] == "redis"
    assert cm["data"]["REDIS_HOST"] == "redis.db"
    assert cm["data"]["REDIS_PORT"] == "6379"
    assert cm["data"]["REDIS_PREFIX"] == "p:"
    assert cm["data"]["MEMORY_NAMESPACE"] == "team-a"
    assert "REDIS_PASSWORD" not in cm["data"]
    dep = builders.deployment(spec, "h1", OWNER)
    env = {e["name"]: e for e in container(dep)["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "rs", "key": "password"}
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert cm["metadata"]["ownerReferences"][0]["controller"] is True


def test_redis_cluster_maps_to_redis_with_nodes() -> None:
    spec = spec_of({"backend": {"type": "redisCluster", "redisCluster": {"nodes": ["a:1", "b:2"]}}})
    data = builders.config_data(spec)
    assert data["MEMORY_TYPE"] == "redis"
    assert data["MEMSTORE_REDIS_CLUSTER_NODES"] == "a:1,b:2"


def test_mongodb_uri_only_from_secret() -> None:
    spec = spec_of(
        {"backend": {"type": "mongodb", "mongodb": {"uriSecretRef": {"name": "mg", "key": "uri"}}}}
    )
    data = builders.config_data(spec)
    assert data["MONGODB_DB"] == "agent_memory"
    assert "MONGODB_URI" not in data
    env = container(builders.deployment(spec, "h", OWNER))["env"]
    assert env == [
        {"name": "MONGODB_URI", "valueFrom": {"secretKeyRef": {"name": "mg", "key": "uri"}}}
    ]


def test_deployment_probes_security_and_labels() -> None:
    spec = spec_of({"backend": {"type": "embedded"}, "replicas": 1})
    dep = builders.deployment(spec, "abc", OWNER)
    c = container(dep)
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["ports"][0]["containerPort"] == 8080
    # keeps serving while kube-proxy drops the endpoint, within the grace period
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 5
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    tmpl = dep["spec"]["template"]
    assert tmpl["metadata"]["annotations"]["memory.datamcp.io/config-hash"] == "abc"
    assert tmpl["metadata"]["labels"] == {
        "app.kubernetes.io/name": "memstore",
        "app.kubernetes.io/instance": "m",
        "app.kubernetes.io/component": "server",
        "app.kubernetes.io/managed-by": "memstore-operator",
    }
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    vols = {v["name"]: v for v in tmpl["spec"]["volumes"]}
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == "m-data"
    assert builders.config_data(spec)["MEMSTORE_DATA_PATH"] == "/data/memstore.db"
    claim = builders.pvc(spec, OWNER)
    assert claim is not None
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"


def test_emptydir_storage_has_no_pvc() -> None:
    spec = spec_of({"backend": {"type": "embedded", "embedded": {"storage": "emptyDir"}}})
    assert builders.pvc(spec) is None
    vols = {
        v["name"]: v for v in builders.deployment(spec, "h")["spec"]["template"]["spec"]["volumes"]
    }
    assert vols["data"] == {"name": "data", "emptyDir": {}}


def test_auth_and_telemetry() -> None:
    spec = spec_of(
        {
            "backend": {"type": "embedded"},
            "auth": {"secretRef": {"name": "tok", "key": "tokens"}},
            "telemetry": {"otlpEndpoint": "http://otel:4318", "samplingRatio": 0.25},
        }
    )
    data = builders.config_data(spec)
    assert data["MEMSTORE_AUTH_ENABLED"] == "true"
    assert data["MEMSTORE_AUTH_TOKENS_FILE"] == "/etc/memstore/auth/tokens.json"
    assert data["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel:4318"
    assert data["OTEL_SERVICE_NAME"] == "m"
    assert data["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert data["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    pod = builders.deployment(spec, "h")["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["auth"]["secret"]["secretName"] == "tok"
    assert vols["auth"]["secret"]["items"] == [{"key": "tokens", "path": "tokens.json"}]
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["auth"] == {"name": "auth", "mountPath": "/etc/memstore/auth", "readOnly": True}
    assert not spec.auth_generated


def test_auth_on_by_default_with_generated_secret() -> None:
    spec = spec_of({"backend": {"type": "embedded"}})
    assert spec.auth.enabled and spec.auth_generated
    assert spec.auth_tokens_ref is not None
    assert (spec.auth_tokens_ref.name, spec.auth_tokens_ref.key) == ("m-auth", "tokens.json")
    secret = builders.auth_secret(spec, "s3cret-token", OWNER)
    assert secret["metadata"]["name"] == "m-auth"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded["token"] == "s3cret-token"
    tokens = json.loads(decoded["tokens.json"])
    assert tokens == {
        "tokens": [
            {
                "name": "admin",
                "sha256": hashlib.sha256(b"s3cret-token").hexdigest(),
                "namespaces": ["*"],
                "roles": ["read", "write", "admin"],
            }
        ]
    }
    assert "s3cret-token" not in decoded["tokens.json"]
    # The token never reaches the ConfigMap or the Deployment.
    rendered = json.dumps([builders.configmap(spec, OWNER), builders.deployment(spec, "h", OWNER)])
    assert "s3cret-token" not in rendered
    assert hashlib.sha256(b"s3cret-token").hexdigest() not in rendered
    assert builders.new_token() != builders.new_token()


def test_auth_disabled() -> None:
    spec = spec_of({"backend": {"type": "embedded"}, "auth": {"enabled": False}})
    assert spec.auth_tokens_ref is None
    assert builders.config_data(spec)["MEMSTORE_AUTH_ENABLED"] == "false"
    assert builders.config_data(spec)["MEMSTORE_ALLOW_INSECURE_BIND"] == "true"
    assert "MEMSTORE_AUTH_TOKENS_FILE" not in builders.config_data(spec)
    pod = builders.deployment(spec, "h")["spec"]["template"]["spec"]
    assert "auth" not in {v["name"] for v in pod["volumes"]}
    with pytest.raises(InvalidSpec, match=r"only used when auth\.enabled"):
        spec_of(
            {
                "backend": {"type": "embedded"},
                "auth": {"enabled": False, "secretRef": {"name": "x"}},
            }
        )


def test_config_hash_follows_config_and_secret_versions() -> None:
    a = spec_of({"backend": {"type": "embedded"}})
    b = spec_of({"backend": {"type": "embedded"}, "cache": {"ttlSeconds": 5}})
    assert builders.config_hash(a) == builders.config_hash(a)
    assert builders.config_hash(a) != builders.config_hash(b)
    assert builders.config_hash(a, {"s": "1"}) != builders.config_hash(a, {"s": "2"})


def test_pdb_default_and_disabled() -> None:
    spec = spec_of({"backend": {"type": "redis", "redis": {"host": "r"}}, "replicas": 3})
    budget = builders.pdb(spec)
    assert budget is not None
    assert budget["spec"]["maxUnavailable"] == 1
    off = spec_of(
        {
            "backend": {"type": "redis", "redis": {"host": "r"}},
            "disruptionBudget": {"enabled": False},
        }
    )
    assert builders.pdb(off) is None


def test_service_monitor_only_when_enabled() -> None:
    spec = spec_of({"backend": {"type": "embedded"}})
    assert builders.service_monitor(spec) is None
    on = spec_of(
        {"backend": {"type": "embedded"}, "telemetry": {"serviceMonitor": {"enabled": True}}}
    )
    sm = builders.service_monitor(on)
    assert sm is not None
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"backend": {"type": "nope"}}, "backend.type"),
        ({"backend": {"type": "embedded"}, "replicas": 2}, "at most 1 replica"),
        ({"backend": {"type": "embedded"}, "workers": 2}, "one owner process: workers must be 1"),
        ({"backend": {"type": "redis", "redis": {"host": "h"}}, "workers": 0}, "workers"),
        ({"backend": {"type": "redis"}}, "host is required"),
        ({"backend": {"type": "redis", "redis": {"host": "h"}, "mongodb": {}}}, "backend.mongodb"),
        ({"backend": {"type": "mongodb", "mongodb": {}}}, "uriSecretRef"),
        ({"backend": {"type": "redisCluster", "redisCluster": {"nodes": []}}}, "host:port"),
    ],
)
def test_invalid_specs(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        spec_of(raw)


def test_status_ready_and_transition_time_kept() -> None:
    dep = {
        "metadata": {"generation": 2},
        "status": {
            "observedGeneration": 2,
            "replicas": 2,
            "readyReplicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": 2,
        },
    }
    ok = st.Check(True, "Pong", "ok")
    first = st.compute(
        previous=None, generation=1, now="t1", desired_replicas=2, selector="s", endpoint="e",
        config_hash="h", deployment=dep, secrets=ok, backend=ok,
    )  # fmt: skip
    assert first["phase"] == "Ready"
    second = st.compute(
        previous=first, generation=1, now="t2", desired_replicas=2, selector="s", endpoint="e",
        config_hash="h", deployment=dep, secrets=ok, backend=ok,
    )  # fmt: skip
    assert second == first
    down = st.compute(
        previous=first, generation=1, now="t3", desired_replicas=2, selector="s", endpoint="e",
        config_hash="h", deployment=dep, secrets=ok, backend=st.Check(False, "Unreachable", "x"),
    )  # fmt: skip
    conds = {c["type"]: c for c in down["conditions"]}
    assert down["phase"] == "Degraded"
    assert conds["BackendReachable"]["lastTransitionTime"] == "t3"
    assert conds["SecretsResolved"]["lastTransitionTime"] == "t1"


def test_status_missing_secret_is_pending() -> None:
    out = st.compute(
        previous=None, generation=1, now="t", desired_replicas=1, selector="s", endpoint="e",
        config_hash=None, deployment=None,
        secrets=st.Check(False, "SecretNotFound", "Secret 'x' not found"),
        backend=st.Check(None, "SecretNotFound", ""),
    )  # fmt: skip
    conds = {c["type"]: c for c in out["conditions"]}
    assert out["phase"] == "Pending"
    assert conds["Ready"]["reason"] == "SecretNotFound"
    assert conds["SecretsResolved"]["status"] == "False"


def test_mongodb_hosts_drop_credentials() -> None:
    hosts = mongodb_hosts("mongodb://u:p%40ss@a:1,b/db?replicaSet=x")
    assert hosts == [("a", 1), ("b", 27017)]


# -- Redis TLS and ACL user -------------------------------------------------------------

TLS_REDIS: dict[str, Any] = {
    "type": "redis",
    "redis": {
        "host": "redis.db",
        "usernameSecretRef": {"name": "redis-user", "key": "username"},
        "passwordSecretRef": {"name": "redis-user", "key": "password"},
        "tls": {
            "caSecretRef": {"name": "redis-ca"},
            "clientCertificateSecretRef": {"name": "memstore-client"},
        },
    },
}


def test_redis_tls_mounts_the_secrets_and_sets_the_files() -> None:
    spec = spec_of({"backend": TLS_REDIS})
    data = builders.config_data(spec)
    assert data["MEMSTORE_REDIS_TLS"] == "true"
    assert data["MEMSTORE_REDIS_TLS_VERIFY_HOSTNAME"] == "true"
    assert data["MEMSTORE_REDIS_TLS_CA_FILE"] == "/etc/memstore/redis-tls/ca.crt"
    assert data["MEMSTORE_REDIS_TLS_CERT_FILE"] == "/etc/memstore/redis-tls/tls.crt"
    assert data["MEMSTORE_REDIS_TLS_KEY_FILE"] == "/etc/memstore/redis-tls/tls.key"
    assert "REDIS_USERNAME" not in data and "REDIS_PASSWORD" not in data
    dep = builders.deployment(spec, "h1", OWNER)
    pod = dep["spec"]["template"]["spec"]
    (volume,) = (v for v in pod["volumes"] if v["name"] == "redis-tls")
    assert volume["projected"]["defaultMode"] == 0o440
    assert volume["projected"]["sources"] == [
        {"secret": {"name": "redis-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {
            "secret": {
                "name": "memstore-client",
                "items": [
                    {"key": "tls.crt", "path": "tls.crt"},
                    {"key": "tls.key", "path": "tls.key"},
                ],
            }
        },
    ]
    mounts = {m["name"]: m for m in container(dep)["volumeMounts"]}
    assert mounts["redis-tls"] == {
        "name": "redis-tls",
        "mountPath": "/etc/memstore/redis-tls",
        "readOnly": True,
    }
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container(dep)["env"]}
    assert env["REDIS_USERNAME"] == {"name": "redis-user", "key": "username"}
    assert env["REDIS_PASSWORD"] == {"name": "redis-user", "key": "password"}
    # every mounted key is a referenced Secret key: checked to exist, its version hashed
    refs = {(r.name, r.key) for r in spec.secret_refs}
    assert {
        ("redis-ca", "ca.crt"),
        ("memstore-client", "tls.crt"),
        ("memstore-client", "tls.key"),
        ("redis-user", "username"),
    } <= refs


def test_redis_cluster_tls_without_files_and_plain_username() -> None:
    """TLS with the system CAs and no client certificate: no volume; a plain user name
    is configuration, not a secret."""
    spec = spec_of(
        {
            "backend": {
                "type": "redisCluster",
                "redisCluster": {
                    "nodes": ["a:6379"],
                    "username": "memstore",
                    "tls": {"verifyHostname": False},
                },
            }
        }
    )
    data = builders.config_data(spec)
    assert data["MEMSTORE_REDIS_TLS"] == "true"
    assert data["MEMSTORE_REDIS_TLS_VERIFY_HOSTNAME"] == "false"
    assert data["REDIS_USERNAME"] == "memstore"
    assert not any(k.endswith("_FILE") and "REDIS_TLS" in k for k in data)
    pod = builders.deployment(spec, "h1", OWNER)["spec"]["template"]["spec"]
    assert all(v["name"] != "redis-tls" for v in pod["volumes"])


def test_redis_tls_off_sets_nothing() -> None:
    spec = spec_of(
        {"backend": {"type": "redis", "redis": {"host": "r", "tls": {"enabled": False}}}}
    )
    assert not any("TLS" in k for k in builders.config_data(spec))
    pod = builders.deployment(spec, "h1", OWNER)["spec"]["template"]["spec"]
    assert all(v["name"] != "redis-tls" for v in pod["volumes"])


@pytest.mark.parametrize(
    ("redis", "message"),
    [
        ({"host": "r", "tls": {"enabled": False, "caSecretRef": {"name": "c"}}}, "need tls"),
        (
            {"host": "r", "username": "u", "usernameSecretRef": {"name": "s", "key": "u"}},
            "at most one of username and usernameSecretRef",
        ),
    ],
    ids=["files-without-tls", "two-usernames"],
)
def test_invalid_redis_tls_specs(redis: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        spec_of({"backend": {"type": "redis", "redis": redis}})


def test_memcached_names_the_shared_cache_keyed_by_the_store() -> None:
    plain = builders.config_data(spec_of({"backend": {"type": "embedded"}}))
    assert not any(k.startswith("MEMSTORE_L2_CACHE_") for k in plain)
    spec = spec_of(
        {
            "backend": {"type": "embedded"},
            "cache": {"memcached": {"url": "memcached://mc.cache:11211", "ttlSeconds": 60}},
        }
    )
    data = builders.config_data(spec)
    assert data["MEMSTORE_L2_CACHE_URL"] == "memcached://mc.cache:11211"
    assert data["MEMSTORE_L2_CACHE_TTL_SECONDS"] == "60"
    assert data["MEMSTORE_L2_CACHE_PREFIX"] == "ns.m"
    # The CRD's default TTL applies when the spec leaves it out.
    default = spec_of(
        {"backend": {"type": "embedded"}, "cache": {"memcached": {"url": "memcached://mc"}}}
    )
    assert builders.config_data(default)["MEMSTORE_L2_CACHE_TTL_SECONDS"] == "300"


REDIS_BACKEND = {"type": "redis", "redis": {"host": "redis.db"}}


def test_one_worker_keeps_the_former_default_resources_and_config() -> None:
    spec = spec_of({"backend": REDIS_BACKEND})
    assert spec.workers == 1
    assert container(builders.deployment(spec, "h"))["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "512Mi"},
    }
    assert "MEMSTORE_WORKERS" not in builders.config_data(spec)


def test_workers_size_the_default_resources_and_reach_the_server() -> None:
    spec = spec_of({"backend": REDIS_BACKEND, "workers": 4})
    assert container(builders.deployment(spec, "h"))["resources"] == {
        "requests": {"cpu": "400m", "memory": "512Mi"},
        "limits": {"memory": "2048Mi"},
    }
    assert builders.config_data(spec)["MEMSTORE_WORKERS"] == "4"
    # A different worker count is a different configuration: the pods roll.
    assert builders.config_hash(spec) != builders.config_hash(
        spec_of({"backend": REDIS_BACKEND, "workers": 2})
    )


def test_given_resources_are_used_as_they_are() -> None:
    given = {"requests": {"memory": "4Gi"}}
    spec = spec_of({"backend": REDIS_BACKEND, "workers": 4, "resources": given})
    # No limit is added below the 4Gi request (that pod would be refused).
    assert container(builders.deployment(spec, "h"))["resources"] == given
