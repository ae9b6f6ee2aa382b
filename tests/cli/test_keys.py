"""Encryption at rest through a real ``memstore serve`` and the ``memstore keys`` commands:
key file, rotation with a second key, crypto-shredding one namespace, the HTTP answer of a
shredded read, and no key material in the logs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.cli.run import ok, run
from tests.support.procs import running_service


def j(*args: str) -> Any:
    return json.loads(ok(*args))


def http_get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_keys_rotate_and_shred_through_the_service(tmp_path: Path) -> None:
    k1 = ok("keys", "new-kek", "--id", "k1").strip()
    k2 = ok("keys", "new-kek", "--id", "k2").strip()
    assert k1.startswith("k1:") and len(k1) == 3 + 44
    key_file = tmp_path / "kek"
    key_file.write_text(k1 + "\n")
    env = {"MEMSTORE_ENCRYPTION_KEY_FILE": str(key_file), "MEMSTORE_COMPRESSION_MIN_BYTES": "256"}
    data = tmp_path / "data"

    with running_service(data, env) as svc:
        for ns in ("tenant-a", "tenant-b"):
            ok(
                "entity",
                "put",
                "note",
                "n1",
                '{"text": "the launch code is 0000"}',
                "-n",
                ns,
                "--url",
                svc.url,
            )
        listed = j("keys", "list", "--url", svc.url)
        assert {(k["namespace"], k["kek_id"]) for k in listed} == {
            ("tenant-a", "k1"),
            ("tenant-b", "k1"),
        }
        logs = svc.logs()
    assert k1.split(":")[1] not in logs

    # Rotation: the new key first in the file, the old one kept until rotation is done.
    key_file.write_text(f"{k2}\n{k1}\n")
    with running_service(data, env) as svc:
        rotated = j("keys", "rotate", "--url", svc.url)
        assert rotated == {"kek_id": "k2", "rewrapped": 2, "unchanged": 0}
        assert {k["kek_id"] for k in j("keys", "list", "--url", svc.url)} == {"k2"}

    key_file.write_text(f"{k2}\n")  # k1 retired: everything still reads
    with running_service(data, env) as svc:
        got = j("entity", "get", "note", "n1", "-n", "tenant-a", "--url", svc.url)
        assert got["data"] == {"text": "the launch code is 0000"}

        shredded = j("keys", "shred", "--yes", "-n", "tenant-a", "--url", svc.url)
        assert shredded["namespace"] == "tenant-a" and shredded["shredded"] is True

        failed = run("entity", "get", "note", "n1", "-n", "tenant-a", "--url", svc.url)
        assert failed.returncode != 0
        assert failed.stderr.startswith("Error: data_shredded: "), failed.stderr
        assert "Traceback" not in failed.stderr
        status, body = http_get(f"{svc.url}/v1/namespaces/tenant-a/entities/note/n1")
        assert status == 410
        assert body["code"] == "data_shredded"
        assert body["details"]["namespace"] == "tenant-a"

        other = j("entity", "get", "note", "n1", "-n", "tenant-b", "--url", svc.url)
        assert other["data"] == {"text": "the launch code is 0000"}
        again = run("keys", "shred", "--yes", "-n", "tenant-a", "--url", svc.url)
        assert again.returncode != 0 and "not_found" in again.stderr
        logs = svc.logs()
    assert k2.split(":")[1] not in logs and "launch code" not in logs


def test_keys_without_encryption(tmp_path: Path) -> None:
    """No key file: nothing to rotate while no data key exists; once one does (written by
    a replica that had the key file), rotation says what is missing, and shredding, which
    needs no key, still works."""
    key_file = tmp_path / "kek"
    key_file.write_text(ok("keys", "new-kek", "--id", "k1"))
    data = tmp_path / "data"
    with running_service(data) as svc:
        assert j("keys", "rotate", "--url", svc.url) == {
            "kek_id": None,
            "rewrapped": 0,
            "unchanged": 0,
        }
        assert j("keys", "list", "--url", svc.url) == []
    with running_service(data, {"MEMSTORE_ENCRYPTION_KEY_FILE": str(key_file)}) as svc:
        ok("entity", "put", "note", "n1", '{"text": "x"}', "-n", "ns1", "--url", svc.url)
    with running_service(data) as svc:
        result = run("keys", "rotate", "--url", svc.url)
        assert result.returncode != 0
        assert "configuration_error" in result.stderr
        assert "MEMSTORE_ENCRYPTION_KEY_FILE" in result.stderr
        assert j("keys", "shred", "--yes", "-n", "ns1", "--url", svc.url)["shredded"] is True
        assert j("keys", "list", "--url", svc.url) == []


def test_new_kek_rejects_a_bad_id() -> None:
    result = run("keys", "new-kek", "--id", "no spaces")
    assert result.returncode != 0 and "Traceback" not in result.stderr
