"""Embedding throughput and memory per vector: memstore's embedder against the bare library.

``python -m bench.embeddings`` (``make bench`` runs it in a process of its own, the row
``embeddings/wordllama``) embeds the same generated texts two ways in one process:

* **library**: WordLlama's own ``embed(texts, norm=True)`` called in a plain loop (the
  model loaded from the package's files, as memstore loads it);
* **memstore**: ``WordLlamaEmbedder.embed`` awaited on an event loop: the hop to its
  worker thread, the batches sorted by length, the unit float32 rows.

For each batch size (1 text per call: a search's query; 32 and 256: the index catching
up after writes) the two sides alternate for ``--rounds`` rounds of ``--seconds`` each,
order flipped every round; the medians are reported. texts/s is wall-clock; CPU µs per
text is the process's user+system CPU (every thread, so the worker thread counts) divided
by the texts. The texts are ~60-word sentences of common English words (about the size
of the workload's ~250-byte message), fixed by a seed.

Memory per vector: a float32 row is 4 bytes x dimension; the measured figures are the
bytes ``tracemalloc`` sees for 10,000 vectors held as one matrix (what an exact scan
keeps in memory) and as 10,000 separate rows, and the length of one vector in base64 (how
the search index persists it). The model's own resident memory (RSS before and after
loading) is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from bench.sections import Section, value_only

if TYPE_CHECKING:
    from memstore.embeddings.wordllama import WordLlamaEmbedder

# Common English words; the corpus is drawn from them with a fixed seed.
VOCABULARY = (
    "agent memory recall search meeting customer order invoice payment delivery address "
    "project deadline review design code test deploy server database cache index query "
    "user account password email phone city country travel flight hotel booking price "
    "weather rain sun morning evening week month year today tomorrow yesterday team "
    "manager report budget revenue sales growth market product feature release bug fix "
    "the a an of to in on for with from by about after before during and or but not is "
    "was are were be been has have had will would can could should may might must new "
    "old good bad large small first last next early late fast slow open closed"
)
WORDS = VOCABULARY.split()


def corpus(count: int, words: int = 60, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=words)).capitalize() + "." for _ in range(count)]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _chunks(texts: list[str], batch: int) -> Iterator[list[str]]:
    while True:
        for i in range(0, len(texts) - batch + 1, batch):
            yield texts[i : i + batch]


def _timed_library(
    call: Callable[[list[str]], Any], texts: list[str], batch: int, seconds: float
) -> dict[str, float]:
    done = 0
    start_wall, start_cpu = time.perf_counter(), _cpu()
    deadline = start_wall + seconds
    for chunk in _chunks(texts, batch):
        if time.perf_counter() >= deadline:
            break
        call(chunk)
        done += len(chunk)
    return _rates(done, time.perf_counter() - start_wall, _cpu() - start_cpu)


async def _timed_memstore(
    embedder: WordLlamaEmbedder, texts: list[str], batch: int, seconds: float
) -> dict[str, float]:
    # Awaited inside one running loop, as the service's search index awaits it.
    done = 0
    start_wall, start_cpu = time.perf_counter(), _cpu()
    deadline = start_wall + seconds
    for chunk in _chunks(texts, batch):
        if time.perf_counter() >= deadline:
            break
        await embedder.embed(chunk)
        done += len(chunk)
    return _rates(done, time.perf_counter() - start_wall, _cpu() - start_cpu)


def _rates(done: int, wall: float, cpu: float) -> dict[str, float]:
    return {"texts": done, "texts_per_s": done / wall, "cpu_us_per_text": cpu * 1e6 / done}


def throughput(rounds: int, seconds: float, batches: tuple[int, ...]) -> list[dict[str, Any]]:
    from wordllama import WordLlama

    from memstore.embeddings.wordllama import WordLlamaEmbedder, package_dir

    texts = corpus(4096)
    library = WordLlama.load("l2_supercat", cache_dir=package_dir(), disable_download=True)
    embedder = WordLlamaEmbedder()
    loop = asyncio.new_event_loop()

    def side(name: str, batch: int, seconds: float) -> dict[str, float]:
        if name == "library":
            return _timed_library(lambda c: library.embed(c, norm=True), texts, batch, seconds)
        return loop.run_until_complete(_timed_memstore(embedder, texts, batch, seconds))

    names = ("library", "memstore")
    rows = []
    try:
        for batch in batches:
            for name in names:  # warm-up: the model loaded, caches warm
                side(name, batch, min(seconds, 0.3))
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
            for r in range(rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    samples[name].append(side(name, batch, seconds))
            row: dict[str, Any] = {"batch": batch}
            for name, runs in samples.items():
                row[name] = {
                    key: round(statistics.median(run[key] for run in runs), 1)
                    for key in ("texts_per_s", "cpu_us_per_text")
                }
            row["ratio"] = round(
                statistics.median(
                    m["texts_per_s"] / b["texts_per_s"]
                    for m, b in zip(samples["memstore"], samples["library"], strict=True)
                ),
                3,
            )
            row["cpu_ratio"] = round(
                row["library"]["cpu_us_per_text"] / row["memstore"]["cpu_us_per_text"], 3
            )
            rows.append(row)
    finally:
        loop.run_until_complete(embedder.close())
        loop.close()
    return rows


def memory(count: int = 10_000) -> dict[str, Any]:
    from memstore.embeddings.wordllama import WordLlamaEmbedder

    embedder = WordLlamaEmbedder()
    rss_before = _rss_bytes()
    embedder.embed_now(["load"])
    model_rss = _rss_bytes() - rss_before
    texts = corpus(count, seed=11)
    tracemalloc.start()
    matrix = embedder.embed_now(texts)
    as_matrix = tracemalloc.get_traced_memory()[0]
    rows = [row.copy() for row in matrix]
    as_rows = tracemalloc.get_traced_memory()[0] - as_matrix
    tracemalloc.stop()
    encoded = base64.b64encode(matrix[0].tobytes()).decode()
    del rows
    return {
        "embedder": embedder.name,
        "dimension": embedder.dimension,
        "vectors": count,
        "float32_bytes_per_vector": embedder.dimension * 4,
        "matrix_bytes_per_vector": round(as_matrix / count, 1),
        "separate_rows_bytes_per_vector": round(as_rows / count, 1),
        "base64_chars_per_vector": len(encoded),
        "model_rss_bytes": model_rss,
    }


def markdown(result: dict[str, Any]) -> str:
    mem = result["memory"]
    lines = [
        f"| embedding ({mem['embedder']}) | texts per call | memstore texts/s "
        "| library texts/s | ratio | CPU µs/text memstore / library (ratio) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["throughput"]:
        m, b = row["memstore"], row["library"]
        cpu = f"{m['cpu_us_per_text']:,.1f} / {b['cpu_us_per_text']:,.1f} ({row['cpu_ratio']:.2f})"
        lines.append(
            f"| ~60-word texts | {row['batch']} | {m['texts_per_s']:,.0f} "
            f"| {b['texts_per_s']:,.0f} | {row['ratio']:.2f} | {cpu} |"
        )
    n = f"{mem['vectors']:,} vectors"
    memory_rows = (
        (f"float32, {mem['dimension']} dimensions (4 x dimension)", "float32_bytes_per_vector"),
        (f"{n} in one matrix (tracemalloc)", "matrix_bytes_per_vector"),
        (f"{n} as separate arrays (tracemalloc)", "separate_rows_bytes_per_vector"),
        ("one vector in base64 (persisted form)", "base64_chars_per_vector"),
        ("the model and its libraries (RSS growth on load, once per process)", "model_rss_bytes"),
    )
    lines += ["", "| memory per vector | bytes |", "|---|---:|"]
    lines += [f"| {label} | {mem[key]:,} |" for label, key in memory_rows]
    return "\n".join(lines)


#: ``report["embeddings"]`` of ``python -m bench`` as Markdown (bench/sections.py).
SECTIONS = (Section("embeddings", "Embeddings", value_only(markdown), order=70),)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.embeddings", description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--batches", default="1,32,256", help="texts per call, comma-separated")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    batches = tuple(int(b) for b in args.batches.split(","))
    result = {
        "rounds": args.rounds,
        "seconds": args.seconds,
        "memory": memory(),
        "throughput": throughput(args.rounds, args.seconds, batches),
    }
    print(json.dumps(result) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
