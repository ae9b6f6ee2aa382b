"""The operator's ConfigMap is read by the service: every spec shape must give settings the
service accepts as they are (names, values, and the bind check for a pod listening on its
pod IP). Both packages are only imported together here, in a test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from memstore.core.settings import Settings
from memstore.server.security import check_bind
from memstore_operator import builders
from memstore_operator.model import parse_spec

SPECS: dict[str, dict[str, Any]] = {
    "embedded, auth on": {"backend": {"type": "embedded"}},
    "embedded, auth off": {"backend": {"type": "embedded"}, "auth": {"enabled": False}},
    "redis": {"backend": {"type": "redis", "redis": {"host": "redis.db", "prefix": "p:"}}},
    "redis cluster": {
        "backend": {"type": "redisCluster", "redisCluster": {"nodes": ["a:1", "b:2"]}}
    },
    "redis, mongodb secondary, lenient": {
        "backend": {"type": "redis", "redis": {"host": "redis.db"}},
        "secondaryBackend": {
            "type": "mongodb",
            "mongodb": {"uriSecretRef": {"name": "m", "key": "uri"}, "database": "copy"},
        },
        "failureMode": "lenient",
    },
    "mongodb, traced": {
        "backend": {"type": "mongodb", "mongodb": {"uriSecretRef": {"name": "m", "key": "uri"}}},
        "telemetry": {"otlpEndpoint": "http://otel:4318", "samplingRatio": 0.1},
    },
    "mongodb, memcached": {
        "backend": {"type": "mongodb", "mongodb": {"uriSecretRef": {"name": "m", "key": "uri"}}},
        "cache": {"memcached": {"url": "memcached://memcached.cache:11211"}},
    },
}


@pytest.mark.parametrize("raw", SPECS.values(), ids=SPECS.keys())
def test_service_accepts_the_operator_config(
    raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = builders.config_data(parse_spec("m", "ns", raw))
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.host == data["MEMSTORE_HOST"]
    assert settings.auth_enabled is (data["MEMSTORE_AUTH_ENABLED"] == "true")
    check_bind(settings)  # raises ConfigurationError if the pod would refuse to start


def test_service_accepts_the_operator_redis_tls_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The TLS settings the operator writes name real settings; the files they point at
    (the mounted Secret keys) are stood in for by files under tmp_path."""
    raw = {
        "backend": {
            "type": "redis",
            "redis": {
                "host": "redis.db",
                "username": "memstore",
                "tls": {
                    "caSecretRef": {"name": "ca"},
                    "clientCertificateSecretRef": {"name": "client"},
                },
            },
        }
    }
    data = builders.config_data(parse_spec("m", "ns", raw))
    for key, value in data.items():
        if key.startswith("MEMSTORE_REDIS_TLS_") and key.endswith("_FILE"):
            stand_in = tmp_path / Path(value).name
            stand_in.write_text("pem\n")
            value = str(stand_in)
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.redis_tls_enabled
    assert settings.redis_username == "memstore"
    assert settings.redis_tls_verify_hostname
    assert settings.redis_tls_ca_file == tmp_path / "ca.crt"
    assert settings.redis_tls_cert_file == tmp_path / "tls.crt"
    assert settings.redis_tls_key_file == tmp_path / "tls.key"
