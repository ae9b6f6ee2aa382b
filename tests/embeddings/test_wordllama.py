"""The default embedder: WordLlama from the package's own files."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

from memstore.core.errors import ConfigurationError
from memstore.core.settings import SearchSettings
from memstore.embeddings.base import build_embedder
from memstore.embeddings.wordllama import WordLlamaEmbedder, package_dir

TEXTS = [
    "The cat sat on the mat.",
    "A kitten is sleeping on the rug.",
    "Quarterly revenue grew by eight percent.",
    "The company's sales increased this quarter.",
]


@pytest.fixture
async def embedder():
    built = build_embedder(SearchSettings())
    assert isinstance(built, WordLlamaEmbedder)
    yield built
    await built.close()


async def test_default_is_the_bundled_model(embedder) -> None:
    assert embedder.name == "wordllama/l2_supercat/256"
    assert embedder.dimension == 256


async def test_rows_are_unit_float32_in_order(embedder) -> None:
    rows = await embedder.embed(TEXTS)
    assert rows.shape == (4, 256)
    assert rows.dtype == np.float32
    assert rows.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
    for i, text in enumerate(TEXTS):  # batching and length-sorting keep the order
        alone = await embedder.embed([text])
        np.testing.assert_allclose(alone[0], rows[i], atol=1e-6)


async def test_meaning_is_closer_than_topic_change(embedder) -> None:
    rows = await embedder.embed(TEXTS)
    similarity = rows @ rows.T
    assert similarity[0, 1] > similarity[0, 2]
    assert similarity[0, 1] > similarity[0, 3]
    assert similarity[2, 3] > similarity[2, 0]
    assert similarity[2, 3] > similarity[2, 1]


async def test_same_vectors_as_the_library(embedder) -> None:
    from wordllama import WordLlama

    bare = WordLlama.load("l2_supercat", cache_dir=package_dir(), disable_download=True)
    expected = bare.embed(TEXTS, norm=True)
    np.testing.assert_allclose(await embedder.embed(TEXTS), expected, atol=1e-6)


async def test_empty_inputs(embedder) -> None:
    assert (await embedder.embed([])).shape == (0, 256)
    # A text without a token has no direction: a zero row (similarity 0), never NaN.
    rows = await embedder.embed(["", "word"])
    assert not np.isnan(rows).any()
    assert np.all(rows[0] == 0)
    assert np.linalg.norm(rows[1]) == pytest.approx(1.0, rel=1e-5)


async def test_long_text_is_bounded() -> None:
    embedder = WordLlamaEmbedder()
    try:
        rows = await embedder.embed(["memory " * 200_000, "memory"])
        assert rows.shape == (2, 256)
        # The same word repeated: the truncated average is the word's own direction.
        assert float(rows[0] @ rows[1]) == pytest.approx(1.0, abs=1e-3)
    finally:
        await embedder.close()


async def test_a_smaller_dimension_is_a_prefix() -> None:
    small = build_embedder(SearchSettings(MEMSTORE_EMBEDDER_MODEL="l2_supercat/64"))
    full = WordLlamaEmbedder()
    try:
        assert small is not None
        assert (small.name, small.dimension) == ("wordllama/l2_supercat/64", 64)
        rows = await small.embed(TEXTS)
        prefix = (await full.embed(TEXTS))[:, :64]
        expected = prefix / np.linalg.norm(prefix, axis=1, keepdims=True)
        np.testing.assert_allclose(rows, expected, atol=1e-5)
    finally:
        await full.close()
        if small is not None:
            await small.close()


@pytest.mark.parametrize("model", ["l3_supercat", "l2_supercat/512", "l2_supercat/100", "x/y"])
def test_a_model_not_in_the_package_is_a_configuration_error(model: str) -> None:
    with pytest.raises(ConfigurationError, match="l2_supercat/256"):
        build_embedder(SearchSettings(MEMSTORE_EMBEDDER_MODEL=model))


def test_none_builds_nothing() -> None:
    assert build_embedder(SearchSettings(MEMSTORE_EMBEDDER="none")) is None


def test_loading_leaves_the_root_logger_alone() -> None:
    # A fresh process: under pytest the root logger already has handlers, and wordllama's
    # import-time logging.basicConfig would do nothing.
    code = (
        "import asyncio, logging\n"
        "from memstore.embeddings.wordllama import WordLlamaEmbedder\n"
        "asyncio.run(WordLlamaEmbedder().embed(['hello']))\n"
        "root = logging.getLogger()\n"
        "print(len(root.handlers), root.level)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", str(logging.WARNING)]
