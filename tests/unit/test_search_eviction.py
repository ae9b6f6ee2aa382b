"""A replica keeps the search indexes of its most recently searched namespaces only."""

from __future__ import annotations

from pathlib import Path

from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager


async def test_least_recently_searched_index_is_dropped_and_rebuilt(tmp_path: Path) -> None:
    settings = Settings(
        memory_type="embedded",
        data_path=tmp_path / "m.db",
        embedder="none",
        search_max_namespaces=2,
    )
    async with DistributedMemoryManager(settings=settings, namespace="a") as a:
        views = {ns: a.for_namespace(ns) for ns in ("a", "b", "c")}
        for ns, view in views.items():
            await view.save_entity("note", "n1", {"text": f"hello from {ns}"})
        indexes = a._shared.search
        assert indexes is not None

        for ns in ("a", "b"):
            page = await views[ns].search_entities("hello", mode="keyword")
            assert [hit.entity.data["text"] for hit in page.items] == [f"hello from {ns}"]
        first_a, first_b = indexes.index("a"), indexes.index("b")  # "b" now most recent
        assert indexes.index("a") is first_a  # and now "a": "b" is the oldest

        page = await views["c"].search_entities("hello", mode="keyword")
        assert [hit.entity.data["text"] for hit in page.items] == ["hello from c"]
        assert indexes.index("a") is first_a  # kept: searched more recently than "b"
        assert indexes.index("b") is not first_b  # dropped, a new one built

        # a dropped namespace searches as before, with what was written meanwhile
        await views["b"].save_entity("note", "n2", {"text": "hello again"})
        page = await views["b"].search_entities("hello", mode="keyword")
        assert sorted(hit.entity.id for hit in page.items) == ["n1", "n2"]
