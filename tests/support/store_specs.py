"""MemoryStore specs that nothing can run, next to valid neighbours: one table for the
API server's CRD validation (tests/operator/test_crd_validation.py) and the chart's values
schema (tests/helm/test_store_values.py), so the two cannot disagree unseen."""

from __future__ import annotations

import re
from typing import Any

REDIS: dict[str, Any] = {"type": "redis", "redis": {"host": "redis.example"}}

# Shapes and cross-field rules (the third column: a text of the API server's answer).
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
        "embedded-with-2-workers",
        {"workers": 2, "backend": {"type": "embedded"}},
        "the embedded backend has one owner process: workers must be 1",
    ),
    (
        "zero-workers",
        {"workers": 0, "backend": REDIS},
        "spec.workers in body should be greater than or equal to 1",
    ),
    (
        "too-many-workers",
        {"workers": 17, "backend": REDIS},
        "spec.workers in body should be less than or equal to 16",
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
    # Redis TLS and ACL user
    (
        "tls-files-with-tls-off",
        {
            "backend": {
                "type": "redis",
                "redis": {"host": "r", "tls": {"enabled": False, "caSecretRef": {"name": "ca"}}},
            }
        },
        "tls.caSecretRef and tls.clientCertificateSecretRef need tls.enabled",
    ),
    (
        "tls-client-secret-bad-name",
        {
            "backend": {
                "type": "redisCluster",
                "redisCluster": {
                    "nodes": ["r:6379"],
                    "tls": {"clientCertificateSecretRef": {"name": "Not_A_Name"}},
                },
            }
        },
        "spec.backend.redisCluster.tls.clientCertificateSecretRef.name in body should match",
    ),
    (
        "tls-ca-ref-without-name",
        {
            "backend": {
                "type": "redis",
                "redis": {"host": "r", "tls": {"caSecretRef": {"key": "ca.pem"}}},
            }
        },
        "spec.backend.redis.tls.caSecretRef.name: Required value",
    ),
    (
        "tls-not-an-object",
        {"backend": {"type": "redis", "redis": {"host": "r", "tls": True}}},
        "spec.backend.redis.tls: Invalid value",
    ),
    (
        "tls-unknown-field",
        {"backend": {"type": "redis", "redis": {"host": "r", "tls": {"insecureSkipVerify": True}}}},
        'unknown field "spec.backend.redis.tls.insecureSkipVerify"',
    ),
    (
        "username-and-username-secret",
        {
            "backend": {
                "type": "redisCluster",
                "redisCluster": {
                    "nodes": ["r:6379"],
                    "username": "memstore",
                    "usernameSecretRef": {"name": "u", "key": "username"},
                },
            }
        },
        "set at most one of username and usernameSecretRef",
    ),
    (
        "username-with-space",
        {"backend": {"type": "redis", "redis": {"host": "r", "username": "mem store"}}},
        "spec.backend.redis.username in body should match",
    ),
    # Webhooks
    (
        "webhook-without-secret-ref",
        {"backend": REDIS, "webhooks": [{"name": "a", "namespace": "n", "url": "http://h/"}]},
        "spec.webhooks[0].secretRef: Required value",
    ),
    (
        "webhook-secret-inline",
        {
            "backend": REDIS,
            "webhooks": [
                {
                    "name": "a",
                    "namespace": "n",
                    "url": "http://h/",
                    "secret": "whsec_x",
                    "secretRef": {"name": "s", "key": "k"},
                }
            ],
        },
        'unknown field "spec.webhooks[0].secret"',
    ),
    (
        "webhook-unknown-kind",
        {
            "backend": REDIS,
            "webhooks": [
                {
                    "name": "a",
                    "namespace": "n",
                    "url": "http://h/",
                    "secretRef": {"name": "s", "key": "k"},
                    "kinds": ["entity.exploded"],
                }
            ],
        },
        'spec.webhooks[0].kinds[0]: Unsupported value: "entity.exploded"',
    ),
]


def webhook(**fields: Any) -> dict[str, Any]:
    hook = {
        "name": "audit",
        "namespace": "agent",
        "url": "https://hooks.example/in",
        "secretRef": {"name": "hook", "key": "secret"},
        **fields,
    }
    return {"backend": REDIS, "webhooks": [{k: v for k, v in hook.items() if v is not None}]}


def embedded(**section: Any) -> dict[str, Any]:
    return {"backend": {"type": "embedded", "embedded": section}}


def redis(**section: Any) -> dict[str, Any]:
    return {"backend": {"type": "redis", "redis": {"host": "r", **section}}}


def redis_host(host: Any) -> dict[str, Any]:
    return redis(host=host)


def cluster_node(node: str) -> dict[str, Any]:
    return {"backend": {"type": "redisCluster", "redisCluster": {"nodes": [node]}}}


def requests(**quantities: Any) -> dict[str, Any]:
    return {"backend": REDIS, "resources": {"requests": quantities}}


def otlp(url: str) -> dict[str, Any]:
    return {"backend": REDIS, "telemetry": {"otlpEndpoint": url}}


def scheduling(**fields: Any) -> dict[str, Any]:
    return {"backend": REDIS, "scheduling": fields}


def toleration(**fields: Any) -> dict[str, Any]:
    return {"key": "k", "operator": "Exists", **fields}


# Values the API server used to store and nothing could run: sizes and quantities (as
# integers and as strings), URLs, host names, names and label maps. Each is rejected with a
# message that names the field (the third column: a text of the API server's answer).
UNRUNNABLE: list[tuple[str, dict[str, Any], str]] = [
    ("size-negative-int", embedded(size=-5), "spec.backend.embedded.size"),
    ("size-zero-int", embedded(size=0), "spec.backend.embedded.size"),
    ("size-negative-string", embedded(size="-1Gi"), "spec.backend.embedded.size"),
    ("size-zero-string", embedded(size="0Gi"), "spec.backend.embedded.size"),
    ("size-malformed", embedded(size="1 GB"), "spec.backend.embedded.size"),
    ("size-unit-only", embedded(size="Gi"), "spec.backend.embedded.size"),
    ("cpu-negative-string", requests(cpu="-100m"), "spec.resources.requests.cpu"),
    ("memory-negative-int", requests(memory=-1), "spec.resources.requests.memory"),
    ("memory-malformed", requests(memory="lots"), "spec.resources.requests.memory"),
    ("memory-with-space", requests(memory="128 Mi"), "spec.resources.requests.memory"),
    (
        "limit-negative",
        {"backend": REDIS, "resources": {"limits": {"memory": "-512Mi"}}},
        "spec.resources.limits.memory",
    ),
    ("redis-host-with-space", redis_host("redis server"), "spec.backend.redis.host"),
    ("redis-host-url", redis_host("redis://redis:6379"), "spec.backend.redis.host"),
    ("redis-host-underscore", redis_host("my_redis"), "spec.backend.redis.host"),
    ("redis-host-leading-dash", redis_host("-redis"), "spec.backend.redis.host"),
    ("redis-host-empty-label", redis_host("redis..svc"), "spec.backend.redis.host"),
    ("redis-host-label-too-long", redis_host("a" * 64 + ".svc"), "spec.backend.redis.host"),
    ("redis-port-zero", redis(port=0), "spec.backend.redis.port"),
    ("redis-prefix-hash-tag", redis(prefix="a{b}:"), "spec.backend.redis.prefix"),
    ("cluster-node-port-zero", cluster_node("r1:0"), "spec.backend.redisCluster.nodes[0]"),
    ("cluster-node-port-too-big", cluster_node("r1:70000"), "spec.backend.redisCluster.nodes[0]"),
    ("cluster-node-bad-host", cluster_node("r..1:6379"), "spec.backend.redisCluster.nodes[0]"),
    ("cluster-node-space", cluster_node("r 1:6379"), "spec.backend.redisCluster.nodes[0]"),
    ("otlp-no-host", otlp("http://"), "spec.telemetry.otlpEndpoint"),
    ("otlp-no-host-path", otlp("http:///v1/traces"), "spec.telemetry.otlpEndpoint"),
    ("otlp-space-in-host", otlp("http://otel collector:4318"), "spec.telemetry.otlpEndpoint"),
    ("otlp-space-in-path", otlp("http://collector:4318/a b"), "spec.telemetry.otlpEndpoint"),
    ("otlp-port-too-big", otlp("http://collector:99999"), "spec.telemetry.otlpEndpoint"),
    ("otlp-port-empty", otlp("http://collector:"), "spec.telemetry.otlpEndpoint"),
    ("image-with-space", {"backend": REDIS, "image": "memstore latest"}, "spec.image"),
    ("image-trailing-colon", {"backend": REDIS, "image": "memstore:"}, "spec.image"),
    (
        "pull-secret-not-a-name",
        {"backend": REDIS, "imagePullSecrets": [{"name": "Reg Cred"}]},
        "spec.imagePullSecrets[0].name",
    ),
    (
        "storage-class-not-a-name",
        embedded(storageClassName="Fast SSD"),
        "spec.backend.embedded.storageClassName",
    ),
    (
        "priority-class-not-a-name",
        scheduling(priorityClassName="High!"),
        "spec.scheduling.priorityClassName",
    ),
    (
        "node-selector-bad-value",
        scheduling(nodeSelector={"zone": "a b"}),
        "spec.scheduling.nodeSelector.zone",
    ),
    (
        "node-selector-bad-key",
        scheduling(nodeSelector={"bad key": "a"}),
        "scheduling.nodeSelector keys must be label keys",
    ),
    (
        "toleration-exists-with-value",
        scheduling(tolerations=[{"key": "k", "operator": "Exists", "value": "v"}]),
        "a toleration with operator Exists takes no value",
    ),
    (
        "toleration-bad-key",
        scheduling(tolerations=[{"key": "a b", "operator": "Exists"}]),
        "spec.scheduling.tolerations[0].key",
    ),
    (
        "service-monitor-zero-interval",
        {"backend": REDIS, "telemetry": {"serviceMonitor": {"interval": "0s"}}},
        "spec.telemetry.serviceMonitor.interval",
    ),
    (
        "service-monitor-bad-label-key",
        {"backend": REDIS, "telemetry": {"serviceMonitor": {"labels": {"-x": "y"}}}},
        "serviceMonitor.labels keys must be label keys",
    ),
    (
        "service-monitor-bad-label-value",
        {"backend": REDIS, "telemetry": {"serviceMonitor": {"labels": {"x": "a/b"}}}},
        "spec.telemetry.serviceMonitor.labels.x",
    ),
    ("webhook-url-not-http", webhook(url="ftp://hooks.example/in"), "spec.webhooks[0].url"),
    ("webhook-url-no-host", webhook(url="https:///in"), "spec.webhooks[0].url"),
    ("webhook-url-credentials", webhook(url="https://u:p@hooks.example/"), "spec.webhooks[0].url"),
    ("webhook-url-space", webhook(url="https://hooks.example/a b"), "spec.webhooks[0].url"),
    ("webhook-url-port-too-big", webhook(url="http://h:70000/"), "spec.webhooks[0].url"),
    ("webhook-name-bad", webhook(name="audit log"), "spec.webhooks[0].name"),
    ("webhook-namespace-bad", webhook(namespace="_webhooks"), "spec.webhooks[0].namespace"),
    (
        "webhook-secret-ref-bad-name",
        webhook(secretRef={"name": "Hook Secret", "key": "k"}),
        "spec.webhooks[0].secretRef.name",
    ),
    ("webhook-entity-type-bad", webhook(entityTypes=["a/b"]), "spec.webhooks[0].entityTypes[0]"),
    # Numbers where the schema allows integers or strings only.
    ("size-float", embedded(size=1.5), "spec.backend.embedded.size"),
    ("memory-float", requests(memory=0.5), "spec.resources.requests.memory"),
    # Resource names the pods' containers could not have.
    ("resource-name-typo", requests(memroy="1Gi"), "spec.resources.requests"),
    ("resource-name-space", requests(**{"my gpu": "1"}), "spec.resources.requests"),
    (
        "resource-name-unprefixed",
        {"backend": REDIS, "resources": {"limits": {"gpu": 1}}},
        "spec.resources.limits",
    ),
    # Addresses that look like IP addresses and are not.
    ("redis-host-ipv4-out-of-range", redis_host("10.0.0.256"), "spec.backend.redis.host"),
    ("redis-host-ipv4-three-numbers", redis_host("10.0.1"), "spec.backend.redis.host"),
    ("redis-host-ipv6-colons-only", redis_host(":::"), "spec.backend.redis.host"),
    ("redis-host-ipv6-nine-groups", redis_host("1:2:3:4:5:6:7:8:9"), "spec.backend.redis.host"),
    ("redis-host-ipv6-two-gaps", redis_host("fd00::1::2"), "spec.backend.redis.host"),
    (
        "cluster-node-ipv4-out-of-range",
        cluster_node("300.1.1.1:6379"),
        "spec.backend.redisCluster.nodes[0]",
    ),
    (
        "cluster-node-ipv6-bad",
        cluster_node("[fd00:::7]:6379"),
        "spec.backend.redisCluster.nodes[0]",
    ),
    ("otlp-ipv4-out-of-range", otlp("http://300.1.1.1:4318"), "spec.telemetry.otlpEndpoint"),
    ("otlp-ipv6-bad", otlp("http://[1::2::3]:4318"), "spec.telemetry.otlpEndpoint"),
    # Webhook URLs whose host or port cannot be.
    ("webhook-url-host-dots", webhook(url="https://../in"), "spec.webhooks[0].url"),
    ("webhook-url-host-leading-dash", webhook(url="https://-x.example/in"), "spec.webhooks[0].url"),
    ("webhook-url-host-empty-label", webhook(url="https://a..b/in"), "spec.webhooks[0].url"),
    ("webhook-url-host-percent", webhook(url="https://%41/in"), "spec.webhooks[0].url"),
    ("webhook-url-port-zero", webhook(url="https://h:0/in"), "spec.webhooks[0].url"),
    ("webhook-url-ipv4-out-of-range", webhook(url="https://999.1.1.1/in"), "spec.webhooks[0].url"),
    (
        "toleration-seconds-without-no-execute",
        scheduling(tolerations=[toleration(effect="NoSchedule", tolerationSeconds=5)]),
        "spec.scheduling.tolerations[0]",
    ),
    (
        "service-name-control-character",
        {"backend": REDIS, "telemetry": {"serviceName": "a\nb"}},
        "spec.telemetry.serviceName",
    ),
]

# Their valid neighbours, accepted: the rules reject the mistake, not the feature.
RUNNABLE: list[tuple[str, dict[str, Any]]] = [
    (
        "redis-tls-acl-user",
        {
            "backend": {
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
        },
    ),
    ("size-int-bytes", embedded(size=1073741824)),
    ("size-decimal", embedded(size="1.5Gi")),
    ("size-fraction", embedded(size="0.5Gi")),
    ("size-si", embedded(size="500M")),
    ("quantities", requests(cpu="0.5", memory="128Mi")),
    ("workers-redis", {"backend": REDIS, "workers": 16}),
    ("workers-embedded-one", {"backend": {"type": "embedded"}, "workers": 1}),
    ("quantities-int-and-exponent", requests(cpu=2, memory="1e9")),
    ("quantity-zero", requests(cpu=0)),
    ("quantity-millis", {"backend": REDIS, "resources": {"limits": {"cpu": "250m"}}}),
    ("redis-host-service", redis_host("redis.db.svc.cluster.local")),
    ("redis-host-ipv4", redis_host("10.0.0.7")),
    ("redis-host-ipv6", redis_host("fd00::7")),
    ("redis-host-upper", redis_host("Redis-1")),
    ("cluster-nodes", cluster_node("redis-0.redis:6379")),
    ("cluster-node-ipv6", cluster_node("[fd00::7]:65535")),
    ("otlp-host-port", otlp("http://otel-collector.monitoring:4318")),
    ("otlp-https-path", otlp("https://collector.example/otlp")),
    ("otlp-ipv6", otlp("http://[fd00::1]:4318")),
    ("image-digest", {"backend": REDIS, "image": "registry:5000/team/memstore@sha256:" + "a" * 64}),
    ("image-tag", {"backend": REDIS, "image": "ghcr.io/memstore/memstore:0.1.0-rc.1"}),
    ("image-tag-and-digest", {"backend": REDIS, "image": "memstore:1.0@sha512:" + "b" * 128}),
    ("storage-class", embedded(storageClassName="fast-ssd")),
    (
        "scheduling",
        scheduling(
            nodeSelector={"kubernetes.io/os": "linux", "tier": ""},
            tolerations=[
                {"key": "dedicated", "operator": "Equal", "value": "memstore"},
                {"operator": "Exists"},
            ],
            priorityClassName="system-cluster-critical",
        ),
    ),
    (
        "service-monitor",
        {
            "backend": REDIS,
            "telemetry": {
                "serviceMonitor": {"interval": "15s", "labels": {"release": "kube-prometheus"}}
            },
        },
    ),
    ("webhook", webhook(kinds=["entity.saved"], entityTypes=["note"])),
    ("webhook-http-port-query", webhook(url="http://receiver.tools.svc:8080/in?x=1")),
    (
        "resource-names",
        {
            "backend": REDIS,
            "resources": {
                "requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Gi"},
                "limits": {"hugepages-2Mi": "0", "example.com/gpu": 1},
            },
        },
    ),
    ("redis-host-ipv4", redis_host("192.168.255.0")),
    ("redis-host-dotted-name-with-digits", redis_host("10.0.0.256.nip.io")),
    ("redis-host-ipv6-full", redis_host("2001:db8:0:0:0:0:0:1")),
    ("redis-host-ipv6-loopback", redis_host("::1")),
    ("redis-host-ipv4-mapped-ipv6", redis_host("::ffff:10.0.0.1")),
    ("cluster-node-ipv4", cluster_node("10.0.0.7:6379")),
    ("otlp-ipv4", otlp("http://10.0.0.1:4318/v1")),
    ("webhook-host-underscore", webhook(url="http://my_receiver:8080/in")),
    ("webhook-host-ipv4", webhook(url="http://10.0.0.9:8080/in")),
    (
        "toleration-seconds-no-execute",
        scheduling(tolerations=[toleration(effect="NoExecute", tolerationSeconds=300)]),
    ),
    ("service-name", {"backend": REDIS, "telemetry": {"serviceName": "memstore (team a)"}}),
]

# Where helm reports a case whose API-server text is a CEL message rather than a field.
_CEL_POINTERS = {
    "node-selector-bad-key": "/spec/scheduling/nodeSelector",
    "toleration-exists-with-value": "/spec/scheduling/tolerations/0",
    "service-monitor-bad-label-key": "/spec/telemetry/serviceMonitor/labels",
}


def json_pointer(case: str, field: str) -> str:
    """The JSON pointer of a case's field within a MemoryStore (``spec.a.b[0]`` ->
    ``/spec/a/b/0``)."""
    if case in _CEL_POINTERS:
        return _CEL_POINTERS[case]
    assert field.startswith("spec."), field
    return "/" + re.sub(r"\[(\d+)\]", r".\1", field).replace(".", "/")
