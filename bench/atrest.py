"""Compression and encryption at rest: ratio and CPU cost on realistic agent payloads.

``python -m bench.atrest`` (``make bench`` runs it in a process of its own, the row
``atrest/codec``) measures, in one process and one run:

* **codec**: for each payload class, the stored size (the envelope's compact JSON: base64
  body and header included) over the logical size (the payload's compact JSON), and the
  µs per encode (``orjson.dumps`` + seal) and per decode (open + ``orjson.loads``) with
  compression off/on and encryption off/on (CPU time of the measuring thread, the best
  of 5 passes). The reference row is plain JSON
  (``orjson.dumps`` / ``orjson.loads`` alone): what every write and read costs today.
* **backend**: PUT (``save_entity``) and GET (``load_entity``) operations per second on
  the embedded backend in process (a fresh SQLite file per configuration), plain against
  each sealed configuration, alternating rounds (order flipped each round), medians.

The payload generator (``payloads``) makes, from a fixed seed, the four kinds an agent
stores most: a **conversation message** (role, 20-120 words of content, sometimes a tool
call), a **tool output** of JSON web-search results (8-10 hits: title, URL with an id,
snippet, score, dates), an **HTML snippet** (a fetched page fragment: headings,
paragraphs, links, classes), and an **entity profile** (a user's name, preferences, a
list of remembered facts with timestamps and source ids). Words come from a fixed English
vocabulary; ids, URLs, numbers and timestamps are random, so the text is as compressible
as real text and the ids are not.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.embeddings import WORDS
from bench.sections import Section, value_only
from memstore.core import payload_codec as codec

THRESHOLD = 1024
AAD = codec.record_aad("bench", "entity", "doc", "x")
CONFIGS: dict[str, tuple[int, bool]] = {
    # name: (compression_min_bytes, encrypted)
    "zstd": (THRESHOLD, False),
    "aes-gcm": (0, True),
    "zstd+aes-gcm": (THRESHOLD, True),
}


def _words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi)))


def message(rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {
        "role": rng.choice(["user", "assistant"]),
        "content": _words(rng, 20, 120).capitalize() + ".",
    }
    if rng.random() < 0.3:
        out["tool_calls"] = [
            {
                "id": f"call_{uuid.UUID(int=rng.getrandbits(128)).hex[:24]}",
                "type": "function",
                "function": {
                    "name": "web_search",
                    "arguments": json.dumps({"query": _words(rng, 3, 8)}),
                },
            }
        ]
    return out


def tool_output(rng: random.Random) -> dict[str, Any]:
    return {
        "query": _words(rng, 3, 8),
        "total": rng.randint(1000, 90000),
        "results": [
            {
                "title": _words(rng, 4, 10).title(),
                "url": f"https://www.{rng.choice(WORDS)}-{rng.choice(WORDS)}.com/"
                f"{rng.choice(WORDS)}/{rng.getrandbits(40):x}",
                "snippet": _words(rng, 25, 45) + "...",
                "score": round(rng.random(), 4),
                "published": f"20{rng.randint(18, 26)}-{rng.randint(1, 12):02d}-"
                f"{rng.randint(1, 28):02d}",
            }
            for _ in range(rng.randint(8, 10))
        ],
    }


def html_snippet(rng: random.Random) -> dict[str, Any]:
    parts = [f'<article class="post post-{rng.getrandbits(20)}">']
    for _ in range(rng.randint(4, 7)):
        parts.append(f'<h2 id="h-{rng.getrandbits(24):x}">{_words(rng, 3, 7).title()}</h2>')
        for _ in range(rng.randint(1, 3)):
            link = f'<a href="/{rng.choice(WORDS)}/{rng.getrandbits(32):x}">{rng.choice(WORDS)}</a>'
            parts.append(f'<p class="body">{_words(rng, 30, 60)} {link} {_words(rng, 5, 20)}.</p>')
    parts.append("</article>")
    return {"url": f"https://example.com/{rng.getrandbits(48):x}", "html": "\n".join(parts)}


def entity_profile(rng: random.Random) -> dict[str, Any]:
    return {
        "name": f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()}",
        "email": f"{rng.choice(WORDS)}{rng.randint(1, 999)}@example.com",
        "preferences": {
            w: rng.choice([True, False, rng.randint(1, 10)]) for w in rng.sample(WORDS, 8)
        },
        "facts": [
            {
                "text": _words(rng, 8, 20).capitalize() + ".",
                "learned_at": 1_767_225_600 + rng.randint(0, 10_000_000),
                "source": f"conv-{uuid.UUID(int=rng.getrandbits(128))}",
                "confidence": round(rng.random(), 3),
            }
            for _ in range(rng.randint(10, 25))
        ],
    }


KINDS: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "message": message,
    "tool output (search JSON)": tool_output,
    "HTML snippet": html_snippet,
    "entity profile": entity_profile,
}


def payloads(kind: str, count: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}-{kind}")
    return [KINDS[kind](rng) for _ in range(count)]


def _keys() -> codec.DataKey:
    return codec.DataKey("bench", bytes(range(32)))


def _cpu_us(fn: Callable[[], object], count: int) -> float:
    """µs of this thread's CPU per payload (what the codec costs, whatever else the machine
    runs), the best of 5 passes over ``count`` payloads."""
    best = []
    for _ in range(5):
        calls = 0
        start = time.thread_time()
        while True:  # at least 50 ms per pass: the clock's resolution is far coarser than one call
            fn()
            calls += 1
            if (elapsed := time.thread_time() - start) >= 0.05:
                break
        best.append(elapsed / calls)
    return min(best) / count * 1e6


def _seal_all(values: list[dict[str, Any]], min_bytes: int, key: codec.DataKey | None) -> list[Any]:
    out: list[Any] = []
    for v in values:
        env = codec.seal(orjson.dumps(v), compress_min_bytes=min_bytes, key=key, aad=AAD)
        out.append(v if env is None else env)
    return out


# Each pass keeps only the last result, as the codec passes do: holding hundreds of
# results alive would measure the allocator, not the work.
def _dump_all(values: list[dict[str, Any]]) -> int:
    n = 0
    for v in values:
        n += len(orjson.dumps(v))
    return n


def _load_all(raws: list[bytes]) -> int:
    n = 0
    for r in raws:
        n += len(orjson.loads(r))
    return n


def _open_all(stored: list[Any], key: codec.DataKey | None) -> list[Any]:
    return [codec.open_sealed(s, key=key, aad=AAD) for s in stored]


def codec_rows(count: int) -> list[dict[str, Any]]:
    key = _keys()
    rows = []
    for kind in KINDS:
        values = payloads(kind, count)
        raws = [orjson.dumps(v) for v in values]
        logical = sum(len(r) for r in raws)
        row: dict[str, Any] = {
            "kind": kind,
            "mean_bytes": logical // count,
            "plain": {
                "encode_us": _cpu_us(functools.partial(_dump_all, values), count),
                "decode_us": _cpu_us(functools.partial(_load_all, raws), count),
                "ratio": 1.0,
            },
        }
        for name, (min_bytes, encrypted) in CONFIGS.items():
            k = key if encrypted else None
            stored = _seal_all(values, min_bytes, k)
            assert _open_all(stored, k) == values
            row[name] = {
                "encode_us": _cpu_us(functools.partial(_seal_all, values, min_bytes, k), count),
                "decode_us": _cpu_us(functools.partial(_open_all, stored, k), count),
                "ratio": sum(len(orjson.dumps(s)) for s in stored) / logical,
            }
        rows.append(row)
    return rows


async def backend_rows(rounds: int, seconds: float) -> list[dict[str, Any]]:
    from memstore.backends.factory import DistributedMemoryFactory
    from memstore.core.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix="bench-atrest-"))
    key_file = workdir / "kek"
    key_file.write_text(codec.new_kek_line("bench") + "\n")
    mix = [p for kind in KINDS for p in payloads(kind, 50)]
    configs = {"plain": (0, False), **CONFIGS}
    backends = {}
    for name, (min_bytes, encrypted) in configs.items():
        s = Settings(
            memory_type="embedded",
            data_path=workdir / f"{name}.db",
            compression_min_bytes=min_bytes,
            encryption_key_file=key_file if encrypted else None,
        )
        b = DistributedMemoryFactory.create_memory_backend(s)
        await b.connect()
        backends[name] = b

    async def put_get(name: str) -> tuple[float, float, float, float]:
        """PUT/s, GET/s, and CPU µs per PUT and per GET (every thread of the process: the
        store's reader and writer threads too), the steadier figure on a shared machine."""
        b = backends[name]
        n = 0
        start, cpu = time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            await b.save_entity("bench", "doc", f"d{n % 500}", mix[n % len(mix)])
            n += 1
        put, put_cpu = n / (time.perf_counter() - start), (time.process_time() - cpu) / n * 1e6
        n = 0
        start, cpu = time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            await b.load_entity("bench", "doc", f"d{n % 500}")
            n += 1
        get, get_cpu = n / (time.perf_counter() - start), (time.process_time() - cpu) / n * 1e6
        return put, get, put_cpu, get_cpu

    samples: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in backends}
    order = list(backends)
    for name in order:  # warm-up: every id written once
        for i in range(500):
            await backends[name].save_entity("bench", "doc", f"d{i}", mix[i % len(mix)])
    for r in range(rounds):
        for name in order if r % 2 == 0 else reversed(order):
            samples[name].append(await put_get(name))
    for b in backends.values():
        await b.close()

    def med(name: str, i: int) -> float:
        return statistics.median(s[i] for s in samples[name])

    return [
        {
            "config": name,
            "put_per_s": med(name, 0),
            "get_per_s": med(name, 1),
            "put_cpu_us": med(name, 2),
            "get_cpu_us": med(name, 3),
            "put_vs_plain": med(name, 0) / med("plain", 0),
            "get_vs_plain": med(name, 1) / med("plain", 1),
        }
        for name in samples
    ]


def markdown(result: dict[str, Any]) -> str:
    names = ["plain", *CONFIGS]
    lines = [
        f"At rest (compression threshold {THRESHOLD} B; ratio = stored / logical bytes; "
        "µs per payload, encode / decode; plain = orjson alone):",
        "",
        "| payload | mean bytes | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for row in result["codec"]:
        cells = [
            f"{row[n]['ratio']:.2f} · {row[n]['encode_us']:.1f} / {row[n]['decode_us']:.1f}"
            for n in names
        ]
        lines.append(f"| {row['kind']} | {row['mean_bytes']:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| embedded backend, in process | PUT/s | GET/s | PUT vs plain | GET vs plain "
        "| CPU µs per PUT / GET |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["backend"]:
        lines.append(
            f"| {row['config']} | {row['put_per_s']:,.0f} | {row['get_per_s']:,.0f} "
            f"| {row['put_vs_plain']:.2f} | {row['get_vs_plain']:.2f} "
            f"| {row['put_cpu_us']:,.0f} / {row['get_cpu_us']:,.0f} |"
        )
    return "\n".join(lines)


#: ``report["atrest"]`` of ``python -m bench`` as Markdown (bench/sections.py).
SECTIONS = (
    Section("atrest", "Compression and encryption at rest", value_only(markdown), order=85),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=400, help="payloads per kind (codec)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout (else Markdown)")
    args = parser.parse_args(argv)
    result = {
        "threshold_bytes": THRESHOLD,
        "codec": codec_rows(args.count),
        "backend": asyncio.run(backend_rows(args.rounds, args.seconds)),
    }
    print(json.dumps(result) if args.json else markdown(result), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
