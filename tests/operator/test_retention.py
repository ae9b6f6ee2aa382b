"""``spec.retention``: validated by the real kube-apiserver (schema and CEL), rendered by
the operator into the ConfigMap, and read by the service as the same policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memstore.core.retention import RetentionPolicy as ServicePolicy
from memstore.core.settings import Settings
from memstore_operator import builders
from memstore_operator.model import RetentionPolicy, parse_spec, spec_schema
from tests.operator.conftest import GROUP, VERSION, Cluster
from tests.servers.kube import KubeAPI

RETENTION = {
    "intervalSeconds": 30,
    "batch": 50,
    "maxShare": 0.25,
    "default": {
        "entityIdleSeconds": 2592000,
        "conversationMaxMessages": 500,
        "toolUsageMaxAgeSeconds": 604800,
        "versionsKeep": 10,
    },
    "namespaces": {
        "team-a": {"conversationMaxMessages": 0, "feedbackMaxAgeSeconds": 86400},
    },
}


def test_the_crd_names_the_services_policy_fields() -> None:
    """The CRD and the operator's model repeat the service's policy (the operator never
    imports the service): the same fields."""
    props = spec_schema()["properties"]["retention"]["properties"]["default"]["properties"]
    service = set(ServicePolicy.model_fields)
    assert set(RetentionPolicy.model_fields) == service
    assert {RetentionPolicy.model_fields[f].alias for f in service} == set(props)
    for name, prop in props.items():
        assert prop.get("description"), name


def test_the_service_reads_the_rendered_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = parse_spec("m", "ns", {"backend": {"type": "embedded"}, "retention": RETENTION})
    data = builders.config_data(spec)
    assert json.loads(data["MEMSTORE_RETENTION"])["namespaces"] == {
        "team-a": {"conversation_max_messages": None, "feedback_max_age_seconds": 86400}
    }
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert (settings.retention_interval_seconds, settings.retention_batch) == (30, 50)
    assert settings.retention_max_share == 0.25
    assert settings.retention_enforce
    team_a = settings.retention.policy_for("team-a")
    assert team_a.conversation_max_messages is None  # 0 switched the default off
    assert team_a.feedback_max_age_seconds == 86400
    assert team_a.entity_idle_seconds == 2592000  # the default's, kept
    other = settings.retention.policy_for("other")
    assert other.conversation_max_messages == 500 and other.versions_keep == 10
    assert other.feedback_max_age_seconds is None


def test_no_retention_renders_an_empty_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    data = builders.config_data(parse_spec("m", "ns", {"backend": {"type": "embedded"}}))
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    assert Settings().retention.empty


def _doc(namespace: str, name: str, retention: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MemoryStore",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"backend": {"type": "embedded"}, "retention": retention},
        }
    )


@pytest.mark.parametrize(
    ("retention", "message"),
    [
        (
            {"default": {"entityIdleSeconds": 3600, "entityMaxAgeSeconds": 60}},
            "entityIdleSeconds must be shorter than entityMaxAgeSeconds",
        ),
        (
            {"namespaces": {"team-a": {"entityIdleSeconds": 90, "entityMaxAgeSeconds": 90}}},
            "entityIdleSeconds must be shorter than entityMaxAgeSeconds",
        ),
        ({"namespaces": {"bad name": {"versionsKeep": 1}}}, "keys must be memory namespace"),
        ({"default": {"toolUsageMaxAgeSeconds": -1}}, "should be greater than or equal to 0"),
        ({"default": {"conversationMaxMessages": 1.5}}, "conversationMaxMessages"),
        ({"batch": 0}, "spec.retention.batch"),
        ({"maxShare": 0}, "spec.retention.maxShare"),
        ({"default": {"entityMaxAgeSecs": 5}}, "entityMaxAgeSecs"),
    ],
)
def test_the_api_server_rejects_bad_policies(
    crd: Path, kube_api: KubeAPI, kube_namespace: str, retention: dict[str, Any], message: str
) -> None:
    c = Cluster(kube_api, kube_namespace)
    out = c.kubectl(
        "create",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        input=_doc(kube_namespace, "bad", retention),
        check=False,
    )
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


def test_the_api_server_accepts_a_full_policy(
    crd: Path, kube_api: KubeAPI, kube_namespace: str
) -> None:
    c = Cluster(kube_api, kube_namespace)
    out = c.kubectl(
        "create",
        "--dry-run=server",
        "-f",
        "-",
        input=_doc(kube_namespace, "good", RETENTION),
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_versions_keep_0_keeps_no_old_version_as_in_the_service(
    crd: Path, kube_api: KubeAPI, kube_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``versionsKeep: 0`` is a count (keep no old version), not "off", in the default and
    in an override; absent is unbounded. The spec goes through the real API server (its
    schema and defaults), then the operator's rendering, then the service's reading."""
    retention = {
        "default": {"versionsKeep": 0},
        "namespaces": {"team-a": {"versionsKeep": 3}, "team-b": {"versionsKeep": 0}},
    }
    c = Cluster(kube_api, kube_namespace)
    out = c.kubectl(
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        input=_doc(kube_namespace, "keep0", retention),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    spec = parse_spec("keep0", kube_namespace, json.loads(out.stdout)["spec"])
    data = builders.config_data(spec)
    rendered = json.loads(data["MEMSTORE_RETENTION"])
    assert rendered["default"] == {"versions_keep": 0}
    assert rendered["namespaces"] == {
        "team-a": {"versions_keep": 3},
        "team-b": {"versions_keep": 0},
    }
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    policies = Settings().retention
    assert policies.policy_for("other").versions_keep == 0
    assert policies.policy_for("team-a").versions_keep == 3
    assert policies.policy_for("team-b").versions_keep == 0
    # absent: history kept without bound
    unbounded = parse_spec("m", "ns", {"backend": {"type": "embedded"}, "retention": {}})
    assert (
        "versions_keep"
        not in json.loads(builders.config_data(unbounded)["MEMSTORE_RETENTION"])["default"]
    )


def test_the_crd_says_what_versions_keep_0_means() -> None:
    props = spec_schema()["properties"]["retention"]["properties"]["default"]["properties"]
    words = " ".join(props["versionsKeep"]["description"].split())
    assert "0 keeps no old version" in words and "revisions per conversation" in words
