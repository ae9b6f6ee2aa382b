"""MEMSTORE_EMBEDDER=openai: any server that speaks OpenAI's ``POST /v1/embeddings``.

Ollama, vLLM, Hugging Face TEI, LocalAI, llama.cpp's server and OpenAI itself answer
``{"model", "input": [texts]}`` with ``{"data": [{"index", "embedding"}]}``.
``MEMSTORE_EMBEDDER_URL`` is the base URL the OpenAI SDKs take (``http://ollama:11434/v1``;
``/embeddings`` is appended; a URL that already ends in ``/embeddings`` is used as is),
``MEMSTORE_EMBEDDER_MODEL`` the model the server serves, ``MEMSTORE_EMBEDDER_API_KEY``
an optional bearer token (kept as a ``SecretStr``: never in a repr, a log or an error).

The texts go out in batches of ``BATCH_SIZE`` (TEI's default limit per request),
``CONCURRENCY`` requests at a time. Errors are memstore's: the endpoint down, timing out,
overloaded (429) or failing (5xx) is ``BackendUnavailableError`` (retry later); an answer
that says the settings are wrong (401/403: the key; 404: the URL or the model; any other
4xx) or that is not an embeddings answer is ``ConfigurationError``. Messages carry the
URL without credentials and the HTTP status, never the texts or the server's body (which
may quote them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
from pydantic import SecretStr
from yarl import URL

from memstore.core.errors import BackendUnavailableError, ConfigurationError
from memstore.embeddings.vectors import unit_rows

BATCH_SIZE = 32
CONCURRENCY = 4
CONNECT_TIMEOUT_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 60.0


def embeddings_url(base: str) -> URL:
    url = URL(base)
    if url.path.rstrip("/").endswith("/embeddings"):
        return url
    return url.with_path(url.path.rstrip("/") + "/embeddings")


class OpenAICompatibleEmbedder:
    """``name`` is ``openai/<model>``. ``dimension`` is what the endpoint's model answers:
    0 until the first ``embed``; an answer of another dimension later is a
    ``ConfigurationError`` (the model behind the name changed)."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: SecretStr | None = None,
        batch_size: int = BATCH_SIZE,
        concurrency: int = CONCURRENCY,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> None:
        self.url = embeddings_url(url)
        if self.url.scheme not in ("http", "https") or not self.url.host:
            raise ConfigurationError("MEMSTORE_EMBEDDER_URL must be an http:// or https:// URL")
        # Where errors say the endpoint is: no user, password or query (a key may hide there).
        self.where = str(self.url.with_user(None).with_query(None))
        self.model = model
        self.name = f"openai/{model}"
        self.dimension = 0
        self._api_key = api_key
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._timeout = timeout or aiohttp.ClientTimeout(
            total=REQUEST_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS
        )
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"OpenAICompatibleEmbedder({self.name!r}, {self.where!r})"

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batches = [
            list(texts[start : start + self._batch_size])
            for start in range(0, len(texts), self._batch_size)
        ]
        limit = asyncio.Semaphore(self._concurrency)

        async def one(batch: list[str]) -> npt.NDArray[np.float32]:
            async with limit:
                return await self._request(batch)

        rows = np.concatenate(await asyncio.gather(*(one(batch) for batch in batches)))
        return unit_rows(rows)

    async def _request(self, batch: list[str]) -> npt.NDArray[np.float32]:
        session = self._open_session()
        try:
            async with session.post(
                self.url, json={"model": self.model, "input": batch, "encoding_format": "float"}
            ) as answer:
                if answer.status != 200:
                    raise self._status_error(answer.status, answer.reason)
                body = await answer.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            kind = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise BackendUnavailableError(
                f"embedding endpoint {self.where} unavailable ({kind})"
            ) from None
        except ValueError:  # the body is not JSON
            raise self._not_embeddings("the answer is not JSON") from None
        return self._rows(body, len(batch))

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {}
            if self._api_key is not None:
                headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=headers)
        return self._session

    def _status_error(
        self, status: int, reason: str | None
    ) -> BackendUnavailableError | ConfigurationError:
        said = f"embedding endpoint {self.where} answered {status} {reason or ''}".rstrip()
        if status == 429 or status >= 500:
            return BackendUnavailableError(said)
        if status in (401, 403):
            return ConfigurationError(f"{said}: check MEMSTORE_EMBEDDER_API_KEY")
        if status == 404:
            return ConfigurationError(
                f"{said}: check MEMSTORE_EMBEDDER_URL and that it serves"
                f" MEMSTORE_EMBEDDER_MODEL={self.model!r}"
            )
        return ConfigurationError(said)

    def _not_embeddings(self, why: str) -> ConfigurationError:
        return ConfigurationError(
            f"embedding endpoint {self.where} did not answer as /v1/embeddings does: {why}"
        )

    def _rows(self, body: Any, count: int) -> npt.NDArray[np.float32]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or len(data) != count:
            raise self._not_embeddings(f"expected {count} items in 'data'")
        try:
            ordered = sorted(data, key=lambda item: int(item.get("index", 0)))
            rows = np.array([item["embedding"] for item in ordered], dtype=np.float32)
        except (AttributeError, KeyError, TypeError, ValueError):
            raise self._not_embeddings("each item needs an 'embedding' list of numbers") from None
        if rows.ndim != 2 or rows.shape[1] == 0 or not np.isfinite(rows).all():
            raise self._not_embeddings("embeddings of one length, finite numbers")
        if self.dimension == 0:
            self.dimension = int(rows.shape[1])
        elif rows.shape[1] != self.dimension:
            raise ConfigurationError(
                f"embedding endpoint {self.where} answered {rows.shape[1]} dimensions for"
                f" {self.model!r}, earlier {self.dimension}: the model behind the name changed"
            )
        return rows

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
