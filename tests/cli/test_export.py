"""``memstore export`` / ``memstore import`` as a backup Job runs them: against real
services with auth on, the URL and token from MEMSTORE_URL / MEMSTORE_TOKEN."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.cli.run import ok, run
from tests.security.conftest import write_tokens_file
from tests.support.procs import ServiceProcess, running_service

ADMIN = secrets.token_urlsafe(24)
WRITER = secrets.token_urlsafe(24)


def _service(data: Path) -> Iterator[ServiceProcess]:
    data.mkdir(parents=True, exist_ok=True)
    tokens = write_tokens_file(
        data / "tokens.json",
        [
            ("backup", ADMIN, ["*"], ["read", "write", "admin"]),
            ("writer", WRITER, ["*"], ["read", "write"]),
        ],
    )
    env = {"MEMSTORE_AUTH_ENABLED": "true", "MEMSTORE_AUTH_TOKENS_FILE": str(tokens)}
    with running_service(data, env) as svc:
        yield svc


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    yield from _service(tmp_path_factory.mktemp("export-source"))


@pytest.fixture
def target(tmp_path: Path) -> Iterator[ServiceProcess]:
    yield from _service(tmp_path / "target")


def env_for(svc: ServiceProcess, token: str = ADMIN) -> dict[str, str]:
    return {"MEMSTORE_URL": svc.url, "MEMSTORE_TOKEN": token}


def fill(svc: ServiceProcess, namespace: str) -> None:
    env = env_for(svc, WRITER)
    ok("-n", namespace, "entity", "put", "user", "u1", '{"name": "Ädä"}', env=env)
    ok("-n", namespace, "entity", "put", "user", "u1", '{"name": "Ädä ✓"}', env=env)  # v1: history
    ok("-n", namespace, "entity", "put", "doc", "d1", '{"n": [1, 2.5]}', env=env)
    ok("-n", namespace, "conversation", "append", "c1", '[{"m": 1}, {"m": "two"}]', env=env)
    ok("-n", namespace, "tool", "record", "search", "--input", '{"q": 1}', env=env)
    ok("-n", namespace, "feedback", "add", "bot", "rating", '{"rating": 5}', env=env)


def records(path: Path) -> list[bytes]:
    """The dump without its manifest (namespace and origin differ by design)."""
    return path.read_bytes().splitlines()[1:]


def test_export_then_import_into_another_service(
    source: ServiceProcess, target: ServiceProcess, tmp_path: Path
) -> None:
    fill(source, "cli-one")
    dump_path = tmp_path / "one.jsonl"
    result = run("-n", "cli-one", "export", "--output", str(dump_path), env=env_for(source))
    assert result.returncode == 0, result.stderr
    manifest = json.loads(dump_path.read_bytes().splitlines()[0])
    assert manifest["namespace"] == "cli-one"
    trailer = json.loads(dump_path.read_bytes().splitlines()[-1])
    assert trailer["counts"] == {
        "entity": 2,
        "entity_version": 1,
        "conversation": 1,
        "message": 2,
        "revision": 0,
        "revision_message": 0,
        "tool_usage": 1,
        "feedback": 1,
    }
    # stdout gives the same records
    stdout = run("-n", "cli-one", "export", "--output", "-", env=env_for(source))
    assert stdout.returncode == 0, stdout.stderr
    assert stdout.stdout.encode().splitlines()[1:] == records(dump_path)

    # the manifest's namespace by default ...
    out = ok("import", "--input", str(dump_path), env=env_for(target))
    assert json.loads(out)["namespace"] == "cli-one"
    # ... -n on the command line overrides it for a single file
    out = ok("-n", "cli-copy", "import", "--input", str(dump_path), env=env_for(target))
    assert json.loads(out)["namespace"] == "cli-copy"
    assert json.loads(out)["counts"] == trailer["counts"]
    for namespace in ("cli-one", "cli-copy"):
        again = tmp_path / f"again-{namespace}.jsonl"
        ok("-n", namespace, "export", "-o", str(again), env=env_for(target))
        assert records(again) == records(dump_path)

    # a namespace holding data: refused, then replaced
    refused = run("import", "--input", str(dump_path), env=env_for(target))
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: namespace_not_empty: ")
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    ok("import", "--input", str(dump_path), "--replace", env=env_for(target))
    again = tmp_path / "replaced.jsonl"
    ok("-n", "cli-one", "export", "-o", str(again), env=env_for(target))
    assert records(again) == records(dump_path)


def test_export_all_and_import_a_directory(
    source: ServiceProcess, target: ServiceProcess, tmp_path: Path
) -> None:
    fill(source, "cli-a")
    fill(source, "cli-b")
    folder = tmp_path / "dumps"
    result = run("export", "--all", "--output", str(folder), env=env_for(source))
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in folder.iterdir())
    assert {"cli-a.jsonl", "cli-b.jsonl"} <= set(names)
    assert not [n for n in names if n.startswith(".")]  # no partial files left
    out = ok("import", "--input", str(folder), env=env_for(target))
    imported = [json.loads(line)["namespace"] for line in out.splitlines()]
    assert imported == [n.removesuffix(".jsonl") for n in names]
    for name in ("cli-a", "cli-b"):
        again = tmp_path / f"{name}.jsonl"
        ok("-n", name, "export", "-o", str(again), env=env_for(target))
        assert records(again) == records(folder / f"{name}.jsonl")
    # -n names one target: with a directory it is a usage error
    usage = run("-n", "x", "import", "--input", str(folder), env=env_for(target))
    assert usage.returncode == 2
    assert "a directory's dumps go to the namespaces" in usage.stderr


def test_a_damaged_dump_is_refused_and_nothing_changes(
    source: ServiceProcess, target: ServiceProcess, tmp_path: Path
) -> None:
    fill(source, "cli-damaged")
    dump_path = tmp_path / "d.jsonl"
    ok("-n", "cli-damaged", "export", "-o", str(dump_path), env=env_for(source))
    lines = dump_path.read_bytes().splitlines(keepends=True)
    # one character of one record changed, the line still valid JSON
    lines[1] = lines[1].replace(b"[1,2.5]", b"[1,2.6]")
    assert lines[1] != dump_path.read_bytes().splitlines(keepends=True)[1]
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(b"".join(lines))
    refused = run("import", "-i", str(damaged), env=env_for(target))
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: invalid_dump: ")
    assert "checksum mismatch" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    summary = json.loads(ok("-n", "cli-damaged", "summary", "--json", env=env_for(target)))
    assert summary["total_entities"] == 0 and summary["conversations"] == 0
    # truncated (no trailer)
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_bytes(b"".join(dump_path.read_bytes().splitlines(keepends=True)[:-1]))
    refused = run("import", "-i", str(truncated), env=env_for(target))
    assert refused.returncode == 1
    assert "no trailer" in refused.stderr
    # not a dump at all
    other = tmp_path / "other.jsonl"
    other.write_bytes(orjson.dumps({"hello": 1}) + b"\n")
    refused = run("import", "-i", str(other), env=env_for(target))
    assert refused.returncode == 1
    assert "is this an export dump?" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_export_and_import_need_the_admin_role(source: ServiceProcess, tmp_path: Path) -> None:
    fill(source, "cli-roles")
    refused = run("-n", "cli-roles", "export", "-o", str(tmp_path / "x.jsonl"),
                  env=env_for(source, WRITER))  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: forbidden: ")
    assert not (tmp_path / "x.jsonl").exists()
    assert not list(tmp_path.iterdir())  # the partial file was removed


def test_export_all_skips_a_shredded_namespace(tmp_path: Path) -> None:
    key = ok("keys", "new-kek", "--id", "k1").strip()
    key_file = tmp_path / "kek"
    key_file.write_text(key + "\n")
    env = {"MEMSTORE_ENCRYPTION_KEY_FILE": str(key_file)}
    with running_service(tmp_path / "data", env) as svc:
        url = {"MEMSTORE_URL": svc.url}
        for ns in ("shred-a", "shred-b"):
            ok("-n", ns, "entity", "put", "note", "n1", '{"secret": 1}', env=url)
        ok("-n", "shred-a", "keys", "shred", "--yes", env=url)
        folder = tmp_path / "dumps"
        result = run("export", "--all", "--output", str(folder), env=url)
        # the other namespaces are backed up; the skipped one is named, once, on stderr
        assert result.returncode == 0, result.stderr
        exported = [json.loads(line)["namespace"] for line in result.stdout.splitlines()]
        assert exported == ["shred-b"]
        assert result.stderr.startswith("Skipped namespace shred-a: data_shredded: ")
        assert len(result.stderr.splitlines()) == 1
        assert sorted(p.name for p in folder.iterdir()) == ["shred-b.jsonl"]
        # nothing exported at all: a failure
        ok("-n", "shred-b", "keys", "shred", "--yes", env=url)
        result = run("export", "--all", "--output", str(tmp_path / "none"), env=url)
        assert result.returncode == 1
        assert "Skipped namespace shred-a" in result.stderr
        assert "Skipped namespace shred-b" in result.stderr
        assert "Error: no namespace exported (2 skipped)" in result.stderr
        assert "Traceback" not in result.stderr


def test_an_encrypted_backup_is_shredded_with_its_key_unless_exported_with_it(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "kek"
    key_file.write_text(ok("keys", "new-kek", "--id", "k1"))
    env = {"MEMSTORE_ENCRYPTION_KEY_FILE": str(key_file)}
    with (
        running_service(tmp_path / "a", env) as svc,
        running_service(tmp_path / "b", env) as other,
    ):
        url, other_url = {"MEMSTORE_URL": svc.url}, {"MEMSTORE_URL": other.url}
        ok("-n", "tenant", "entity", "put", "note", "n1", '{"secret": "PLANTED-cli-77"}', env=url)
        plain, carried = tmp_path / "plain.jsonl", tmp_path / "carried.jsonl"
        ok("-n", "tenant", "export", "-o", str(plain), env=url)
        ok("-n", "tenant", "export", "-o", str(carried), "--with-key", env=url)
        for path in (plain, carried):
            assert b"PLANTED-cli-77" not in path.read_bytes()
        assert "wrapped_key" not in json.loads(plain.read_bytes().splitlines()[0])["sealed"]
        assert "wrapped_key" in json.loads(carried.read_bytes().splitlines()[0])["sealed"]
        # the same store restores it under another name while the key exists
        ok("-n", "restored", "import", "--input", str(plain), env=url)
        # another store (same KEK file) only with the key carried
        refused = run("-n", "tenant", "import", "--input", str(plain), env=other_url)
        assert refused.returncode == 1
        assert refused.stderr.startswith("Error: data_shredded: "), refused.stderr
        ok("-n", "tenant", "import", "--input", str(carried), env=other_url)
        got = json.loads(ok("-n", "tenant", "entity", "get", "note", "n1", env=other_url))
        assert got["data"] == {"secret": "PLANTED-cli-77"}
        # after the shred the backup taken before is unreadable, and nothing is written
        ok("-n", "tenant", "keys", "shred", "--yes", env=url)
        refused = run("-n", "again", "import", "--input", str(plain), env=url)
        assert refused.returncode == 1
        assert refused.stderr.startswith("Error: data_shredded: "), refused.stderr
        assert "Traceback" not in refused.stderr
        summary = json.loads(ok("-n", "again", "summary", "--json", env=url))
        assert summary["total_entities"] == 0
