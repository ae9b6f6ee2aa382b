"""The OpenAI-compatible embedder against a real HTTP server on loopback
(tests/servers/embeddings_endpoint.py: the /v1/embeddings protocol, answering with
WordLlama's vectors; it stands in for Ollama, vLLM or TEI, which cannot run here)."""

from __future__ import annotations

import json
import logging
import urllib.request

import aiohttp
import numpy as np
import pytest
from pydantic import SecretStr

from memstore.core.errors import BackendUnavailableError, ConfigurationError
from memstore.core.settings import SearchSettings
from memstore.embeddings.base import build_embedder
from memstore.embeddings.openai_compatible import OpenAICompatibleEmbedder, embeddings_url
from memstore.embeddings.wordllama import WordLlamaEmbedder
from tests.servers.embeddings_endpoint import API_KEY, MAX_BATCH, MODEL
from tests.support.procs import free_port

TEXTS = ["The cat sat on the mat.", "Quarterly revenue grew by eight percent.", "recall"]


def stats(endpoint) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/stats") as answer:
        result: dict[str, int] = json.load(answer)
    return result


@pytest.fixture
async def embedder(embeddings_endpoint):
    built = build_embedder(
        SearchSettings(
            MEMSTORE_EMBEDDER="openai",
            MEMSTORE_EMBEDDER_URL=embeddings_endpoint.base_url,
            MEMSTORE_EMBEDDER_MODEL=MODEL,
            MEMSTORE_EMBEDDER_API_KEY=API_KEY,
        )
    )
    assert isinstance(built, OpenAICompatibleEmbedder)
    yield built
    await built.close()


async def test_vectors_are_the_models_unit_rows_in_order(embedder) -> None:
    assert (embedder.name, embedder.dimension) == (f"openai/{MODEL}", 0)
    rows = await embedder.embed(TEXTS)
    assert embedder.dimension == 256
    assert rows.shape == (3, 256)
    assert rows.dtype == np.float32
    # The server scales its vectors by 3 and lists items in reverse: unit rows, in order.
    local = WordLlamaEmbedder()
    try:
        np.testing.assert_allclose(rows, await local.embed(TEXTS), atol=1e-5)
    finally:
        await local.close()


async def test_batches_stay_within_the_servers_limit(embedder, embeddings_endpoint) -> None:
    texts = [f"memory number {i}" for i in range(3 * MAX_BATCH + 5)]
    before = stats(embeddings_endpoint)
    rows = await embedder.embed(texts)
    after = stats(embeddings_endpoint)
    assert rows.shape == (len(texts), 256)
    assert after["requests"] - before["requests"] == 4
    assert after["inputs"] - before["inputs"] == len(texts)
    alone = await embedder.embed([texts[-1]])
    np.testing.assert_allclose(rows[-1], alone[0], atol=1e-6)


async def test_empty_input_sends_nothing(embedder, embeddings_endpoint) -> None:
    before = stats(embeddings_endpoint)
    assert (await embedder.embed([])).shape[0] == 0
    assert stats(embeddings_endpoint) == before


async def test_a_batch_over_the_servers_limit_is_a_configuration_error(
    embeddings_endpoint,
) -> None:
    embedder = OpenAICompatibleEmbedder(
        embeddings_endpoint.base_url, MODEL, api_key=SecretStr(API_KEY), batch_size=64
    )
    try:
        with pytest.raises(ConfigurationError, match="413"):
            await embedder.embed(["x"] * 40)
    finally:
        await embedder.close()


async def test_a_wrong_key_is_a_configuration_error_that_never_shows_the_key(
    embeddings_endpoint, caplog
) -> None:
    secret = "sk-wrong-key-1234567890"
    embedder = build_embedder(
        SearchSettings(
            MEMSTORE_EMBEDDER="openai",
            MEMSTORE_EMBEDDER_URL=embeddings_endpoint.base_url,
            MEMSTORE_EMBEDDER_MODEL=MODEL,
            MEMSTORE_EMBEDDER_API_KEY=secret,
        )
    )
    assert embedder is not None
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(ConfigurationError, match="401") as raised:
            await embedder.embed(TEXTS)
    finally:
        await embedder.close()
    assert "MEMSTORE_EMBEDDER_API_KEY" in str(raised.value)
    for shown in (str(raised.value), repr(raised.value), repr(embedder), caplog.text):
        assert secret not in shown
    assert secret not in repr(vars(embedder))
    assert "The cat" not in str(raised.value)


async def test_no_key_when_none_is_set(embeddings_endpoint) -> None:
    embedder = OpenAICompatibleEmbedder(embeddings_endpoint.base_url, MODEL)
    try:
        with pytest.raises(ConfigurationError, match="401"):
            await embedder.embed(TEXTS)
    finally:
        await embedder.close()


async def test_an_unknown_model_names_the_settings(embeddings_endpoint) -> None:
    embedder = OpenAICompatibleEmbedder(
        embeddings_endpoint.base_url, "no-such-model", api_key=SecretStr(API_KEY)
    )
    try:
        with pytest.raises(ConfigurationError, match=r"404.*MEMSTORE_EMBEDDER_MODEL"):
            await embedder.embed(TEXTS)
    finally:
        await embedder.close()


async def test_an_endpoint_that_is_down_is_backend_unavailable() -> None:
    embedder = OpenAICompatibleEmbedder(f"http://127.0.0.1:{free_port()}/v1", MODEL)
    try:
        with pytest.raises(BackendUnavailableError, match="unavailable") as raised:
            await embedder.embed(TEXTS)
    finally:
        await embedder.close()
    assert raised.value.code == "backend_unavailable"


async def test_a_slow_endpoint_times_out_as_backend_unavailable(embeddings_endpoint) -> None:
    embedder = OpenAICompatibleEmbedder(
        embeddings_endpoint.base_url,
        "slow",
        api_key=SecretStr(API_KEY),
        timeout=aiohttp.ClientTimeout(total=0.5),
    )
    try:
        with pytest.raises(BackendUnavailableError, match="timed out"):
            await embedder.embed(TEXTS)
    finally:
        await embedder.close()


async def test_an_answer_that_is_not_embeddings(embeddings_endpoint) -> None:
    # /stats answers JSON, but not an embeddings list.
    embedder = OpenAICompatibleEmbedder(
        f"http://127.0.0.1:{embeddings_endpoint.port}/stats/embeddings", MODEL
    )
    try:
        with pytest.raises(ConfigurationError):
            await embedder.embed(TEXTS)
    finally:
        await embedder.close()


def test_url_forms() -> None:
    assert str(embeddings_url("http://h:11434/v1")) == "http://h:11434/v1/embeddings"
    assert str(embeddings_url("http://h:11434/v1/")) == "http://h:11434/v1/embeddings"
    assert str(embeddings_url("http://h/v1/embeddings")) == "http://h/v1/embeddings"
    embedder = OpenAICompatibleEmbedder("http://user:pw@h/v1?key=k", "m")
    assert embedder.where == "http://h/v1/embeddings"
    assert "pw" not in repr(embedder)
