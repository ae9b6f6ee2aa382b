"""The manager's side of retention: read touches, background rounds, metrics, settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from pydantic import ValidationError

from memstore.backends.embedded import EmbeddedMemoryBackend
from memstore.core.retention import TOUCH_FRACTION, RetentionConfig, RetentionPolicy
from memstore.core.settings import Settings
from memstore.memory import export
from memstore.memory.manager import DistributedMemoryManager
from memstore.memory.retention import ReadRecorder, RetentionPruner
from memstore.memory.search.vectors import VECTORS_NAMESPACE
from memstore.observability.metrics import PrometheusMetrics

IDLE = 100.0


def _with(settings: Settings, **policy: object) -> Settings:
    config = RetentionConfig(default=RetentionPolicy.model_validate(policy))
    return settings.model_copy(update={"retention": config, "retention_enforce": False})


async def test_reads_refresh_the_idle_clock_at_most_once_per_fraction(
    embedded_settings: Settings,
) -> None:
    async with DistributedMemoryManager(
        settings=_with(embedded_settings, entity_idle_seconds=IDLE)
    ) as memory:
        await memory.save_entity("n", "read", {})
        await memory.save_entity("n", "unread", {})
        written = time.time()
        await asyncio.sleep(0.05)
        reads = ReadRecorder(memory.settings.retention, lambda: memory.backend)
        for _ in range(50):  # cache hits and misses alike
            entity = await memory.get_entity("n", "read")
            assert entity is not None
            reads.read(memory.namespace, "n", "read", time.time())
        assert reads.pending == 1  # 50 reads, one touch
        await reads.flush()
        assert reads.pending == 0
        reads.read(memory.namespace, "n", "read", time.time() + IDLE * TOUCH_FRACTION / 2)
        assert reads.pending == 0  # within a tenth of the idle time: no new touch
        reads.read(memory.namespace, "n", "read", time.time() + IDLE * TOUCH_FRACTION)
        assert reads.pending == 1
        report = await memory.retention_dry_run(at=written + IDLE + 0.01)
        assert [e.id for e in report.entities] == ["unread"]


async def test_the_manager_queues_touches_for_its_reads(embedded_settings: Settings) -> None:
    settings = _with(embedded_settings, entity_idle_seconds=IDLE)
    async with DistributedMemoryManager(settings=settings) as memory:
        await memory.save_entity("n", "a", {})
        await memory.save_entity("n", "b", {})
        written = time.time()
        await asyncio.sleep(0.05)
        await memory.get_entity("n", "a")
        await memory.get_entity("n", "a")
    # closing the manager wrote the queued touch
    async with DistributedMemoryManager(settings=settings) as memory:
        report = await memory.retention_dry_run(at=written + IDLE + 0.01)
        assert [e.id for e in report.entities] == ["b"]


async def test_a_background_round_prunes_every_namespace_in_batches(
    embedded_settings: Settings,
) -> None:
    settings = _with(embedded_settings, conversation_max_messages=2).model_copy(
        update={"retention_batch": 1, "retention_pause_seconds": 0.0}
    )
    prometheus = PrometheusMetrics()
    async with DistributedMemoryManager(settings=settings, prometheus=prometheus) as memory:
        for ns in ("one", "two"):
            view = memory.for_namespace(ns)
            for cid in ("c1", "c2", "c3"):
                await view.append_messages([{"i": i} for i in range(5)], cid)
        # an internal namespace is never pruned
        await memory.backend.append_messages(VECTORS_NAMESPACE, "c1", [{"i": i} for i in range(5)])
        pruner = RetentionPruner(memory.list_namespaces, memory.prune_namespace, 60.0)
        assert await pruner.run_round() == 6  # 3 conversations trimmed in each namespace
        for ns in ("one", "two"):
            summary = await memory.for_namespace(ns).get_memory_summary_data()
            assert (summary.conversations, summary.messages) == (3, 6)
        assert len(await memory.backend.load_messages(VECTORS_NAMESPACE, "c1")) == 5
        assert await pruner.run_round() == 0
        text = generate_latest(prometheus.registry).decode()
        assert (
            'memstore_retention_pruned_items_total{kind="messages",reason="max_messages"} 18.0'
            in text
        )
        assert 'memstore_namespace_items{kind="messages",namespace="one"} 6.0' in text
        assert 'memstore_namespace_bytes{namespace="two"}' in text
        # nothing sealed at rest: the payloads as written are what is stored (6 x {"i":N})
        assert 'memstore_namespace_logical_bytes{namespace="two"} 42.0' in text
        assert 'memstore_namespace_bytes{namespace="two"} 42.0' in text


def test_policies_from_a_file_and_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "retention.yaml"
    path.write_text(
        "default:\n  tool_usage_max_age_seconds: 604800\n"
        "namespaces:\n  team-a:\n    conversation_max_messages: 500\n"
    )
    monkeypatch.setenv("MEMSTORE_RETENTION_FILE", str(path))
    settings = Settings()
    assert settings.retention.policy_for("team-a").conversation_max_messages == 500
    assert settings.retention.policy_for("team-a").tool_usage_max_age_seconds == 604800
    assert settings.retention.policy_for("b").conversation_max_messages is None

    path.write_text("default:\n  entity_idle_seconds: -5\n")
    with pytest.raises(ValidationError, match="entity_idle_seconds: Input should be greater"):
        Settings()
    path.write_text("namespaces:\n  'bad name':\n    entity_idle_seconds: 5\n")
    with pytest.raises(ValidationError, match="namespace"):
        Settings()
    monkeypatch.delenv("MEMSTORE_RETENTION_FILE")
    monkeypatch.setenv("MEMSTORE_RETENTION", '{"default": {"entity_max_age": 5}}')
    with pytest.raises(ValidationError, match="entity_max_age"):
        Settings()


async def test_a_namespace_that_fails_does_not_stop_the_round(
    embedded_settings: Settings,
) -> None:
    settings = _with(embedded_settings, conversation_max_messages=2)
    async with DistributedMemoryManager(settings=settings) as memory:
        for ns in ("aaa-importing", "one"):
            await memory.for_namespace(ns).append_messages([{"i": i} for i in range(5)], "c1")
        # an import under way: every operation on that namespace answers 409
        await memory.for_namespace("aaa-importing").set_import_marker({"started_at": 0.0})
        await asyncio.sleep(export.MARKER_REFRESH_SECONDS * 1.2)
        pruner = RetentionPruner(memory.list_namespaces, memory.prune_namespace, 60.0)
        assert await pruner.run_round() == 1  # "one" trimmed after "aaa-importing" failed
        summary = await memory.for_namespace("one").get_memory_summary_data()
        assert summary.messages == 2


class _NoTouchesIn(EmbeddedMemoryBackend):
    """A real backend that cannot record reads in one namespace (as a backend without
    ``touch_entities`` would)."""

    async def touch_entities(
        self, namespace: str, keys: Sequence[tuple[str, str]], at: float
    ) -> None:
        if namespace == "broken":
            raise NotImplementedError("no touches here")
        await super().touch_entities(namespace, keys, at)


async def test_the_read_recorder_survives_any_failure(embedded_settings: Settings) -> None:
    settings = _with(embedded_settings, entity_idle_seconds=IDLE)
    backend = _NoTouchesIn(settings)
    async with DistributedMemoryManager(settings=settings, backend=backend) as memory:
        await memory.for_namespace("ok").save_entity("n", "a", {})
        reads = ReadRecorder(memory.settings.retention, lambda: memory.backend, interval=0.05)
        reads.start()
        try:
            reads.read("broken", "n", "a", time.time())
            reads.read("ok", "n", "a", time.time())
            for _ in range(100):
                if reads.pending == 0:
                    break
                await asyncio.sleep(0.02)
            assert reads.pending == 0
            # still running: a later read is written too
            reads.read("ok", "n", "b", time.time())
            for _ in range(100):
                if reads.pending == 0:
                    break
                await asyncio.sleep(0.02)
            assert reads.pending == 0
        finally:
            await reads.stop()


def test_policies_in_both_the_variable_and_a_file_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "retention.yaml"
    path.write_text("default:\n  tool_usage_max_age_seconds: 604800\n")
    monkeypatch.setenv("MEMSTORE_RETENTION_FILE", str(path))
    monkeypatch.setenv("MEMSTORE_RETENTION", '{"default": {"tool_usage_max_age_seconds": 5}}')
    with pytest.raises(ValidationError, match="not both"):
        Settings()
    # an empty MEMSTORE_RETENTION beside a file is no conflict
    monkeypatch.setenv("MEMSTORE_RETENTION", "{}")
    assert Settings().retention.default.tool_usage_max_age_seconds == 604800
