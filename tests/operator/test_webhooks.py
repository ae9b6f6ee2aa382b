"""``spec.webhooks``: validated by the real kube-apiserver, reconciled by the operator into
a read-only volume (the list through the downward API, each secret from its Secret), and
that volume, laid out as the kubelet would, read by a real ``memstore serve``."""

from __future__ import annotations

import base64
import copy
import json
import urllib.request
from pathlib import Path
from typing import Any

from memstore.core.changes import CHANGE_KINDS
from memstore.server.webhooks.config import URL_PATTERN, load_webhooks_file
from memstore_operator.model import spec_schema
from tests.operator.conftest import GROUP, VERSION, Cluster, OperatorProcess
from tests.servers.kube import KubeAPI
from tests.support.procs import running_service
from tests.support.waiting import wait_for

SIGNING = "whsec_" + base64.b64encode(b"operator-webhook-secret-0123456").decode()
HOOKS = [
    {
        "name": "audit",
        "namespace": "team-a",
        "url": "https://hooks.example/memstore?src=k8s",
        "secretRef": {"name": "hook-secret", "key": "signing"},
        "kinds": ["entity.saved", "entity.deleted"],
    },
    {
        "name": "audit",
        "namespace": "team-b",
        "url": "http://receiver.tools.svc:8080/in",
        "secretRef": {"name": "hook-secret", "key": "signing"},
        "entityTypes": ["note"],
    },
]


def test_the_crd_states_the_services_rules() -> None:
    """The CRD repeats the service's URL pattern and change kinds (the operator never
    imports the service): they must be the same."""
    item = spec_schema()["properties"]["webhooks"]["items"]["properties"]
    assert item["url"]["pattern"] == URL_PATTERN
    assert tuple(item["kinds"]["items"]["enum"]) == CHANGE_KINDS


def test_a_webhook_named_twice_in_one_namespace_is_rejected(
    crd: Path, kube_api: KubeAPI, kube_namespace: str
) -> None:
    c = Cluster(kube_api, kube_namespace)
    twice = [HOOKS[0], {**HOOKS[0], "url": "https://other.example/"}]
    out = c.apply("dup", {"backend": {"type": "embedded"}, "webhooks": twice}, check=False)
    assert out.returncode != 0
    assert "spec.webhooks[1]: Duplicate value" in out.stderr, out.stderr
    # The same name in two namespaces is two webhooks (the control case).
    spec = {"backend": {"type": "embedded"}, "webhooks": HOOKS}
    doc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MemoryStore",
        "metadata": {"name": "two", "namespace": kube_namespace},
        "spec": spec,
    }
    out = c.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(doc), check=False)
    assert out.returncode == 0, out.stderr


def kubelet_files(dep: dict[str, Any], secrets: dict[str, dict[str, str]], root: Path) -> Path:
    """Lay the webhooks volume out as the kubelet would: the downward API item from the
    pod template's annotation, each Secret item from the Secret's data."""
    template = dep["spec"]["template"]
    (volume,) = (v for v in template["spec"]["volumes"] if v["name"] == "webhooks")
    for source in volume["projected"]["sources"]:
        if "downwardAPI" in source:
            (item,) = source["downwardAPI"]["items"]
            key = item["fieldRef"]["fieldPath"].split("'")[1]
            text = template["metadata"]["annotations"][key]
        else:
            (item,) = source["secret"]["items"]
            text = secrets[source["secret"]["name"]][item["key"]]
        path = root / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_webhooks_reach_the_pods_as_a_mounted_file(
    op: OperatorProcess, kube_api: KubeAPI, kube_namespace: str, tmp_path: Path
) -> None:
    c = Cluster(kube_api, kube_namespace)
    spec = {"backend": {"type": "embedded"}, "webhooks": copy.deepcopy(HOOKS)}
    c.apply("hooked", spec)
    # The Secret does not exist yet: Pending, no Deployment.
    cond = wait_for(
        lambda: (
            (c.condition("hooked", "SecretsResolved") or {}).get("reason") == "SecretNotFound"
            and c.condition("hooked", "SecretsResolved")
        ),
        what="SecretsResolved=False",
    )
    assert "hook-secret" in cond["message"]
    assert c.obj("Deployment", "hooked") is None
    c.kubectl("create", "secret", "generic", "hook-secret", f"--from-literal=signing={SIGNING}")
    dep = wait_for(lambda: c.obj("Deployment", "hooked"), what="the Deployment")

    cm = wait_for(lambda: c.obj("ConfigMap", "hooked-config"), what="the ConfigMap")
    assert cm["data"]["MEMSTORE_WEBHOOKS_FILE"] == "/etc/memstore/webhooks/webhooks.json"
    ctr = dep["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m for m in ctr["volumeMounts"]}
    assert mounts["webhooks"]["mountPath"] == "/etc/memstore/webhooks"
    assert mounts["webhooks"]["readOnly"] is True
    # The secret is nowhere but in its Secret: not in the ConfigMap, the pod template, the
    # store's status or the operator's log.
    key_part = SIGNING.removeprefix("whsec_")
    for text in (json.dumps(cm), json.dumps(dep), json.dumps(c.store("hooked")), op.log_tail(400)):
        assert key_part not in text

    secret = c.obj("Secret", "hook-secret")
    assert secret is not None
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    root = kubelet_files(dep, {"hook-secret": data}, tmp_path / "webhooks")
    hooks = load_webhooks_file(root / "webhooks.json")
    assert [(h.namespace, h.name, h.url, h.source) for h in hooks] == [
        ("team-a", "audit", HOOKS[0]["url"], "file"),
        ("team-b", "audit", HOOKS[1]["url"], "file"),
    ]
    assert all(h.secret.get_secret_value() == SIGNING for h in hooks)
    assert hooks[0].kinds == ("entity.saved", "entity.deleted")
    assert hooks[1].entity_types == ("note",)

    # A real service started with that file lists them (secrets redacted).
    env = {
        "MEMSTORE_WEBHOOKS_FILE": str(root / "webhooks.json"),
        "MEMSTORE_WEBHOOKS_ENABLED": "false",
    }
    with (
        running_service(tmp_path / "svc", env) as svc,
        urllib.request.urlopen(f"{svc.url}/v1/namespaces/team-a/webhooks") as resp,
    ):
        listed = json.loads(resp.read())
    assert [(h["name"], h["source"], h["secret"]) for h in listed["items"]] == [
        ("audit", "file", "**********")
    ]

    # Rotating the Secret rolls the pods (its resourceVersion is in the config hash).
    before = dep["spec"]["template"]["metadata"]["annotations"]["memory.datamcp.io/config-hash"]
    rotated = "whsec_" + base64.b64encode(b"rotated-webhook-secret-0123456").decode()
    patch = json.dumps({"data": {"signing": base64.b64encode(rotated.encode()).decode()}})
    c.kubectl("patch", "secret", "hook-secret", "-p", patch)

    def config_hash() -> str:
        got = c.obj("Deployment", "hooked")
        assert got is not None
        value: str = got["spec"]["template"]["metadata"]["annotations"][
            "memory.datamcp.io/config-hash"
        ]
        return value

    wait_for(lambda: config_hash() != before, what="a new config hash after the rotation")
