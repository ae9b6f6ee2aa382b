"""MemoryStoreBackup, MemoryStoreScheduledBackup and MemoryStoreRestore against the real
kube-apiserver and kube-controller-manager (tests/servers/kube.py, the Job controller
included): the CRDs' schemas and CEL rules, and the operator's Jobs and status.

There is no kubelet: the Job controller creates each Job's pod, and the test plays the
kubelet by writing the pod's end (phase, exit code, termination message) through the pod
status subresource; the Job controller then completes or fails the Job, which is what
the operator follows. That the Jobs really back up and restore is the node test's part
(tests/node/test_backups.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.operator.conftest import GROUP, VERSION, Cluster, OperatorProcess, store_selector
from tests.servers.kube import KubeAPI
from tests.support.waiting import wait_for

PLURALS = {
    "MemoryStoreBackup": "memorystorebackups",
    "MemoryStoreScheduledBackup": "memorystorescheduledbackups",
    "MemoryStoreRestore": "memorystorerestores",
}
PVC = {"persistentVolumeClaim": {"claimName": "backups", "path": "memstore/prod"}}


def doc(kind: str, name: str, ns: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def backup_spec(store: str = "mem", **more: Any) -> dict[str, Any]:
    return {"memoryStore": {"name": store}, "destination": json.loads(json.dumps(PVC)), **more}


def schedule_spec(store: str = "mem", **more: Any) -> dict[str, Any]:
    return {"schedule": "0 3 * * *", **backup_spec(store), **more}


def restore_spec(store: str = "mem", **more: Any) -> dict[str, Any]:
    return {"memoryStore": {"name": store}, "source": {"backup": {"name": "b1"}}, **more}


# --- the CRDs: schema, defaults and CEL rules (server-side dry run) ---------------------


@pytest.fixture(scope="module")
def validation_ns(crd: Path, kube_api: KubeAPI) -> Iterator[str]:
    ns = "backup-crd-validation"
    kube_api.cluster.kubectl("create", "namespace", ns, check=False)
    yield ns
    kube_api.cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def dry_run(kube: KubeAPI, body: dict[str, Any]) -> Any:
    return kube.cluster.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(body), check=False
    )


def test_valid_specs_are_accepted_with_their_defaults(
    kube_api: KubeAPI, validation_ns: str
) -> None:
    ns = validation_ns
    out = dry_run(kube_api, doc("MemoryStoreBackup", "b1", ns, backup_spec()))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["spec"]["timeoutSeconds"] == 3600
    out = dry_run(
        kube_api,
        doc("MemoryStoreBackup", "b2", ns, backup_spec(tokenSecretRef={"name": "admin-token"})),
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["spec"]["tokenSecretRef"] == {
        "name": "admin-token",
        "key": "token",
    }
    out = dry_run(kube_api, doc("MemoryStoreScheduledBackup", "s1", ns, schedule_spec()))
    assert out.returncode == 0, out.stderr
    spec = json.loads(out.stdout)["spec"]
    assert (spec["keep"], spec["suspend"], spec["immediate"]) == (7, False, False)
    for schedule in ("@daily", "*/5 * * * *", "0 3 * * MON-FRI", "15 2 1,15 * *"):
        body = doc("MemoryStoreScheduledBackup", "s2", ns, schedule_spec(schedule=schedule))
        out = dry_run(kube_api, body)
        assert out.returncode == 0, (schedule, out.stderr)
    out = dry_run(kube_api, doc("MemoryStoreRestore", "r1", ns, restore_spec()))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["spec"]["replace"] is False
    by_claim = restore_spec(
        source={"persistentVolumeClaim": {"claimName": "old", "path": "memstore/b1"}}
    )
    out = dry_run(kube_api, doc("MemoryStoreRestore", "r2", ns, by_claim))
    assert out.returncode == 0, out.stderr


#: (rule, kind, name, spec, the message or field the API server's answer names)
REFUSED: list[tuple[str, str, str, dict[str, Any], str]] = [
    (
        "backup-name-length",
        "MemoryStoreBackup",
        "b" * 57,
        backup_spec(),
        "metadata.name must be a DNS label of at most 56 characters",
    ),
    (
        "backup-path-dot-segment",
        "MemoryStoreBackup",
        "b1",
        backup_spec(destination={"persistentVolumeClaim": {"claimName": "x", "path": "a/../b"}}),
        "spec.destination.persistentVolumeClaim.path",
    ),
    (
        "backup-path-absolute",
        "MemoryStoreBackup",
        "b1",
        backup_spec(destination={"persistentVolumeClaim": {"claimName": "x", "path": "/etc"}}),
        "spec.destination.persistentVolumeClaim.path",
    ),
    (
        "backup-no-destination",
        "MemoryStoreBackup",
        "b1",
        {"memoryStore": {"name": "mem"}},
        "spec.destination: Required value",
    ),
    (
        "backup-timeout-positive",
        "MemoryStoreBackup",
        "b1",
        backup_spec(timeoutSeconds=0),
        "spec.timeoutSeconds",
    ),
    (
        "backup-no-secret-literal",
        "MemoryStoreBackup",
        "b1",
        backup_spec(token="s3cret"),
        'unknown field "spec.token"',
    ),
    (
        "schedule-name-length",
        "MemoryStoreScheduledBackup",
        "s" * 42,
        schedule_spec(),
        "metadata.name must be a DNS label of at most 41 characters",
    ),
    (
        "schedule-cron-fields",
        "MemoryStoreScheduledBackup",
        "s1",
        schedule_spec(schedule="every minute"),
        "schedule must be five cron fields",
    ),
    (
        "schedule-cron-six-fields",
        "MemoryStoreScheduledBackup",
        "s1",
        schedule_spec(schedule="0 * * * * *"),
        "schedule must be five cron fields",
    ),
    (
        "schedule-keep-positive",
        "MemoryStoreScheduledBackup",
        "s1",
        schedule_spec(keep=0),
        "spec.keep",
    ),
    (
        "restore-source-both",
        "MemoryStoreRestore",
        "r1",
        restore_spec(
            source={
                "backup": {"name": "b1"},
                "persistentVolumeClaim": {"claimName": "x", "path": "p"},
            }
        ),
        "source must set exactly one of backup and persistentVolumeClaim",
    ),
    (
        "restore-source-none",
        "MemoryStoreRestore",
        "r1",
        restore_spec(source={}),
        "source must set exactly one of backup and persistentVolumeClaim",
    ),
    (
        "restore-name-length",
        "MemoryStoreRestore",
        "r" * 56,
        restore_spec(),
        "metadata.name must be a DNS label of at most 55 characters",
    ),
]


@pytest.mark.parametrize(
    ("rule", "kind", "name", "spec", "message"), REFUSED, ids=[r[0] for r in REFUSED]
)
def test_bad_specs_are_refused(
    kube_api: KubeAPI,
    validation_ns: str,
    rule: str,
    kind: str,
    name: str,
    spec: dict[str, Any],
    message: str,
) -> None:
    out = dry_run(kube_api, doc(kind, name, validation_ns, spec))
    assert out.returncode != 0, f"{rule} was accepted"
    assert message in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("kind", "spec", "patch", "message"),
    [
        (
            "MemoryStoreBackup",
            backup_spec(),
            {"spec": {"memoryStore": {"name": "other"}}},
            "spec is immutable: create a new MemoryStoreBackup instead",
        ),
        (
            "MemoryStoreRestore",
            restore_spec(),
            {"spec": {"replace": True}},
            "spec is immutable: create a new MemoryStoreRestore instead",
        ),
        (
            "MemoryStoreScheduledBackup",
            schedule_spec(),
            {"spec": {"destination": {"persistentVolumeClaim": {"path": "elsewhere"}}}},
            "memoryStore and destination are immutable",
        ),
    ],
    ids=["backup-spec-immutable", "restore-spec-immutable", "schedule-destination-immutable"],
)
def test_transition_rules_refuse_changes(
    kube_api: KubeAPI, validation_ns: str, kind: str, spec: dict[str, Any], patch: Any, message: str
) -> None:
    """Update rules (CEL on oldSelf): tried on a real object, in a namespace no operator
    acts on (no MemoryStore exists there)."""
    name = f"imm-{kind.lower()[11:]}"
    created = kube_api.cluster.kubectl(
        "create", "-f", "-", input=json.dumps(doc(kind, name, validation_ns, spec))
    )
    assert created.returncode == 0, created.stderr
    out = kube_api.cluster.kubectl(
        "patch", PLURALS[kind], name, "-n", validation_ns, "--type=merge",
        "-p", json.dumps(patch), check=False,
    )  # fmt: skip
    assert out.returncode != 0, out.stdout
    assert message in out.stderr, out.stderr
    # What may change, does: a schedule's timing and retention.
    if kind == "MemoryStoreScheduledBackup":
        ok = kube_api.cluster.kubectl(
            "patch", PLURALS[kind], name, "-n", validation_ns, "--type=merge",
            "-p", json.dumps({"spec": {"keep": 3, "schedule": "@hourly", "suspend": True}}),
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr


def test_every_field_has_a_description() -> None:
    import yaml

    from tests.operator.conftest import CRD_DIR
    from tests.operator.test_crd_explain import DOCUMENTED_BY_KUBERNETES, fields

    for plural in PLURALS.values():
        loaded = yaml.safe_load((CRD_DIR / f"{plural}.{GROUP}.yaml").read_text())
        (version,) = loaded["spec"]["versions"]
        root = version["schema"]["openAPIV3Schema"]
        assert root.get("description")
        missing = [
            path
            for path, schema in fields(root)
            if path not in DOCUMENTED_BY_KUBERNETES
            and not str(schema.get("description", "")).strip()
        ]
        assert not missing, f"{plural}: fields without a description: {missing}"


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("memorystorebackups.spec.tokenSecretRef", "admin role"),
        ("memorystorescheduledbackups.spec.keep", "Completed backups to keep"),
        ("memorystorerestores.spec.replace", "memstore import --replace"),
    ],
)
def test_kubectl_explain_documents_the_kinds(
    crd: Path, kube_api: KubeAPI, path: str, text: str
) -> None:
    def explain() -> str | None:
        out = kube_api.cluster.kubectl("explain", path, check=False)
        return out.stdout if out.returncode == 0 else None

    assert text in " ".join(wait_for(explain, f"kubectl explain {path}").split())


@pytest.mark.parametrize("example", ["backup.yaml", "restore.yaml"])
def test_the_chart_examples_are_accepted(
    kube_api: KubeAPI, validation_ns: str, example: str
) -> None:
    """charts/memstore/examples/{backup,restore}.yaml, which the READMEs show."""
    from tests.operator.conftest import REPO

    path = REPO / "charts" / "memstore" / "examples" / example
    out = kube_api.cluster.kubectl(
        "create", "--dry-run=server", "-n", validation_ns, "-f", str(path), check=False
    )
    assert out.returncode == 0, out.stderr


# --- the operator: Jobs and status -------------------------------------------------------


def custom(c: Cluster, kind: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        got: Any = c.custom.get_namespaced_custom_object(GROUP, VERSION, c.ns, PLURALS[kind], name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(got)


def create(c: Cluster, kind: str, name: str, spec: dict[str, Any], **meta: Any) -> None:
    body = doc(kind, name, c.ns, spec)
    body["metadata"].update(meta)
    out = c.kubectl("create", "-f", "-", input=json.dumps(body))
    assert out.returncode == 0, out.stderr


def status_of(c: Cluster, kind: str, name: str) -> dict[str, Any]:
    got = custom(c, kind, name)
    return dict((got or {}).get("status") or {})


def wait_phase(c: Cluster, kind: str, name: str, phase: str, op: OperatorProcess) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        st = status_of(c, kind, name)
        return st if st.get("phase") == phase else None

    try:
        return wait_for(reached, what=f"{kind} {name} {phase}", timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{status_of(c, kind, name)}\n{op.log_tail()}") from None


def job(c: Cluster, name: str) -> dict[str, Any] | None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        got = client.BatchV1Api(c.api).read_namespaced_job(name, c.ns)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    out: dict[str, Any] = c.api.sanitize_for_serialization(got)
    return out


def finish_job(c: Cluster, job_name: str, exit_code: int, message: str) -> None:
    """Play the kubelet for the Job's pod: its container ended with ``exit_code`` and
    ``message`` as its termination message."""
    pod = wait_for(
        lambda: c.listing("Pod", f"job-name={job_name}"), what=f"the pod of Job {job_name}"
    )[0]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    container = pod["spec"]["containers"][0]
    terminated = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "message": message,
        "startedAt": now,
        "finishedAt": now,
    }
    c.core.patch_namespaced_pod_status(
        pod["metadata"]["name"],
        c.ns,
        {
            "status": {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "startTime": now,
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ],
            }
        },
    )


def ready_store(c: Cluster, name: str, spec: dict[str, Any] | None = None) -> None:
    c.apply(name, spec or {"backend": {"type": "embedded"}})
    wait_for(lambda: c.obj("Deployment", name), what=f"the Deployment {name}")
    wait_for(lambda: c.mark_pods_ready(store_selector(name)), what=f"a pod of {name}")

    def is_ready() -> bool:
        c.mark_pods_ready(store_selector(name))
        return (c.store(name).get("status") or {}).get("phase") == "Ready"

    wait_for(is_ready, what=f"the MemoryStore {name} Ready")


def metric(op: OperatorProcess, name: str, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(op.metrics()):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def test_backup_runs_a_job_and_follows_it(
    op: OperatorProcess, kube_api: KubeAPI, kube_namespace: str
) -> None:
    c = Cluster(kube_api, kube_namespace)
    # A backup created before its store exists waits for it.
    create(c, "MemoryStoreBackup", "b1", backup_spec())
    st = wait_phase(c, "MemoryStoreBackup", "b1", "Pending", op)
    (cond,) = st["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "Completed",
        "Unknown",
        "StoreNotFound",
    )
    assert job(c, "b1-backup") is None

    ready_store(c, "mem")
    st = wait_phase(c, "MemoryStoreBackup", "b1", "Running", op)
    assert st["jobName"] == "b1-backup"
    assert st["backend"] == "embedded"
    assert st["destination"] == {
        "persistentVolumeClaim": {"claimName": "backups", "path": "memstore/prod/b1"}
    }
    j = job(c, "b1-backup")
    assert j is not None
    backup_uid = custom(c, "MemoryStoreBackup", "b1")["metadata"]["uid"]  # type: ignore[index]
    assert [(o["kind"], o["uid"]) for o in j["metadata"]["ownerReferences"]] == [
        ("MemoryStoreBackup", backup_uid)
    ]
    spec = j["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 3600
    pod = spec["template"]["spec"]
    (ctr,) = pod["containers"]
    store = c.store("mem")
    assert ctr["image"] == store["spec"]["image"]
    assert ctr["command"][:2] == ["python", "-c"]
    assert '"memstore", "export", "--all", "--output"' in ctr["command"][2]
    assert ctr["terminationMessagePolicy"] == "FallbackToLogsOnError"
    env = {e["name"]: e for e in ctr["env"]}
    assert env["MEMSTORE_URL"]["value"] == f"http://mem.{c.ns}.svc:8080"
    assert env["MEMSTORE_DUMP_DIR"]["value"] == "/backup/memstore/prod/b1"
    # The token only as a Secret reference: the store's generated admin token.
    assert env["MEMSTORE_TOKEN"] == {
        "name": "MEMSTORE_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "mem-auth", "key": "token"}},
    }
    assert {"name": "backup", "persistentVolumeClaim": {"claimName": "backups"}} in pod["volumes"]
    assert {"name": "backup", "mountPath": "/backup"} in ctr["volumeMounts"]
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The Job's pod is not one of the store's: its Service never selects it.
    labels = spec["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "backup"

    # The Job ends (its pod's termination message is the report): Completed, with the
    # figures and times from the Job.
    finish_job(c, "b1-backup", 0, json.dumps({"sizeBytes": 12345, "namespaces": 3}))
    st = wait_phase(c, "MemoryStoreBackup", "b1", "Completed", op)
    assert (st["sizeBytes"], st["namespaces"]) == (12345, 3)
    assert st["startedAt"] <= st["completedAt"]
    assert st["durationSeconds"] >= 0
    (cond,) = st["conditions"]
    assert (cond["status"], cond["reason"]) == ("True", "Succeeded")
    token = c.obj("Secret", "mem-auth")["data"]["token"]  # type: ignore[index]
    assert token not in json.dumps(custom(c, "MemoryStoreBackup", "b1"))

    # The backup's age is exported, per store.
    age = wait_for(
        lambda: (
            metric(op, "memstore_operator_backup_age_seconds", namespace=c.ns, memorystore="mem")
            is not None
        ),
        what="the backup age metric",
    )
    assert age
    done = metric(
        op,
        "memstore_operator_backup_last_success_timestamp_seconds",
        namespace=c.ns,
        memorystore="mem",
    )
    assert done is not None and abs(done - time.time()) < 300
    assert (
        metric(op, "memstore_operator_backup_runs_total", kind="backup", result="Completed") or 0
    ) >= 1

    # A second backup whose Job fails: Failed, with the CLI's last words as the message.
    create(c, "MemoryStoreBackup", "b2", backup_spec())
    wait_phase(c, "MemoryStoreBackup", "b2", "Running", op)
    finish_job(c, "b2-backup", 1, "memstore: error: the service answered 403: admin role needed")
    st = wait_phase(c, "MemoryStoreBackup", "b2", "Failed", op)
    (cond,) = st["conditions"]
    assert (cond["status"], cond["reason"]) == ("False", "JobFailed")
    assert "admin role needed" in cond["message"], cond

    # Once its Job runs, a backup follows it whatever happens to the store meanwhile.
    create(c, "MemoryStoreBackup", "b3", backup_spec())
    wait_phase(c, "MemoryStoreBackup", "b3", "Running", op)
    c.kubectl("delete", "memorystore", "mem", "--wait=false")
    wait_for(lambda: c.obj("Deployment", "mem") is None, what="the store's Deployment gone")
    finish_job(c, "b3-backup", 0, json.dumps({"sizeBytes": 1, "namespaces": 1}))
    st = wait_phase(c, "MemoryStoreBackup", "b3", "Completed", op)
    assert st["destination"]["persistentVolumeClaim"]["path"] == "memstore/prod/b3"


def test_backup_needs_a_token_when_the_store_has_only_hashes(
    op: OperatorProcess, kube_api: KubeAPI, kube_namespace: str
) -> None:
    c = Cluster(kube_api, kube_namespace)
    from memstore_operator.builders import tokens_file

    secret: Any = {
        "metadata": {"name": "tokens"},
        "stringData": {"tokens.json": tokens_file("the-admin-token")},
    }
    c.core.create_namespaced_secret(c.ns, secret)
    ready_store(
        c, "mem", {"backend": {"type": "embedded"}, "auth": {"secretRef": {"name": "tokens"}}}
    )
    create(c, "MemoryStoreBackup", "nobody", backup_spec())
    st = wait_phase(c, "MemoryStoreBackup", "nobody", "Failed", op)
    (cond,) = st["conditions"]
    assert cond["reason"] == "TokenUnavailable"
    assert "spec.tokenSecretRef" in cond["message"]
    assert job(c, "nobody-backup") is None

    create(
        c,
        "MemoryStoreBackup",
        "given",
        backup_spec(tokenSecretRef={"name": "admin", "key": "t"}),
    )
    wait_phase(c, "MemoryStoreBackup", "given", "Running", op)
    given = job(c, "given-backup")
    assert given is not None
    env = {e["name"]: e for e in given["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MEMSTORE_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "admin", "key": "t"}}


def test_restore_waits_for_its_backup_and_runs_an_import_job(
    op: OperatorProcess, kube_api: KubeAPI, kube_namespace: str
) -> None:
    c = Cluster(kube_api, kube_namespace)
    ready_store(c, "mem")
    ready_store(c, "other")
    create(c, "MemoryStoreBackup", "b1", backup_spec())
    create(c, "MemoryStoreRestore", "r1", restore_spec("other", replace=True))
    st = wait_phase(c, "MemoryStoreRestore", "r1", "Pending", op)
    assert st["conditions"][0]["reason"] == "BackupNotCompleted"
    assert job(c, "r1-restore") is None

    wait_phase(c, "MemoryStoreBackup", "b1", "Running", op)
    finish_job(c, "b1-backup", 0, json.dumps({"sizeBytes": 10, "namespaces": 1}))
    wait_phase(c, "MemoryStoreBackup", "b1", "Completed", op)
    st = wait_phase(c, "MemoryStoreRestore", "r1", "Running", op)
    assert (st["sourceBackend"], st["backend"]) == ("embedded", "embedded")
    j = job(c, "r1-restore")
    assert j is not None
    (ctr,) = j["spec"]["template"]["spec"]["containers"]
    assert ctr["command"][-1] == "--replace"
    assert '"memstore", "import", "--input"' in ctr["command"][2]
    env = {e["name"]: e for e in ctr["env"]}
    assert env["MEMSTORE_URL"]["value"] == f"http://other.{c.ns}.svc:8080"
    assert env["MEMSTORE_DUMP_DIR"]["value"] == "/backup/memstore/prod/b1"
    assert env["MEMSTORE_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "other-auth",
        "key": "token",
    }
    assert {"name": "backup", "mountPath": "/backup", "readOnly": True} in ctr["volumeMounts"]

    finish_job(c, "r1-restore", 0, json.dumps({"sizeBytes": 10, "namespaces": 1}))
    st = wait_phase(c, "MemoryStoreRestore", "r1", "Completed", op)
    assert (st["sizeBytes"], st["namespaces"]) == (10, 1)

    # A restore of a failed backup fails at once; one from a claim path needs no backup.
    create(c, "MemoryStoreBackup", "bad", backup_spec())
    wait_phase(c, "MemoryStoreBackup", "bad", "Running", op)
    finish_job(c, "bad-backup", 1, "boom")
    wait_phase(c, "MemoryStoreBackup", "bad", "Failed", op)
    create(c, "MemoryStoreRestore", "r2", restore_spec("other", source={"backup": {"name": "bad"}}))
    st = wait_phase(c, "MemoryStoreRestore", "r2", "Failed", op)
    assert st["conditions"][0]["reason"] == "BackupFailed"
    by_claim = {"persistentVolumeClaim": {"claimName": "old", "path": "dumps/b7"}}
    create(c, "MemoryStoreRestore", "r3", restore_spec("other", source=by_claim))
    wait_phase(c, "MemoryStoreRestore", "r3", "Running", op)
    (ctr,) = job(c, "r3-restore")["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
    assert ctr["command"][-1] != "--replace"
    env = {e["name"]: e for e in ctr["env"]}
    assert env["MEMSTORE_DUMP_DIR"]["value"] == "/backup/dumps/b7"


def test_schedule_creates_backups_and_keeps_only_keep(
    op: OperatorProcess, kube_api: KubeAPI, kube_namespace: str
) -> None:
    c = Cluster(kube_api, kube_namespace)
    ready_store(c, "mem")
    # Two earlier runs of the schedule, done (made here, as the schedule would have).
    label = {"memory.datamcp.io/scheduled-backup": "nightly"}
    for name in ("nightly-20260101030000", "nightly-20260102030000"):
        create(c, "MemoryStoreBackup", name, backup_spec(), labels=label)
        wait_phase(c, "MemoryStoreBackup", name, "Running", op)
        finish_job(c, f"{name}-backup", 0, json.dumps({"sizeBytes": 1, "namespaces": 1}))
        wait_phase(c, "MemoryStoreBackup", name, "Completed", op)
        time.sleep(1.1)  # creation times one second apart: the order retention follows

    # The schedule, with a backup at once (immediate) and keep 2: its first backup runs.
    create(c, "MemoryStoreScheduledBackup", "nightly", schedule_spec(keep=2, immediate=True))

    def first_backup() -> str | None:
        st = status_of(c, "MemoryStoreScheduledBackup", "nightly")
        return st.get("lastBackup")

    new = wait_for(first_backup, what="the schedule's first backup")
    st = status_of(c, "MemoryStoreScheduledBackup", "nightly")
    assert st["phase"] == "Active"
    assert st["nextScheduleTime"].endswith("T03:00:00Z")
    assert new.startswith("nightly-") and len(new) == len("nightly-20260101030000")
    got = custom(c, "MemoryStoreBackup", new)
    assert got is not None
    assert got["metadata"]["labels"]["memory.datamcp.io/scheduled-backup"] == "nightly"
    assert got["spec"]["destination"] == PVC
    # Nothing is pruned while only two backups are Completed.
    assert custom(c, "MemoryStoreBackup", "nightly-20260101030000") is not None

    wait_phase(c, "MemoryStoreBackup", new, "Running", op)
    finish_job(c, f"{new}-backup", 0, json.dumps({"sizeBytes": 2, "namespaces": 1}))
    wait_phase(c, "MemoryStoreBackup", new, "Completed", op)

    # Three Completed, keep 2: the oldest one's files are removed by a Job, then it goes.
    oldest = "nightly-20260101030000"
    delete_job = wait_for(lambda: job(c, f"{oldest}-delete"), what="the retention Job")
    (ctr,) = delete_job["spec"]["template"]["spec"]["containers"]
    assert ctr["command"] == ["rm", "-rf", "--", "/backup/memstore/prod/nightly-20260101030000"]
    assert custom(c, "MemoryStoreBackup", oldest) is not None  # files first
    finish_job(c, f"{oldest}-delete", 0, "")
    wait_for(
        lambda: custom(c, "MemoryStoreBackup", oldest) is None, what="the oldest backup deleted"
    )
    assert custom(c, "MemoryStoreBackup", "nightly-20260102030000") is not None
    assert custom(c, "MemoryStoreBackup", new) is not None

    def settled() -> dict[str, Any] | None:
        st = status_of(c, "MemoryStoreScheduledBackup", "nightly")
        return st if st.get("backups") == 2 and st.get("lastSuccessfulBackup") == new else None

    st = wait_for(settled, what="the schedule's status")
    conds = {x["type"]: x for x in st["conditions"]}
    assert conds["Scheduled"]["status"] == "True"
    assert conds["LastBackupSucceeded"]["status"] == "True"
    assert st["lastSuccessTime"]

    # Suspended: the phase says so, and no backup is added.
    c.kubectl(
        "patch", "memorystorescheduledbackups", "nightly", "--type=merge",
        "-p", json.dumps({"spec": {"suspend": True}}),
    )  # fmt: skip
    wait_for(
        lambda: status_of(c, "MemoryStoreScheduledBackup", "nightly").get("phase") == "Suspended",
        what="the schedule Suspended",
    )
