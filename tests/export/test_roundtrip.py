"""Export from A, import into B, export from B: the dumps are identical but for the
manifest's ``origin``, on a covering set of backend pairs (``PAIRS``)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from tests.export.conftest import BACKENDS, fill


async def dump_of(view: DistributedMemoryManager) -> list[bytes]:
    return [line async for line in view.export_namespace()]


def without_origin(lines: list[bytes]) -> list[bytes]:
    manifest = orjson.loads(lines[0])
    assert set(manifest["origin"]) == {
        "backend",
        "exported_at",
        "memstore_version",
        "change_log_position",
    }
    manifest.pop("origin")
    manifest.pop("namespace")
    return [orjson.dumps(manifest), *lines[1:]]


async def chunks(lines: list[bytes], size: int = 7_000) -> AsyncIterator[bytes]:
    data = b"".join(lines)
    for i in range(0, len(data), size):
        yield data[i : i + size]


# A covering set of pairs, not all 16. What a pair proves is two things apart: that the
# source writes the dump of what it holds (its own writes: ``fill`` goes through it), and
# that the target takes another backend's dump and exports it again byte for byte (but for
# ``origin``). The target sees the source only through the dump's bytes, which the source
# must write the same whatever its storage (each pair checks them against the target's
# re-export), so no pair adds anything beyond its source's side and its target's side.
# Each backend is here the source for two other backends and the target of two others
# (its neighbours both ways round the ring below); a pair of a backend with itself would
# check its codec against itself only, the weakest check of all.
RING = BACKENDS + BACKENDS[:1]
PAIRS = [
    *itertools.pairwise(RING),
    *((target, source) for source, target in itertools.pairwise(RING)),
]
assert {s for s, _ in PAIRS} == {t for _, t in PAIRS} == set(BACKENDS)
assert all(source != target for source, target in PAIRS)


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=lambda b: b)
async def test_round_trip_between_backends(
    source: str,
    target: str,
    store_settings: Callable[[str, str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    a = managers(store_settings(source, "a")).for_namespace("team-a")
    b = managers(store_settings(target, "b")).for_namespace("restored")
    await fill(a)
    first = await dump_of(a)
    result = await b.import_namespace(chunks(first))
    assert result.source_namespace == "team-a"
    assert result.counts == orjson.loads(first[-1])["counts"]
    second = await dump_of(b)
    assert without_origin(second) == without_origin(first)
    manifest = orjson.loads(second[0])
    assert manifest["namespace"] == "restored"
    assert manifest["origin"]["backend"] == b.memory_type
    counts = orjson.loads(first[-1])["counts"]
    assert counts == {
        "entity": 19,
        "entity_version": 5,
        "conversation": 5,
        "message": 9,
        "revision": 2,
        "revision_message": 3,
        "tool_usage": 8,
        "feedback": 4,
    }
    # the store works on from the imported state
    user = await b.get_entity("user", "u001")
    assert user is not None and user.version == 1
    saved = await b.save_entity("doc", "d0", {"third": 3})
    assert saved.version == 3
    # a key imported as a tombstone only numbers on after it
    saved = await b.save_entity("doc", "d4", {"back": True})
    assert saved.version == 2
    (appended,) = await b.append_messages([{"next": 1}], conversation_id="conv-0")
    assert appended.seq == 4
    # the conversation retention trimmed kept its seqs (5, 6) and continues after them
    trimmed = await b.backend.load_messages(b.namespace, "trimmed")
    assert [m.seq for m in trimmed] == [5, 6]
    (appended,) = await b.append_messages([{"next": 1}], conversation_id="trimmed")
    assert appended.seq == 7
