"""The embedder contract and the factory that picks one from the settings.

An embedder turns texts into unit-length vectors (cosine similarity is then a dot
product). Its ``name`` says which vector space the vectors live in (model and dimension):
vectors stored under another name are never compared with its own, they are recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from memstore.core.errors import ConfigurationError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from memstore.core.settings import SearchSettings


class Embedder(Protocol):
    """Texts to vectors. Implementations never block the event loop for long: CPU models
    run in a worker thread, remote ones are awaited."""

    name: str
    """The vector space: model and dimension, e.g. ``wordllama/l2_supercat/256``."""

    dimension: int

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One L2-normalised row of ``dimension`` float32 per text, in order."""
        ...

    async def close(self) -> None: ...


def build_embedder(settings: SearchSettings) -> Embedder | None:
    """The embedder ``MEMSTORE_EMBEDDER`` names, or ``None`` for ``none``. Builds it only:
    nothing is loaded or connected until the first ``embed``. A model the settings name
    but that cannot exist (not in the package, no such folder) is a
    ``ConfigurationError`` here, at start-up."""
    if settings.embedder == "wordllama":
        from memstore.embeddings.wordllama import WordLlamaEmbedder

        return WordLlamaEmbedder(settings.embedder_model)
    if settings.embedder == "none":
        return None
    raise ConfigurationError(f"MEMSTORE_EMBEDDER={settings.embedder!r} is not available yet")
