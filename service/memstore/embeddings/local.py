"""MEMSTORE_EMBEDDER=local: a static-embedding model from a folder (model2vec).

The folder holds a model in model2vec's format (``config.json``, ``model.safetensors``,
``tokenizer.json``: the potion and M2V models, or any model model2vec distils or
``StaticModel.save_pretrained`` writes) or a sentence-transformers ``StaticEmbedding``
folder; it is baked into the image or mounted at ``MEMSTORE_EMBEDDER_MODEL_PATH``.
model2vec's loader reads a local folder when the path exists and otherwise treats the path
as a Hugging Face repository name and downloads it: memstore checks that the folder holds a
model before calling it, so nothing is ever fetched.

The model2vec extra installs the library: ``pip install 'memstore[model2vec]'``.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from memstore.core.errors import ConfigurationError
from memstore.embeddings.threaded import ThreadedEmbedder
from memstore.embeddings.vectors import unit_rows

if TYPE_CHECKING:
    from model2vec import StaticModel

# Tokens of a text that are embedded: model2vec's default for its static models.
MAX_TOKENS = 512
BATCH_SIZE = 256


def model_files(folder: Path) -> tuple[Path, bool]:
    """The folder's embeddings file (and whether it is a sentence-transformers layout),
    found the way model2vec's loader finds it; ``ConfigurationError`` when the folder
    holds no model."""
    if importlib.util.find_spec("model2vec") is None:
        raise ConfigurationError(
            "MEMSTORE_EMBEDDER=local needs model2vec: pip install 'memstore[model2vec]'"
        )
    from model2vec.persistence.datamodels import FOLDER_LAYOUTS

    if not folder.is_dir():
        raise ConfigurationError(f"MEMSTORE_EMBEDDER_MODEL_PATH={str(folder)!r} is not a folder")
    for layout in FOLDER_LAYOUTS:
        found = layout.with_parent(folder)
        if found.is_valid():
            return found.embeddings, found.is_sentence_transformers
    expected = " or ".join(
        "+".join(str(p) for p in (layout.config, layout.embeddings, layout.tokenizer))
        for layout in FOLDER_LAYOUTS
    )
    raise ConfigurationError(
        f"MEMSTORE_EMBEDDER_MODEL_PATH={str(folder)!r} holds no model: expected {expected}"
    )


def _dimension_and_digest(embeddings: Path, sentence_transformers: bool) -> tuple[int, str]:
    from safetensors import safe_open

    key = "embedding.weight" if sentence_transformers else "embeddings"
    try:
        with safe_open(str(embeddings), framework="numpy") as tensors:
            shape = tensors.get_slice(key).get_shape()
    except Exception as exc:  # safetensors raises its own untyped errors
        raise ConfigurationError(f"{embeddings} is not a model's embeddings: {exc}") from None
    digest = hashlib.sha256()
    with embeddings.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return int(shape[-1]), digest.hexdigest()[:12]


class LocalModelEmbedder(ThreadedEmbedder):
    """A model2vec ``StaticModel`` from a local folder. ``name`` is
    ``local/<folder name>/<dimension>/<first 12 hex of the weights' sha256>``: other
    weights at the same path are another vector space (stored vectors are recomputed)."""

    def __init__(self, folder: Path) -> None:
        super().__init__("embed-local")
        self.folder = folder
        embeddings, sentence_transformers = model_files(folder)
        self.dimension, digest = _dimension_and_digest(embeddings, sentence_transformers)
        self.name = f"local/{folder.name}/{self.dimension}/{digest}"
        self._model: StaticModel | None = None

    def embed_now(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """The blocking work of ``embed`` (in the caller's thread)."""
        rows = self._loaded().encode(
            texts,
            max_length=MAX_TOKENS,
            batch_size=BATCH_SIZE,
            # joblib worker processes would copy the model into each; one thread suffices.
            use_multiprocessing=False,
        )
        return unit_rows(rows)

    def _loaded(self) -> StaticModel:
        with self._load_lock:
            if self._model is None:
                from model2vec import StaticModel

                # The folder is checked again: model2vec downloads when a path is missing.
                model_files(self.folder)
                self._model = StaticModel.from_pretrained(self.folder)
            return self._model
