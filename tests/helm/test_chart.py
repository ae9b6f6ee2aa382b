"""Offline checks of charts/memstore: lint, rendering validated against the Kubernetes
schemas (kubernetes-validate, strict: unknown fields fail) and the MemoryStore against its
CRD, security defaults, RBAC shape, monitoring names, generated files up to date."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from memstore.memory.cache import CacheStats
from memstore.observability.metrics import PrometheusMetrics
from memstore_operator import constants as opc
from memstore_operator.__main__ import LIVENESS_DEFAULT
from tests.helm.conftest import ALL_TOGGLES, Helm, Manifest, Renderer, find, pod_specs
from tests.support.procs import ServiceProcess, free_port
from tools import chartgen
from tools.chartgen import CHART, CRD_FILE, README_FILE, REPO, SCHEMA_FILE

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion), the test apiserver's,
# and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.27.0", "1.30.0", "1.37.0")
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}
RENDERINGS = {
    "defaults": (),
    "all-toggles": ALL_TOGGLES,
    "cluster-wide": (*ALL_TOGGLES, "rbac.clusterWide=true"),
    "two-namespaces": (*ALL_TOGGLES, "operator.watchNamespaces={team-a,team-b}"),
    "no-store": ("memoryStore.enabled=false", "serviceAccount.create=false"),
}


# prometheus-operator's monitoring.coreos.com/v1 kinds are not in the Kubernetes schemas:
# these are the parts of their published API that the chart renders (field names and
# types as in the prometheus-operator API reference), strict about unknown fields.
_STR = {"type": "string"}
_LABELS = {"type": "object", "additionalProperties": _STR}
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": _LABELS, "matchExpressions": {"type": "array"}},
}
_META = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": _STR, "namespace": _STR, "labels": _LABELS},
}
_DURATION = {
    "type": "string",
    "pattern": (
        r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
        r"(([0-9]+)ms)?)$"
    ),
}
MONITORING_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "jobLabel": _STR,
                    "selector": _SELECTOR,
                    "namespaceSelector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "any": {"type": "boolean"},
                            "matchNames": {"type": "array", "items": _STR},
                        },
                    },
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["port"],
                            "properties": {
                                "port": _STR,
                                "path": _STR,
                                "interval": _DURATION,
                                "scrapeTimeout": _DURATION,
                            },
                        },
                    },
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "additionalProperties": False,
                            "properties": {
                                "name": _STR,
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["alert", "expr"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "alert": _STR,
                                            "expr": _STR,
                                            "for": _DURATION,
                                            "labels": _LABELS,
                                            "annotations": _LABELS,
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
    },
}


def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return loaded


def crd_validator() -> jsonschema.Draft202012Validator:
    (version,) = [v for v in crd()["spec"]["versions"] if v["storage"]]
    schema = chartgen._convert(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft202012Validator(schema)


def test_helm_lint_strict(helm: Helm) -> None:
    out = helm.run("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out.stdout
    for sets in RENDERINGS.values():
        args = [a for s in sets for a in ("--set", s)]
        helm.run("lint", "--strict", str(CHART), *args)


@pytest.mark.parametrize("case", sorted(RENDERINGS))
def test_rendered_objects_validate_against_kubernetes_schemas(render: Renderer, case: str) -> None:
    manifests = render(*RENDERINGS[case])
    validated = 0
    for m in manifests:
        if m["kind"] == "MemoryStore":
            crd_validator().validate(m)
            continue
        if m["kind"] in MONITORING_KINDS:
            jsonschema.Draft202012Validator(MONITORING_SCHEMAS[m["kind"]]).validate(m)
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(m, version, strict=True)
        validated += 1
    assert validated >= 4


def test_validation_can_fail(render: Renderer) -> None:
    """The schema checks above are real: a wrong field or type is reported."""
    (dep,) = find(render(), "Deployment")
    dep["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, "1.30.0", strict=True)
    dep["spec"]["replicas"] = 1
    dep["spec"]["template"]["spec"]["containerz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, "1.30.0", strict=True)
    (store,) = find(render(), "MemoryStore")
    store["spec"]["backend"]["type"] = "cassandra"
    with pytest.raises(jsonschema.ValidationError):
        crd_validator().validate(store)


def test_crds_dir_is_the_operators_crd() -> None:
    """The chart installs the very files the operator tests load: the MemoryStore CRD
    and those of the backup and restore kinds."""
    from tests.operator.conftest import CRD_DIR as OPERATOR_CRD_DIR
    from tests.operator.conftest import CRD_FILE as OPERATOR_CRD_FILE

    files = sorted(p.name for p in (CHART / "crds").iterdir())
    assert files == sorted(
        [
            CRD_FILE.name,
            "memorystorebackups.memory.datamcp.io.yaml",
            "memorystorerestores.memory.datamcp.io.yaml",
            "memorystorescheduledbackups.memory.datamcp.io.yaml",
        ]
    )
    assert OPERATOR_CRD_DIR.resolve() == (CHART / "crds").resolve()
    assert OPERATOR_CRD_FILE.resolve() == CRD_FILE.resolve()
    spec = crd()["spec"]
    assert spec["group"] == opc.GROUP
    assert spec["names"]["kind"] == opc.KIND
    assert spec["names"]["plural"] == opc.PLURAL
    assert [v["name"] for v in spec["versions"] if v["storage"]] == [opc.VERSION]


def test_generated_schema_and_table_are_up_to_date() -> None:
    assert SCHEMA_FILE.read_text() == chartgen.render_schema(), "run `make chart-gen`"
    assert README_FILE.read_text() == chartgen.render_readme(README_FILE.read_text()), (
        "run `make chart-gen`"
    )


def _paths(values: Any, prefix: str = "") -> tuple[set[str], set[str]]:
    """(every key path, leaf key paths) of a values tree."""
    every: set[str] = set()
    leaves: set[str] = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        every.add(path)
        if isinstance(value, dict) and value:
            sub_every, sub_leaves = _paths(value, f"{path}.")
            every |= sub_every
            leaves |= sub_leaves
        else:
            leaves.add(path)
    return every, leaves


def test_readme_table_lists_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = re.findall(r"^\| `([^`]+)` \|", README_FILE.read_text(), flags=re.MULTILINE)
    assert len(rows) == len(set(rows))
    table = set(rows)
    every, leaves = _paths(values)
    # Each leaf is in the table itself or under a documented parent (e.g. operator.resources
    # documents its requests/limits), and every row names a real key.
    for path in leaves:
        parts = path.split(".")
        parents = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        assert parents & table, f"{path} is missing from the README values table"
    assert table <= every
    # Leaves of undocumented maps are listed one by one.
    assert "operator.livenessProbe.periodSeconds" in table
    assert "grafanaDashboard.labelValue" in table


def test_schema_covers_every_value() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)

    def walk(node: dict[str, Any], sch: dict[str, Any], path: str) -> None:
        for key, value in node.items():
            assert key in sch.get("properties", {}), f"{path}{key} has no schema"
            sub = sch["properties"][key]
            if isinstance(value, dict) and "properties" in sub:
                walk(value, sub, f"{path}{key}.")

    walk(values, schema, "")


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["memoryStore.spec.replicas=many"], "/memoryStore/spec/replicas': got string, want"),
        (["memoryStore.spec.backend.type=cassandra"], "value must be one of 'embedded'"),
        (["memoryStore.spec.replicaz=1"], "additional properties 'replicaz' not allowed"),
        (["memoryStore.enabled=maybe"], "/memoryStore/enabled': got string, want boolean"),
        (["rbac.clusterWide=1"], "/rbac/clusterWide': got number, want boolean"),
        (["operator.watchNamespaces={Not_A_Namespace}"], "/operator/watchNamespaces/0"),
        (["memoryStore.spec.replicas=2"], "maximum: got 2, want 1"),
        (["memoryStore.name=9lives"], "/memoryStore/name"),
        ([f"memoryStore.name={'a' * 53}"], "/memoryStore/name"),
        (["image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["image.digest=sha256:abc"], "/image/digest"),
        (["image.digest=" + "0" * 64], "/image/digest"),
        (["image.digest=md5:" + "0" * 32], "/image/digest"),
        (["image.digest=sha256:" + "A" * 64], "/image/digest"),
        (["image.registry=https://registry.example"], "/image/registry"),
        (["image.registry=registry.example/"], "/image/registry"),
        (["global.imageRegistry=Registry Example"], "/global/imageRegistry"),
        (["prometheusRule.for=five minutes"], "/prometheusRule/for"),
        (["operator.extraEnv[0].name=X", "operator.extraEnv[0].value=1"], "got number, want"),
    ],
)
def test_values_schema_rejects_bad_values(helm: Helm, sets: list[str], message: str) -> None:
    args = [a for s in sets for a in ("--set", s)]
    out = helm.run("template", "r", str(CHART), *args, check=False)
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr
    assert message in out.stderr


def test_long_release_name_fails_with_a_clear_message(helm: Helm) -> None:
    release = "r" * 48  # -> a 57-character store name, which the CRD would refuse
    out = helm.run("template", release, str(CHART), check=False)
    assert out.returncode != 0
    assert "must be a DNS label of at most 52 characters" in out.stderr
    helm.run("template", release, str(CHART), "--set", "memoryStore.name=short")


def test_operator_deployment(render: Renderer) -> None:
    manifests = render()
    (dep,) = find(manifests, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["memstore-operator"]
    port = int(LIVENESS_DEFAULT.rsplit(":", 1)[1].split("/")[0])
    path = "/" + LIVENESS_DEFAULT.split("/", 3)[3]
    assert c["livenessProbe"]["httpGet"] == {"path": path, "port": "health"}
    assert {"name": "health", "containerPort": port, "protocol": "TCP"} in c["ports"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MEMSTORE_OPERATOR_NAMESPACES"] == "memstore"
    (sa,) = find(manifests, "ServiceAccount")
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert c["image"] == "ghcr.io/memstore/memstore:0.1.0"
    (store,) = find(manifests, "MemoryStore")
    assert store["spec"]["image"] == c["image"]


def test_image_defaults_match_the_crd_and_appversion() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    default = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    image = values["image"]
    reference = f"{image['registry']}/{image['repository']}:{chart['appVersion']}"
    assert default["properties"]["image"]["default"] == reference


DIGEST = "sha256:" + "0123456789abcdef" * 4


def rendered_images(manifests: list[Manifest]) -> dict[str, str]:
    """The image of every place the chart names one: the operator container, the first
    MemoryStore's spec.image (what the operator runs), the helm test pod."""
    (dep,) = find(manifests, "Deployment")
    (store,) = find(manifests, "MemoryStore")
    (test_pod,) = find(manifests, "Pod")
    return {
        "operator": dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "store": store["spec"]["image"],
        "helm-test": test_pod["spec"]["containers"][0]["image"],
    }


@pytest.mark.parametrize(
    ("sets", "image"),
    [
        ((), "ghcr.io/memstore/memstore:0.1.0"),
        (("image.tag=1.2.3",), "ghcr.io/memstore/memstore:1.2.3"),
        (("image.registry=reg.example:5000",), "reg.example:5000/memstore/memstore:0.1.0"),
        (("image.registry=", "image.repository=memstore", "image.tag=dev"), "memstore:dev"),
        (("image.registry=localhost:5000/team",), "localhost:5000/team/memstore/memstore:0.1.0"),
        (("global.imageRegistry=mirror.example",), "mirror.example/memstore/memstore:0.1.0"),
        (
            ("global.imageRegistry=mirror.example", "image.registry=registry.example"),
            "mirror.example/memstore/memstore:0.1.0",
        ),
        (
            ("global.imageRegistry=mirror.example", "image.registry="),
            "mirror.example/memstore/memstore:0.1.0",
        ),
        ((f"image.digest={DIGEST}",), f"ghcr.io/memstore/memstore@{DIGEST}"),
        ((f"image.digest={DIGEST}", "image.tag=1.2.3"), f"ghcr.io/memstore/memstore@{DIGEST}"),
        (
            (f"image.digest={DIGEST}", "global.imageRegistry=mirror.example"),
            f"mirror.example/memstore/memstore@{DIGEST}",
        ),
    ],
    ids=[
        "defaults", "tag", "registry", "no-registry", "registry-path", "global",
        "global-wins", "global-alone", "digest", "digest-wins-over-tag", "digest-and-global",
    ],
)  # fmt: skip
def test_every_image_honours_registry_digest_and_global(
    render: Renderer, sets: tuple[str, ...], image: str
) -> None:
    manifests = render(*sets)
    assert rendered_images(manifests) == {"operator": image, "store": image, "helm-test": image}
    # The store's reference is one the CRD accepts (its pattern of spec.image).
    (store,) = find(manifests, "MemoryStore")
    crd_validator().validate(store)


def test_explicit_images_are_used_as_given(render: Renderer) -> None:
    """An image named in the store's spec or for the test pod is a whole reference: the
    chart's registry settings do not rewrite it."""
    images = rendered_images(
        render(
            "global.imageRegistry=mirror.example",
            "memoryStore.spec.image=other.example/memstore:9",
            "tests.image=python:3.11-slim",
        )
    )
    assert images == {
        "operator": "mirror.example/memstore/memstore:0.1.0",
        "store": "other.example/memstore:9",
        "helm-test": "python:3.11-slim",
    }


@pytest.mark.parametrize("case", sorted(RENDERINGS))
def test_restricted_pod_security_and_resources(render: Renderer, case: str) -> None:
    """Every pod meets the restricted Pod Security Standard and sets resources."""
    for name, pod in pod_specs(render(*RENDERINGS[case])):
        psc = pod.get("securityContext", {})
        assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True, name
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, name
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
            assert sc.get("readOnlyRootFilesystem") is True, name
            non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            assert non_root is True, name
            user = sc.get("runAsUser", psc.get("runAsUser"))
            assert user is None or user > 0, name
            seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {}))
            assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), name
            res = c.get("resources", {})
            assert res.get("requests", {}).get("cpu") and res["requests"].get("memory"), name
            assert res.get("limits", {}).get("memory"), name
        for v in pod.get("volumes", []):
            assert set(v) - {"name"} <= {"emptyDir", "configMap", "secret", "projected"}, name


def test_standard_labels_on_every_object(render: Renderer) -> None:
    for m in render(*ALL_TOGGLES):
        labels = m["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ):
            assert labels.get(key), f"{m['kind']}/{m['metadata']['name']} has no {key}"
        assert labels["app.kubernetes.io/instance"] == "rel"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_operator_selector_never_matches_server_pods(render: Renderer) -> None:
    """The operator's labels and the servers' (set by the operator) select disjoint pods."""
    (dep,) = find(render(), "Deployment")
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/name"] != "memstore"
    assert selector["app.kubernetes.io/component"] != "server"


def _rules(role: Manifest) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_rbac_namespaced_by_default(render: Renderer) -> None:
    manifests = render()
    (role,) = find(manifests, "Role")
    assert role["metadata"]["namespace"] == "memstore"
    (binding,) = find(manifests, "RoleBinding")
    (sa,) = find(manifests, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "memstore"}
    ]
    rules = _rules(role)
    assert ("memory.datamcp.io", "memorystores", "watch") in rules
    assert ("memory.datamcp.io", "memorystores/status", "patch") in rules
    assert ("", "secrets", "get") in rules
    # Never: reading all secrets or changing existing ones, wildcards, doing anything to
    # pods but listing them (a backup Job's pod holds its result in its termination
    # message), RBAC, deleting the stores themselves.
    for group, resource, verb in rules:
        assert "*" not in (group, resource, verb)
        assert not (resource == "secrets" and verb not in ("get", "create"))
        assert not (resource.startswith("pods") and (resource, verb) != ("pods", "list"))
        assert resource not in ("roles", "rolebindings", "clusterroles")
        assert not (resource == "memorystores" and verb in ("delete", "create"))
    # The only cluster-scoped grant is kopf's read-only observer.
    (cluster_role,) = find(manifests, "ClusterRole")
    assert {verb for _, _, verb in _rules(cluster_role)} == {"list", "watch"}
    assert {res for _, res, _ in _rules(cluster_role)} == {
        "customresourcedefinitions",
        "namespaces",
    }


# Resources in the operator's own role file that the chart deliberately does not grant.
NOT_NEEDED = {("events.k8s.io", "events"): "kopf posts core/v1 Events"}


def test_rbac_covers_every_resource_the_operator_declares(render: Renderer) -> None:
    """operator/memstore_operator/rbac.yaml (the operator's own, broader role) lists the
    resources the operator touches: the chart grants some verb on each of them, so a new
    resource the operator starts to use cannot be forgotten here. Which verbs is decided
    by the least-privilege tests against the apiserver (tests/helm/test_install.py)."""
    declared = yaml.safe_load((REPO / "operator" / "memstore_operator" / "rbac.yaml").read_text())
    manifests = render()
    granted = {(g, r) for g, r, _ in _rules(find(manifests, "Role")[0])}
    granted |= {(g, r) for g, r, _ in _rules(find(manifests, "ClusterRole")[0])}
    for group, resource, _ in _rules(declared):
        if (group, resource) in NOT_NEEDED:
            continue
        assert (group, resource) in granted, f"the chart grants nothing on {group}/{resource}"


def test_rbac_cluster_wide_option(render: Renderer) -> None:
    manifests = render("rbac.clusterWide=true")
    assert not find(manifests, "Role")
    assert not find(manifests, "RoleBinding")
    roles = {r["metadata"]["name"]: _rules(r) for r in find(manifests, "ClusterRole")}
    assert len(roles) == 2
    main = next(r for name, r in roles.items() if not name.endswith("-observer"))
    (namespaced,) = find(render(), "Role")
    assert main == _rules(namespaced)
    (dep,) = find(manifests, "Deployment")
    env = {
        e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MEMSTORE_OPERATOR_NAMESPACES"] == ""  # every namespace
    assert len(find(manifests, "ClusterRoleBinding")) == 2


def test_rbac_per_watched_namespace(render: Renderer) -> None:
    manifests = render("operator.watchNamespaces={team-a,team-b}")
    assert sorted(r["metadata"]["namespace"] for r in find(manifests, "Role")) == [
        "team-a",
        "team-b",
    ]
    assert {b["subjects"][0]["namespace"] for b in find(manifests, "RoleBinding")} == {"memstore"}


def _service_metric_names() -> set[str]:
    metrics = PrometheusMetrics()
    metrics.watch_cache(CacheStats, lambda: 0)
    names = {"up"}
    for family in metrics.registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


_PROMQL_FUNCS = {
    "sum",
    "rate",
    "histogram_quantile",
    "by",
    "le",
    "max",
    "min",
    "avg",
    "irate",
    "absent",
}


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values (a route may hold braces)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"by \([^)]*\)", "", expr)  # grouping labels
    return {t for t in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)} - _PROMQL_FUNCS


def test_prometheus_rule_alerts_use_the_services_metrics(render: Renderer) -> None:
    (rule,) = find(render("prometheusRule.enabled=true"), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "MemstoreDown",
        "MemstoreTargetMissing",
        "MemstoreHighErrorRate",
        "MemstoreHighLatency",
        "MemstoreBackendUnreachable",
    }
    known = _service_metric_names()
    for name, alert in alerts.items():
        used = _metric_names(alert["expr"])
        assert used, name
        assert used <= known, f"{name} uses unknown metrics {used - known}"
        assert alert["for"] == "5m"
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["summary"]
    assert 'status_class="5xx"' in alerts["MemstoreHighErrorRate"]["expr"]
    # The rule's selector matches the job label the chart's ServiceMonitor produces.
    (monitor,) = find(render("serviceMonitor.enabled=true"), "ServiceMonitor", "rel-memstore")
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "memstore"
    assert 'job="memstore"' in alerts["MemstoreDown"]["expr"]
    # Silence is not health: one rule fires when no memstore target is scraped at all.
    assert alerts["MemstoreTargetMissing"]["expr"] == 'absent(up{job="memstore"})'


def _github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings (lower case, punctuation dropped,
    spaces to dashes)."""
    headings = re.findall(r"^#{1,6} +(.+?) *$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_every_alert_links_to_its_runbook_section(render: Renderer) -> None:
    runbook = REPO / "docs" / "runbook.md"
    anchors = _github_anchors(runbook.read_text())
    base = "https://github.com/datamcp/memstore/blob/main/docs/runbook.md"
    for sets in (
        ("prometheusRule.enabled=true",),
        ("prometheusRule.enabled=true", "prometheusRule.runbookUrl=https://wiki.example/memstore"),
    ):
        (rule,) = find(render(*sets), "PrometheusRule")
        want = base if len(sets) == 1 else "https://wiki.example/memstore"
        alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
        assert alerts
        for alert in alerts:
            url = alert["annotations"]["runbook_url"]
            page, _, anchor = url.partition("#")
            assert page == want, url
            assert anchor == alert["alert"].lower(), url
            assert anchor in anchors, f"docs/runbook.md has no section for {alert['alert']}"


def test_service_monitor_targets_the_servers_port(render: Renderer) -> None:
    manifests = render("serviceMonitor.enabled=true")
    (monitor,) = find(manifests, "ServiceMonitor", "rel-memstore")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == opc.SERVICE_PORT_NAME
    assert endpoint["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["memstore"]}
    wide = find(
        render("serviceMonitor.enabled=true", "rbac.clusterWide=true"),
        "ServiceMonitor",
        "rel-memstore",
    )
    assert wide[0]["spec"]["namespaceSelector"] == {"any": True}
    # The operator's metrics: ServiceMonitor -> headless Service -> the container's port.
    (op_monitor,) = find(manifests, "ServiceMonitor", "rel-memstore-operator")
    (svc,) = find(manifests, "Service")
    (dep,) = find(manifests, "Deployment")
    labels = svc["metadata"]["labels"]
    assert op_monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    (port,) = svc["spec"]["ports"]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[port["targetPort"]] == port["port"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MEMSTORE_OPERATOR_METRICS_PORT"] == str(port["port"])
    assert op_monitor["spec"]["endpoints"][0]["port"] == port["name"]


def test_grafana_dashboard_configmap(render: Renderer) -> None:
    assert not find(render(), "ConfigMap")
    (cm,) = find(render("grafanaDashboard.enabled=true"), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["memstore.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 4
    known = _service_metric_names()
    for expr in exprs:
        assert _metric_names(expr) <= known, expr
    (custom,) = find(
        render("grafanaDashboard.enabled=true", "grafanaDashboard.label=dash"), "ConfigMap"
    )
    assert custom["metadata"]["labels"]["dash"] == "1"


def test_network_policies_and_budget(render: Renderer) -> None:
    manifests = render("networkPolicy.enabled=true", "podDisruptionBudget.enabled=true")
    policies = {p["metadata"]["name"]: p for p in find(manifests, "NetworkPolicy")}
    (dep,) = find(manifests, "Deployment")
    op_policy = policies.pop(dep["metadata"]["name"])
    assert op_policy["spec"]["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    (servers,) = policies.values()
    assert servers["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "memstore",
        "app.kubernetes.io/component": "server",
    }
    (pdb,) = find(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    for toggle in ("NetworkPolicy", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule"):
        assert not find(render(), toggle)


def test_credentials_go_to_a_secret_the_store_references(render: Renderer) -> None:
    manifests = render(
        "memoryStore.spec.backend.type=redis",
        "memoryStore.spec.backend.redis.host=redis.db",
        "memoryStore.spec.replicas=3",
        "memoryStore.credentials.redisPassword=s3cret-pw",
    )
    (secret,) = find(manifests, "Secret")
    (store,) = find(manifests, "MemoryStore")
    assert store["spec"]["backend"]["redis"]["passwordSecretRef"] == {
        "name": secret["metadata"]["name"],
        "key": "redis-password",
    }
    assert "s3cret-pw" not in yaml.safe_dump(store)
    crd_validator().validate(store)


def test_helm_test_hook_calls_readyz(render: Renderer, live_service: ServiceProcess) -> None:
    manifests = render()
    (pod,) = find(manifests, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (store,) = find(manifests, "MemoryStore")
    (c,) = pod["spec"]["containers"]
    assert c["image"] == store["spec"]["image"]  # the chart's image, nothing else to pull
    url = f"http://{store['metadata']['name']}.memstore.svc:8080/readyz"
    assert c["args"][0] == url
    assert not find(render("memoryStore.enabled=false"), "Pod")
    # Run the pod's very command here, against a real memstore: 0 when /readyz answers,
    # non-zero when nothing answers.
    command = [sys.executable, *c["command"][1:]]
    ok = subprocess.run(
        [*command, f"{live_service.url}/readyz", "3", "0.2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "HTTP 200" in ok.stdout
    dead = f"http://127.0.0.1:{free_port()}/readyz"
    failed = subprocess.run(
        [*command, dead, "2", "0.1"], capture_output=True, text=True, timeout=60, check=False
    )
    assert failed.returncode == 1
    assert "attempt 2/2" in failed.stdout


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", chart["version"])
    pyproject = (Path(chartgen.REPO) / "pyproject.toml").read_text()
    (version,) = re.findall(r'^version = "([^"]+)"', pyproject, flags=re.MULTILINE)
    assert chart["appVersion"] == version


def test_redis_tls_example_renders_a_valid_store(render: Renderer, helm: Helm) -> None:
    """examples/redis-tls.yaml (shown in the chart README): TLS refs and the ACL user
    reach the MemoryStore as given, the password only as a Secret reference."""
    example = CHART / "examples" / "redis-tls.yaml"
    manifests = render(extra=["-f", str(example)])
    (store,) = find(manifests, "MemoryStore")
    redis = store["spec"]["backend"]["redis"]
    assert redis["username"] == "memstore"
    assert redis["tls"] == {
        "enabled": True,
        "verifyHostname": True,
        "caSecretRef": {"name": "redis-ca"},
        "clientCertificateSecretRef": {"name": "memstore-redis-client"},
    }
    assert redis["passwordSecretRef"]["key"] == "redis-password"
    assert "change-me" not in yaml.safe_dump(store)
    crd_validator().validate(store)
    helm.run("lint", "--strict", str(CHART), "-f", str(example))


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ["memoryStore.spec.backend.type=redis", "memoryStore.spec.backend.redis.host=r",
             "memoryStore.spec.backend.redis.tls.insecureSkipVerify=true"],
            "additional properties 'insecureSkipVerify' not allowed",
        ),
        (
            ["memoryStore.spec.backend.type=redis", "memoryStore.spec.backend.redis.host=r",
             "memoryStore.spec.backend.redis.tls.enabled=yes"],
            "/memoryStore/spec/backend/redis/tls/enabled': got string, want boolean",
        ),
        (
            ["memoryStore.spec.backend.type=redisCluster",
             "memoryStore.spec.backend.redisCluster.nodes={r:6379}",
             "memoryStore.spec.backend.redisCluster.tls.caSecretRef.name=Bad_Name"],
            "/memoryStore/spec/backend/redisCluster/tls/caSecretRef/name",
        ),
    ],
    ids=["unknown-tls-field", "tls-enabled-not-bool", "ca-secret-bad-name"],
)  # fmt: skip
def test_values_schema_rejects_bad_redis_tls(helm: Helm, sets: list[str], message: str) -> None:
    args = [a for s in sets for a in ("--set", s)]
    out = helm.run("template", "r", str(CHART), *args, check=False)
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr
    assert message in out.stderr, out.stderr


def test_readme_helm_install_commands_render_the_image_they_name(helm: Helm) -> None:
    """Each `helm install` of the README (which needs a cluster) renders as written with
    `helm template`, and the images it names are the ones the operator, the store and the
    test pod get."""
    from tests.docs.test_readme import BLOCKS, commands

    installs = [
        shlex.split(c) for b in BLOCKS if b.lang == "sh" for c in commands(b.code)
        if c.startswith("helm install")
    ]  # fmt: skip
    assert len(installs) >= 3
    expected = {
        "image.repository=memstore": "memstore:dev",
        "image.repository=team/memstore": "registry.example.com/team/memstore:0.1.0",
    }
    seen = set()
    for argv in installs:
        out = helm.run("template", *argv[2:], cwd=REPO)
        manifests = [d for d in yaml.safe_load_all(out.stdout) if d]
        images = set(rendered_images(manifests).values())
        for flag, image in expected.items():
            if flag in argv:
                assert images == {image}, (argv, images)
                seen.add(flag)
    assert seen == set(expected)
