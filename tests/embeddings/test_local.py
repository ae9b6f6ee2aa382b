"""MEMSTORE_EMBEDDER=local: a model2vec model from a folder, loaded with no network."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from memstore.core.errors import ConfigurationError
from memstore.core.settings import SearchSettings
from memstore.embeddings.base import build_embedder
from memstore.embeddings.local import LocalModelEmbedder
from memstore.embeddings.wordllama import WordLlamaEmbedder
from tests.embeddings.conftest import save_static_model

TEXTS = [
    "The cat sat on the mat.",
    "A kitten is sleeping on the rug.",
    "Quarterly revenue grew by eight percent.",
    "The company's sales increased this quarter.",
]


def settings_for(path: Path) -> SearchSettings:
    return SearchSettings(MEMSTORE_EMBEDDER="local", MEMSTORE_EMBEDDER_MODEL_PATH=path)


async def test_the_folders_model_embeds(static_model_dir: Path) -> None:
    embedder = build_embedder(settings_for(static_model_dir))
    assert isinstance(embedder, LocalModelEmbedder)
    wordllama = WordLlamaEmbedder()
    try:
        assert embedder.dimension == 256
        assert embedder.name.startswith("local/wordllama-m2v/256/")
        rows = await embedder.embed(TEXTS)
        assert rows.shape == (4, 256)
        assert rows.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
        # The same weights through another library's tokenizing and pooling: the same
        # vectors as the wordllama embedder.
        np.testing.assert_allclose(rows, await wordllama.embed(TEXTS), atol=1e-4)
        similarity = rows @ rows.T
        assert similarity[0, 1] > max(similarity[0, 2], similarity[0, 3])
        assert similarity[2, 3] > max(similarity[2, 0], similarity[2, 1])
        assert (await embedder.embed([])).shape == (0, 256)
    finally:
        await embedder.close()
        await wordllama.close()


def test_other_weights_at_the_same_path_are_another_space(tmp_path: Path) -> None:
    folder = save_static_model(tmp_path / "model")
    first = LocalModelEmbedder(folder).name
    shutil.rmtree(folder)
    save_static_model(folder, scale=2.0)
    assert LocalModelEmbedder(folder).name != first


def test_a_missing_folder_is_a_configuration_error(tmp_path: Path) -> None:
    # The settings refuse it first (tests/embeddings/test_settings.py); a folder removed
    # after start-up is this error, not a download (tests/embeddings/test_offline.py).
    with pytest.raises(ConfigurationError, match="is not a folder"):
        LocalModelEmbedder(tmp_path / "absent")


def test_a_folder_without_a_model_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigurationError, match=r"holds no model: expected config\.json"):
        build_embedder(settings_for(tmp_path))


def test_weights_that_are_not_a_model_are_a_configuration_error(tmp_path: Path) -> None:
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ConfigurationError, match="is not a model's embeddings"):
        build_embedder(settings_for(tmp_path))


def test_local_needs_a_path() -> None:
    with pytest.raises(ValueError, match="MEMSTORE_EMBEDDER_MODEL_PATH"):
        SearchSettings(MEMSTORE_EMBEDDER="local")
