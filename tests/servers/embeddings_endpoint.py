"""A real HTTP server speaking OpenAI's ``POST /v1/embeddings``, on loopback, in its own
process: it stands in for Ollama, vLLM or TEI, which cannot run here (no model download,
no accelerator). Its vectors are WordLlama's (from the package's files), scaled by 3 so a
client that forgets to normalise is caught. It behaves as those servers do at the edges:

* ``model`` must be the one it serves (``--model``), else 404 ``model not found`` (Ollama);
* with ``--api-key``, a request without ``Authorization: Bearer <key>`` gets 401;
* more than ``--max-batch`` inputs in one request get 413 (TEI's max_client_batch_size);
* ``input`` may be a string or a list of strings; ``data`` items carry their ``index``
  and are sent in reverse order (the protocol orders them by ``index``, not position);
* the model ``slow`` answers after 30 s (a client's timeout is tested against it).

It counts requests (``GET /stats``) so a test sees the batching. Run it alone with
``python -m tests.servers.embeddings_endpoint --port 8099``.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from tests.support.procs import free_port, wait_http

MODEL = "wordllama-test"
API_KEY = "test-embedding-key"
MAX_BATCH = 32


def make_app(model: str, api_key: str | None, max_batch: int) -> web.Application:
    from memstore.embeddings.wordllama import WordLlamaEmbedder

    embedder = WordLlamaEmbedder()
    stats = {"requests": 0, "inputs": 0}

    async def embeddings(request: web.Request) -> web.Response:
        if api_key is not None and request.headers.get("Authorization") != f"Bearer {api_key}":
            return web.json_response({"error": {"message": "invalid api key"}}, status=401)
        body = await request.json()
        if body.get("model") == "slow":
            await asyncio.sleep(30)
        if body.get("model") != model:
            return web.json_response(
                {"error": {"message": f"model {body.get('model')!r} not found"}}, status=404
            )
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) > max_batch:
            return web.json_response(
                {"error": {"message": f"batch size {len(texts)} > {max_batch}"}}, status=413
            )
        stats["requests"] += 1
        stats["inputs"] += len(texts)
        rows = await embedder.embed(texts) * 3.0
        data = [
            {"object": "embedding", "index": i, "embedding": row.tolist()}
            for i, row in enumerate(rows)
        ]
        return web.json_response(
            {"object": "list", "model": model, "data": data[::-1], "usage": {"prompt_tokens": 0}}
        )

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/stats", get_stats)
    return app


@dataclass
class EmbeddingsEndpoint:
    base_url: str  # what MEMSTORE_EMBEDDER_URL takes: http://127.0.0.1:<port>/v1
    port: int


@pytest.fixture(scope="session")
def embeddings_endpoint() -> Iterator[EmbeddingsEndpoint]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.embeddings_endpoint", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/stats", proc=proc)
        yield EmbeddingsEndpoint(f"http://127.0.0.1:{port}/v1", port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--api-key", default=API_KEY)
    parser.add_argument("--max-batch", type=int, default=MAX_BATCH)
    args = parser.parse_args()
    web.run_app(
        make_app(args.model, args.api_key or None, args.max_batch),
        host="127.0.0.1",
        port=args.port,
        print=None,
        shutdown_timeout=1,  # a "slow" request still sleeping does not hold the exit
    )


if __name__ == "__main__":
    main()
