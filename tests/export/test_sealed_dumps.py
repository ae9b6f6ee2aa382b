"""Dumps under encryption at rest: every payload is sealed with the namespace's data key,
so a dump opens only where that key is held and nowhere once it is shredded (crypto-
shredding covers backups); a store without encryption writes the plain dumps of before."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from memstore.core import dump
from memstore.core.errors import (
    ConfigurationError,
    DataShreddedError,
    DumpInvalidError,
    NamespaceImportingError,
)
from memstore.core.payload_codec import ENVELOPE_KEY, new_kek_line
from memstore.core.settings import Settings
from memstore.memory import export
from memstore.memory.manager import DistributedMemoryManager
from tests.contract.test_at_rest import readable_forms
from tests.export.conftest import BACKENDS, fill
from tests.export.test_import_rules import chunks_of, dump_of

PLANT = "PLANTED-dump-5e1f-secret"


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def kek(tmp_path: Path) -> Path:
    path = tmp_path / "kek"
    path.write_text(new_kek_line("k1") + "\n")
    return path


@pytest.fixture
def sealed_store(
    backend_name: str, store_settings: Callable[[str, str], Settings], kek: Path
) -> Callable[[str], Settings]:
    def make(label: str) -> Settings:
        return store_settings(backend_name, label).model_copy(
            update={
                "encryption_key_file": kek,
                "compression_min_bytes": 512,
                "data_key_cache_seconds": 0.0,
                # two managers on one file stand for two processes of one store
                "embedded_shared": backend_name == "embedded",
            }
        )

    return make


async def fill_planted(view: DistributedMemoryManager) -> None:
    await fill(view)
    await view.save_entity("secret", "s1", {"secret": PLANT, "old": True})
    await view.save_entity("secret", "s1", {"secret": PLANT})  # the first is history
    await view.append_messages([{"role": "user", "content": PLANT}], conversation_id="planted")
    # the message replaced is a revision's
    await view.save_conversation_history([{"role": "user", "content": "clean"}], "planted")
    await view.save_tool_usage("web", {"q": PLANT}, {"hits": [PLANT]}, usage_id="t-planted")
    await view.save_learning_feedback("agent", "note", {"text": PLANT, "rating": 5})


def manifest(lines: list[bytes]) -> dict[str, object]:
    obj: dict[str, object] = orjson.loads(lines[0])
    return obj


async def state(view: DistributedMemoryManager) -> list[bytes]:
    """The namespace's records as a plain dump would hold them (its key opens them)."""
    lines = await dump_of(view)
    sealed = manifest(lines).get("sealed")
    namespace = str(manifest(lines)["namespace"])
    out = []
    for raw in lines[1:-1]:
        obj = orjson.loads(raw)
        if isinstance(sealed, dict):
            sealer = await view.dump_opener(namespace, sealed["key_id"])
            obj = dump.map_payloads(obj["kind"], obj, namespace, sealer.open)
        out.append(dump.line(obj))
    return out


async def assert_nothing_written(view: DistributedMemoryManager) -> None:
    summary = await view.get_memory_summary_data()
    assert summary.total_entities == summary.conversations == summary.total_tool_uses == 0
    assert summary.feedback_count == 0
    assert await view.import_marker() is None
    assert (await view.read_changes()).last_position == 0


async def test_a_sealed_dump_holds_no_plaintext_and_imports_while_its_key_exists(
    sealed_store: Callable[[str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    settings = sealed_store("a")
    source = managers(settings).for_namespace("src")
    await fill_planted(source)
    lines = await dump_of(source)
    head = manifest(lines)
    keys = {k["namespace"]: k["key_id"] for k in await source.list_data_keys()}
    assert head["format_version"] == dump.FORMAT_VERSION
    assert head["sealed"] == {"key_id": keys["src"]}
    kinds = {orjson.loads(raw)["kind"] for raw in lines[1:-1]}
    assert {dump.ENTITY_VERSION, dump.REVISION, dump.REVISION_MESSAGE} <= kinds
    for raw in lines[1:-1]:
        obj = orjson.loads(raw)
        if obj.get("deleted") is True:  # a tombstone: no payload
            assert obj["data"] is None
            continue
        for name in dump.PAYLOAD_FIELDS.get(obj["kind"], ()):
            assert ENVELOPE_KEY in obj[name], raw[:200]
    assert PLANT.encode() not in readable_forms(b"".join(lines))
    # Another process of the same store (another replica, `memstore import` through any
    # of them) restores it under another name: the namespace's key opens it.
    restored = managers(settings).for_namespace("restored")
    result = await restored.import_namespace(chunks_of(lines))
    assert result.counts == orjson.loads(lines[-1])["counts"]
    got = await restored.get_entity("secret", "s1")
    assert got is not None and got.data == {"secret": PLANT}
    old = await restored.get_entity_version("secret", "s1", 1)
    assert old is not None and old.data == {"secret": PLANT, "old": True}
    found = await restored.get_conversation_revision(1, "planted")
    assert found is not None and [m.message["content"] for m in found[1]] == [PLANT]
    again = await dump_of(restored)
    # re-sealed with the target's own key, and the same records once opened
    assert manifest(again)["sealed"] == {"key_id": (await restored.dump_sealer()).key.key_id}  # type: ignore[union-attr]
    assert [orjson.loads(x)["kind"] for x in again] == [orjson.loads(x)["kind"] for x in lines]
    assert await state(restored) == await state(source)


async def test_shredding_makes_a_dump_taken_before_unreadable(
    sealed_store: Callable[[str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    store = managers(sealed_store("a"))
    source, other = store.for_namespace("src"), store.for_namespace("other")
    await fill_planted(source)
    await other.save_entity("user", "u1", {"name": "kept"})
    backup, other_backup = await dump_of(source), await dump_of(other)
    before = await state(source)
    shredded = await source.shred_data_key()
    assert shredded["shredded"] is True
    restored = store.for_namespace("restored")
    with pytest.raises(DataShreddedError) as caught:
        await restored.import_namespace(chunks_of(backup))
    key_id = manifest(backup)["sealed"]["key_id"]  # type: ignore[index]
    assert caught.value.details == {"namespace": "src", "key_id": key_id}
    assert "cannot be read" in caught.value.message
    await assert_nothing_written(restored)
    # Not even over the namespace itself: replace deletes nothing when the dump is unreadable.
    count = (await source.get_memory_summary_data()).total_entities
    with pytest.raises(DataShreddedError):
        await source.import_namespace(chunks_of(backup), replace=True)
    assert (await source.get_memory_summary_data()).total_entities == count
    assert before  # what the dump held, read while the key existed
    # The other namespace is untouched: its data and its dumps.
    assert (await other.get_entity("user", "u1")).data == {"name": "kept"}  # type: ignore[union-attr]
    copy = store.for_namespace("other-copy")
    await copy.import_namespace(chunks_of(other_backup))
    assert (await copy.get_entity("user", "u1")).data == {"name": "kept"}  # type: ignore[union-attr]


async def test_a_store_without_the_key_cannot_read_the_dump(
    sealed_store: Callable[[str], Settings],
    store_settings: Callable[[str, str], Settings],
    backend_name: str,
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    source = managers(sealed_store("a")).for_namespace("src")
    await fill_planted(source)
    lines = await dump_of(source)
    # Another store sharing the KEK file, but not the namespace's data key: the dump does
    # not carry the key (it would outlive a shred), so it does not open there.
    elsewhere = managers(sealed_store("b")).for_namespace("src")
    with pytest.raises(DataShreddedError):
        await elsewhere.import_namespace(chunks_of(lines))
    await assert_nothing_written(elsewhere)
    # A store without encryption at rest: told what it needs.
    plain = managers(store_settings(backend_name, "c")).for_namespace("src")
    with pytest.raises(ConfigurationError) as caught:
        await plain.import_namespace(chunks_of(lines))
    assert "MEMSTORE_ENCRYPTION_KEY_FILE" in caught.value.message
    await assert_nothing_written(plain)


async def test_an_altered_sealed_payload_is_refused_before_anything_is_written(
    sealed_store: Callable[[str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    store = managers(sealed_store("a"))
    source = store.for_namespace("src")
    await fill_planted(source)
    lines = await dump_of(source)
    # Flip one bit of the last entity's ciphertext and rewrite the trailer to match: the
    # checksum passes, the authentication of that payload does not.
    where = max(i for i, raw in enumerate(lines) if orjson.loads(raw)["kind"] == dump.ENTITY)
    obj = orjson.loads(lines[where])
    body = bytearray(base64.b64decode(obj["data"][ENVELOPE_KEY]["b"]))
    body[-1] ^= 1
    obj["data"][ENVELOPE_KEY]["b"] = base64.b64encode(bytes(body)).decode()
    altered = [*lines[:where], dump.line(obj), *lines[where + 1 : -1]]
    trailer = orjson.loads(lines[-1])
    trailer["sha256"] = hashlib.sha256(b"".join(altered[1:])).hexdigest()
    altered.append(dump.line(trailer))
    target = store.for_namespace("dst")
    with pytest.raises(DumpInvalidError) as caught:
        await target.import_namespace(chunks_of(altered))
    assert caught.value.message.startswith(f"line {where + 1}: a sealed payload does not open")
    await assert_nothing_written(target)


async def test_without_encryption_the_dump_is_plain(
    backend_name: str,
    store_settings: Callable[[str, str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    source = managers(store_settings(backend_name, "a")).for_namespace("src")
    await fill_planted(source)
    lines = await dump_of(source)
    head = manifest(lines)
    assert head["format_version"] == dump.FORMAT_VERSION == 3
    assert "sealed" not in head
    assert PLANT.encode() in b"".join(lines)
    assert await source.dump_sealer() is None


async def test_a_dump_exported_with_its_key_opens_in_any_store_holding_the_kek(
    sealed_store: Callable[[str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
    tmp_path: Path,
) -> None:
    source = managers(sealed_store("a")).for_namespace("src")
    await fill_planted(source)
    lines = [line async for line in source.export_namespace(with_key=True)]
    sealed = manifest(lines)["sealed"]
    assert isinstance(sealed, dict)
    assert sealed["wrapped_key"]["key_id"] == sealed["key_id"]
    assert sealed["wrapped_key"]["kek_id"] == "k1"
    # The key travels wrapped: neither the payloads nor the key's secret are readable.
    sealer = await source.dump_sealer()
    assert sealer is not None
    readable = readable_forms(b"".join(lines))
    assert PLANT.encode() not in readable and sealer.key.secret not in readable
    before = await state(source)
    # Another store sharing the KEK file: its own key seals what it imports.
    elsewhere = managers(sealed_store("b"))
    moved = elsewhere.for_namespace("moved")
    await moved.import_namespace(chunks_of(lines))
    assert await state(moved) == before
    keys = {k["namespace"]: k["key_id"] for k in await moved.list_data_keys()}
    assert keys["moved"] != sealed["key_id"]
    # What carrying the key means: the dump outlives a shred of it.
    await source.shred_data_key()
    again = elsewhere.for_namespace("moved-again")
    await again.import_namespace(chunks_of(lines))
    assert await state(again) == before
    # A store whose key file lacks that KEK: told which one it needs, nothing written.
    kek2 = tmp_path / "kek2"
    kek2.write_text(new_kek_line("k9") + "\n")
    stranger = managers(sealed_store("c").model_copy(update={"encryption_key_file": kek2}))
    target = stranger.for_namespace("src")
    with pytest.raises(ConfigurationError) as caught:
        await target.import_namespace(chunks_of(lines))
    assert "'k1'" in caught.value.message
    await assert_nothing_written(target)


async def test_an_interrupted_import_of_a_sealed_dump_is_finished_by_running_it_again(
    sealed_store: Callable[[str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    store = managers(sealed_store("a"))
    source = store.for_namespace("src")
    await fill_planted(source)
    lines = await dump_of(source)
    target = store.for_namespace("dst")
    # what an import that died leaves: its marker, naming the dump
    await target.set_import_marker(
        {"started_at": 0.0, "sha256": orjson.loads(lines[-1])["sha256"]}, create=True
    )
    # every replica, this one too, sees the namespace marked from now on
    await asyncio.sleep(export.MARKER_REFRESH_SECONDS * 1.2)
    with pytest.raises(NamespaceImportingError):
        await target.get_entity("secret", "s1")
    await target.import_namespace(chunks_of(lines))
    assert await target.import_marker() is None
    assert await state(target) == await state(source)


async def test_a_dump_after_a_shred_leaves_the_unreadable_history_out_and_imports(
    sealed_store: Callable[[str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    store = managers(sealed_store("a"))
    source = store.for_namespace("src")
    await source.save_entity("note", "n1", {"v": 1})
    await source.save_entity("note", "n1", {"v": 2})
    await source.shred_data_key()
    # saved after the shred (with a new key): v3 of n1, and a key of its own history
    await source.save_entity("note", "n1", {"v": 3})
    await source.save_entity("note", "n2", {"v": 1})
    await source.save_entity("note", "n2", {"v": 2})
    listed = (await source.list_entity_versions("note", "n1")).items
    assert [(v.version, v.shredded) for v in listed] == [(3, False), (2, True), (1, True)]
    lines = await dump_of(source)
    history = [orjson.loads(x) for x in lines if orjson.loads(x)["kind"] == dump.ENTITY_VERSION]
    assert [(h["id"], h["version"]) for h in history] == [("n2", 1)]
    target = store.for_namespace("dst")
    result = await target.import_namespace(chunks_of(lines))
    assert result.counts == orjson.loads(lines[-1])["counts"]
    assert (await target.get_entity("note", "n1")).data == {"v": 3}  # type: ignore[union-attr]
    old = await target.get_entity_version("note", "n2", 1)
    assert old is not None and old.data == {"v": 1}
    assert await target.import_marker() is None


async def test_a_sealed_history_payload_that_is_no_object_is_refused_before_the_marker(
    sealed_store: Callable[[str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    store = managers(sealed_store("a"))
    source = store.for_namespace("src")
    await source.save_entity("note", "n1", {"v": 1})
    await source.save_entity("note", "n1", {"v": 2})
    lines = await dump_of(source)
    # The history row's data sealed as null (what a dump of a shredded row held): it
    # opens, and the trailer is rewritten to match, so only its content is wrong.
    where = next(i for i, x in enumerate(lines) if orjson.loads(x)["kind"] == dump.ENTITY_VERSION)
    obj = orjson.loads(lines[where])
    sealer = await source.dump_opener("src", manifest(lines)["sealed"]["key_id"])  # type: ignore[index]
    obj["data"] = sealer.seal(None, dump.payload_aad("src", dump.ENTITY_VERSION, "data", obj))
    crafted = [*lines[:where], dump.line(obj), *lines[where + 1 : -1]]
    trailer = orjson.loads(lines[-1])
    trailer["sha256"] = hashlib.sha256(b"".join(crafted[1:])).hexdigest()
    crafted.append(dump.line(trailer))
    target = store.for_namespace("dst")
    with pytest.raises(DumpInvalidError) as caught:
        await target.import_namespace(chunks_of(crafted))
    assert caught.value.message == f"line {where + 1}: data must be a JSON object"
    await assert_nothing_written(target)
