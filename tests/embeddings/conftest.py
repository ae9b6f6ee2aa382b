"""A small model folder made here, offline: wordllama's packaged weights and tokenizer
written in model2vec's format (``StaticModel.save_pretrained``), as a model baked into an
image or mounted for MEMSTORE_EMBEDDER=local would be."""

from __future__ import annotations

from pathlib import Path

import pytest


def save_static_model(folder: Path, *, scale: float = 1.0) -> Path:
    from model2vec import StaticModel
    from safetensors import safe_open
    from tokenizers import Tokenizer

    from memstore.embeddings.wordllama import package_dir

    package = package_dir()
    with safe_open(str(package / "weights" / "l2_supercat_256.safetensors"), "np") as tensors:
        vectors = tensors.get_tensor("embedding.weight") * scale
    tokenizer = Tokenizer.from_file(
        str(package / "tokenizers" / "l2_supercat_tokenizer_config.json")
    )
    StaticModel(vectors=vectors, tokenizer=tokenizer, normalize=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def static_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_static_model(tmp_path_factory.mktemp("models") / "wordllama-m2v")
