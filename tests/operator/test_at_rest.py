"""spec.atRest: the key file mounted from its Secret (never the ConfigMap or the
environment), and the CRD's rules enforced by the real kube-apiserver, including the
transition rules that keep a store able to read what it wrote."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memstore_operator import builders
from memstore_operator.model import parse_spec
from tests.operator.conftest import GROUP, VERSION
from tests.servers.kube import KubeAPI

OWNER = {"metadata": {"name": "m", "uid": "u-1"}}
ENCRYPTED: dict[str, Any] = {
    "backend": {"type": "embedded"},
    "atRest": {"compressionMinBytes": 1024, "encryption": {"secretRef": {"name": "kek"}}},
}


def test_the_key_file_is_a_read_only_secret_volume_and_only_its_path_is_config() -> None:
    spec = parse_spec("m", "ns", ENCRYPTED)
    assert spec.at_rest.encryption is not None
    assert spec.at_rest.encryption.secret_ref.key == "keys"  # the CRD's default
    data = builders.config_data(spec)
    assert data["MEMSTORE_ENCRYPTION_KEY_FILE"] == "/etc/memstore/encryption/keys"
    assert data["MEMSTORE_COMPRESSION_MIN_BYTES"] == "1024"
    dep = builders.deployment(spec, "h1", OWNER)
    pod = dep["spec"]["template"]["spec"]
    (volume,) = (v for v in pod["volumes"] if v["name"] == "encryption-keys")
    assert volume["secret"] == {
        "secretName": "kek",
        "items": [{"key": "keys", "path": "keys"}],
        "defaultMode": 0o440,
    }
    container = pod["containers"][0]
    (mount,) = (m for m in container["volumeMounts"] if m["name"] == "encryption-keys")
    assert mount == {
        "name": "encryption-keys",
        "mountPath": "/etc/memstore/encryption",
        "readOnly": True,
    }
    # Never an environment variable from the Secret.
    for env in container.get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef", {})
        assert ref.get("name") != "kek", env
    # The Secret is resolved (a missing one is reported) and its version rolls the pods.
    assert any(r.name == "kek" and r.key == "keys" for r in spec.secret_refs)
    assert builders.config_hash(spec, {"kek": "1"}) != builders.config_hash(spec, {"kek": "2"})


def test_without_at_rest_nothing_is_mounted_or_configured() -> None:
    spec = parse_spec("m", "ns", {"backend": {"type": "embedded"}})
    assert spec.at_rest.compression_min_bytes == 0 and spec.at_rest.encryption is None
    data = builders.config_data(spec)
    assert "MEMSTORE_ENCRYPTION_KEY_FILE" not in data
    assert "MEMSTORE_COMPRESSION_MIN_BYTES" not in data
    pod = builders.deployment(spec, "h1", OWNER)["spec"]["template"]["spec"]
    assert all(v["name"] != "encryption-keys" for v in pod["volumes"])


@pytest.fixture(scope="module")
def at_rest_ns(crd: Path, kube_api: KubeAPI) -> Iterator[str]:
    ns = "crd-at-rest"
    kube_api.cluster.kubectl("create", "namespace", ns, check=False)
    yield ns
    kube_api.cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def doc(ns: str, name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MemoryStore",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }
    )


def test_crd_defaults_and_bounds(kube_api: KubeAPI, at_rest_ns: str) -> None:
    kubectl = kube_api.cluster.kubectl
    out = kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-",
        input=doc(at_rest_ns, "d", {"backend": {"type": "embedded"}}),
    )  # fmt: skip
    assert json.loads(out.stdout)["spec"]["atRest"] == {"compressionMinBytes": 0}
    out = kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-",
        input=doc(at_rest_ns, "d", ENCRYPTED),
    )  # fmt: skip
    assert json.loads(out.stdout)["spec"]["atRest"]["encryption"] == {
        "secretRef": {"name": "kek", "key": "keys"}
    }
    for spec, message in (
        ({"compressionMinBytes": -1}, "should be greater than or equal to 0"),
        ({"encryption": {}}, "spec.atRest.encryption.secretRef: Required value"),
        ({"encryption": {"secretRef": {"name": "kek", "value": "x"}}}, "unknown field"),
    ):
        bad: dict[str, Any] = {"backend": {"type": "embedded"}, "atRest": spec}
        out = kubectl(
            "create", "--dry-run=server", "-f", "-", input=doc(at_rest_ns, "b", bad), check=False
        )
        assert out.returncode != 0 and message in out.stderr, (spec, out.stderr)


def test_encryption_and_compression_cannot_be_switched_off(
    kube_api: KubeAPI, at_rest_ns: str
) -> None:
    kubectl = kube_api.cluster.kubectl
    kubectl("create", "-f", "-", input=doc(at_rest_ns, "store", ENCRYPTED))
    try:
        plain = {"backend": {"type": "embedded"}, "atRest": {"compressionMinBytes": 1024}}
        out = kubectl("replace", "-f", "-", input=doc(at_rest_ns, "store", plain), check=False)
        assert out.returncode != 0
        assert "atRest.encryption cannot be removed" in out.stderr, out.stderr
        off = {
            "backend": {"type": "embedded"},
            "atRest": {"compressionMinBytes": 0, "encryption": {"secretRef": {"name": "kek"}}},
        }
        out = kubectl("replace", "-f", "-", input=doc(at_rest_ns, "store", off), check=False)
        assert out.returncode != 0
        assert "atRest.compressionMinBytes cannot go back to 0" in out.stderr, out.stderr
        # Raising the threshold (how compression is stopped) and another Secret are fine.
        moved = {
            "backend": {"type": "embedded"},
            "atRest": {
                "compressionMinBytes": 67108864,
                "encryption": {"secretRef": {"name": "kek-2026", "key": "keys"}},
            },
        }
        out = kubectl("replace", "-f", "-", input=doc(at_rest_ns, "store", moved), check=False)
        assert out.returncode == 0, out.stderr
    finally:
        kubectl("delete", "memorystore", "store", "-n", at_rest_ns, "--wait=false", check=False)
