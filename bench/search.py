"""Search at scale (``make bench`` rows ``<backend>/search-<n>``): the manager's
``search_entities`` over one namespace of ``n`` entities, against a bare library doing
the same work on the same data in the same process.

``python -m bench.search --entities N`` is the child process ``bench.run`` starts for a
row, with the backend group's settings in its environment (``MEMORY_TYPE``, ...); it
prints one JSON line. In that process:

1. ``n`` entities made by a formula (``corpus``: agent-memory sentences over 12 topics, a
   long tail of rare words, numbers and a nested field to filter on) are written through
   the manager (32 at a time);
2. the index is built by the first searches, timed apart from the steady state: the
   first keyword search (list every entity, tokenise, BM25 statistics), the first
   semantic search (embed every entity: the default embedder, wordllama), the background
   task writing the vectors to the backend, and a restarted replica's first semantic
   search (a new manager: entities and stored vectors read back, nothing embedded);
3. memory: the process's RSS (``VmRSS`` after ``malloc_trim``) before and after the
   keyword index (per entity: records, text, tokens, postings) and again once the vectors
   are computed and stored (per vector: the matrix, its bookkeeping, and whatever the
   embedding and the writes left allocated), beside the vector matrix's own bytes (rows
   grow by doubling); the baseline's RSS growth, FTS5 database size and matrix alike;
4. steady state, per mode (filter, keyword, semantic, hybrid): the manager and the
   baseline answer the same queries (limit 10), alternating rounds (order flipped each
   round) of ``--seconds`` each, one query at a time. The baseline:
   * filter: a Python loop over the same dicts with the same condition written by hand,
     the matches sorted by id, the first 10;
   * keyword: SQLite FTS5 in memory (``unicode61 remove_diacritics 2``, memstore's
     tokenizer rules), ``MATCH 'a OR b'`` ``ORDER BY bm25()``, over the same text memstore
     indexes;
   * semantic: the query embedded by the same embedder, then numpy over the same vectors
     (one matrix-vector product, ``argpartition`` for the top 10);
   * hybrid: the FTS5 ranking and the numpy ranking in full, fused by reciprocal rank
     (k = 60) in Python: what memstore's hybrid does.
   Latency per query (p50 / p99 over every query of every round), throughput (queries per
   second, one caller), CPU per query (this process's user + system time: the backend
   client's share included, a backend server's not), and the share of the top 10 that
   the two sides agree on (the baseline does the same work if it finds the same hits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import random
import re
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.sections import Section, value_only

MODES = ("filter", "keyword", "semantic", "hybrid")
ENTITY_TYPE = "memory"
LIMIT = 10
RRF_K = 60
#: Entities written at once while loading.
LOAD_CONCURRENCY = 32

# -- the data (deterministic: every backend and every run searches the same) -------------

TOPICS: dict[str, list[str]] = {
    "travel": [
        "a flight to Tokyo in March",
        "a hotel near the old harbour in Lisbon",
        "train tickets across the Alps",
        "a window seat on long flights",
        "renting a car for the coast road",
    ],
    "food": [
        "vegetarian restaurants with outdoor seating",
        "baking sourdough bread at the weekend",
        "spicy noodles from the market stall",
        "coffee without sugar in the morning",
        "a peanut allergy when ordering dinner",
    ],
    "work": [
        "the quarterly report due on Friday",
        "meetings only after ten in the morning",
        "the migration of the billing service",
        "reviews of pull requests before lunch",
        "a standup call with the design team",
    ],
    "health": [
        "a knee injury from running",
        "yoga classes on Tuesday evenings",
        "seasonal allergies in the spring",
        "sleeping badly before deadlines",
        "a dentist appointment next week",
    ],
    "code": [
        "python type hints and strict checking",
        "kubernetes autoscaling of the workers",
        "a memory leak in the websocket server",
        "rust for the parsing library",
        "flaky integration tests on the CI",
    ],
    "finance": [
        "index funds for retirement savings",
        "splitting the rent with roommates",
        "a budget spreadsheet for groceries",
        "the tax return deadline in April",
        "paying the credit card in full",
    ],
    "family": [
        "the daughter's piano lessons",
        "a birthday party for grandmother",
        "school pickup on Wednesdays",
        "a family trip to the lake house",
        "the cat's visit to the vet",
    ],
    "music": [
        "jazz records from the sixties",
        "learning guitar chords by ear",
        "a concert ticket for the symphony",
        "playlists for focused work",
        "vinyl over streaming for albums",
    ],
    "sports": [
        "the football match on Sunday",
        "cycling to work when it is dry",
        "a marathon training plan",
        "tennis lessons with a coach",
        "swimming laps before breakfast",
    ],
    "home": [
        "a leaking kitchen tap",
        "tomatoes and peppers in the vegetable garden",
        "painting the bedroom a pale green",
        "a robot vacuum for the stairs",
        "insulating the attic before winter",
    ],
    "learning": [
        "Spanish lessons on a phone app",
        "a course on linear algebra",
        "reading history books about Rome",
        "chess openings for beginners",
        "notes in a spaced repetition deck",
    ],
    "shopping": [
        "running shoes in a wide fit",
        "a refurbished laptop under a budget",
        "gifts ordered early for the holidays",
        "a winter coat that is waterproof",
        "returns of items bought online",
    ],
}
SUBJECTS = ["The user", "Alice", "Bob", "The customer", "Our team lead", "The planner agent"]
VERBS = [
    "prefers",
    "asked about",
    "mentioned",
    "dislikes",
    "is planning",
    "reported a problem with",
    "wants reminders about",
    "keeps forgetting",
]
DETAILS = [
    "and said it matters a lot.",
    "but only when the price is right.",
    "after a long discussion.",
    "for the second time this month.",
    "and asked to keep it in mind.",
    "without giving a reason.",
]
AUTHORS = ["planner", "researcher", "coder", "support", "scheduler", "critic"]
_SYLLABLES = ["ka", "lo", "mi", "ren", "tu", "vos", "zel", "qua", "dor", "fin", "gra", "hux"]
#: Rare words (proper nouns, codes): a long tail, so the vocabulary grows with the corpus.
RARE_WORDS = [a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in _SYLLABLES]


def size_key(entities: int) -> str:
    """The row's key: ``search-1k`` for 1,000 entities, ``search-250`` for 250."""
    return f"search-{entities // 1000}k" if entities % 1000 == 0 else f"search-{entities}"


def entity_id(i: int) -> str:
    return f"m{i:06d}"


def corpus(n: int) -> list[dict[str, Any]]:
    """``n`` memories, ~300 bytes of JSON each."""
    rng = random.Random(23)
    topics = list(TOPICS)
    out = []
    for i in range(n):
        topic = topics[i % len(topics)]
        other = topics[rng.randrange(len(topics))]
        rare = RARE_WORDS[int(rng.paretovariate(0.8)) % len(RARE_WORDS)]
        text = (
            f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(TOPICS[topic])} "
            f"{rng.choice(DETAILS)} Also {rng.choice(TOPICS[other])}, see {rare}."
        )
        out.append(
            {
                "text": text,
                "topic": topic,
                "stars": 1 + i % 5,
                "day": i % 365,
                "source": {"agent": AUTHORS[i % len(AUTHORS)], "step": i % 100},
                "tags": [topic, other],
            }
        )
    return out


#: Filters as memstore takes them, each with the same condition written by hand.
FILTERS: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({"topic": "travel"}, lambda d: d["topic"] == "travel"),
    (
        {"stars": {"$gte": 4}, "topic": {"$in": ["food", "music"]}},
        lambda d: d["stars"] >= 4 and d["topic"] in ("food", "music"),
    ),
    (
        {"source.agent": "coder", "day": {"$lt": 30}},
        lambda d: d["source"]["agent"] == "coder" and d["day"] < 30,
    ),
    ({"day": {"$gte": 100, "$lte": 110}}, lambda d: 100 <= d["day"] <= 110),
]
KEYWORD_QUERIES = [
    "sourdough bread",
    "kubernetes autoscaling workers",
    "flight Tokyo March",
    "knee injury running",
    "piano lessons",
    "tax return deadline",
    "kaloren",
    "leaking kitchen tap",
]
SEMANTIC_QUERIES = [
    "what does the user like to eat",
    "upcoming travel plans",
    "problems with the servers in production",
    "how is the user's health",
    "money and saving for later",
    "hobbies involving music",
    "repairs needed around the house",
    "what is the user studying",
]


def _indexed_text(data: dict[str, Any]) -> str:
    """What memstore indexes by default: every string value of the JSON (depth first)."""
    out: list[str] = []
    stack: list[Any] = [data]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            stack.extend(reversed(list(v.values())))
        elif isinstance(v, list):
            stack.extend(reversed(v))
    return "\n".join(out)


# -- the baseline: the same work with a bare library -------------------------------------


class Baseline:
    """SQLite FTS5 (keyword), numpy (semantic), a Python loop (filter) over the corpus."""

    def __init__(
        self, docs: list[dict[str, Any]], vectors: npt.NDArray[np.float32], embed: Any
    ) -> None:
        self.docs = docs
        self.ids = [entity_id(i) for i in range(len(docs))]
        self.vectors = vectors
        self.embed = embed
        self.db = sqlite3.connect(":memory:")
        self.db.execute(
            "CREATE VIRTUAL TABLE docs USING fts5(body, tokenize='unicode61 remove_diacritics 2')"
        )
        with self.db:
            self.db.executemany(
                "INSERT INTO docs(rowid, body) VALUES (?, ?)",
                ((i, _indexed_text(d)) for i, d in enumerate(docs)),
            )

    @property
    def fts_bytes(self) -> int:
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return int(pages * size)

    @staticmethod
    def _match(query: str) -> str:
        return " OR ".join(f'"{t}"' for t in dict.fromkeys(re.findall(r"[^\W_]+", query.lower())))

    def _keyword_rows(self, query: str, limit: int | None) -> list[int]:
        sql = "SELECT rowid FROM docs WHERE docs MATCH ? ORDER BY bm25(docs), rowid"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [r[0] for r in self.db.execute(sql, (self._match(query),))]

    async def filter(self, condition: Callable[[dict[str, Any]], bool]) -> list[str]:
        hits = [i for i, d in enumerate(self.docs) if condition(d)]
        return [self.ids[i] for i in sorted(hits)[:LIMIT]]

    async def keyword(self, query: str) -> list[str]:
        return [self.ids[i] for i in self._keyword_rows(query, LIMIT)]

    async def _similarities(self, query: str) -> npt.NDArray[np.float32]:
        q = (await self.embed([query]))[0]
        sims: npt.NDArray[np.float32] = self.vectors @ q
        return sims

    async def semantic(self, query: str) -> list[str]:
        sims = await self._similarities(query)
        top = np.argpartition(-sims, LIMIT)[:LIMIT] if len(sims) > LIMIT else np.arange(len(sims))
        return [self.ids[i] for i in sorted(top.tolist(), key=lambda i: (-sims[i], i))]

    async def hybrid(self, query: str) -> list[str]:
        sims = await self._similarities(query)
        fused: dict[int, float] = {}
        for rank, i in enumerate(self._keyword_rows(query, None), start=1):
            fused[i] = 1.0 / (RRF_K + rank)
        for rank, i in enumerate(np.argsort(-sims, kind="stable").tolist(), start=1):
            fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:LIMIT]
        return [self.ids[i] for i, _ in best]


# -- measuring ----------------------------------------------------------------------------


def rss_bytes() -> int:
    """Resident memory of this process, after returning freed heap pages to the system."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


Query = Callable[[], Awaitable[list[str]]]


class Side:
    """One side's queries, asked in turn across rounds (a round may end mid-list)."""

    def __init__(self, queries: list[Query]) -> None:
        self.queries = queries
        self.next = 0
        self.rounds: list[dict[str, Any]] = []
        self.latencies: list[float] = []

    async def round(self, seconds: float) -> None:
        """Queries for ``seconds`` (at least one); the round's figures."""
        n = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while n == 0 or time.perf_counter() - wall0 < seconds:
            query = self.queries[self.next % len(self.queries)]
            self.next += 1
            t = time.perf_counter()
            await query()
            self.latencies.append(time.perf_counter() - t)
            n += 1
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        self.rounds.append({"queries": n, "qps": n / wall, "cpu_us": 1e6 * cpu / n})


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def side_summary(side: Side) -> dict[str, Any]:
    rounds, latencies = side.rounds, side.latencies
    return {
        "qps": round(statistics.median(r["qps"] for r in rounds), 1),
        "p50_ms": round(1000 * _percentile(latencies, 0.50), 3),
        "p99_ms": round(1000 * _percentile(latencies, 0.99), 3),
        "cpu_us_per_query": round(
            sum(r["cpu_us"] * r["queries"] for r in rounds) / sum(r["queries"] for r in rounds), 1
        ),
        "queries": sum(r["queries"] for r in rounds),
        "rounds": rounds,
    }


async def agreement(memstore: list[Query], baseline: list[Query]) -> float:
    """The share of the baseline's top 10 that memstore's top 10 holds, over the queries
    (one pass over each list: also the warm-up)."""
    shares = []
    for m, b in zip(memstore, baseline, strict=True):
        mine, theirs = await m(), await b()
        shares.append(len(set(mine) & set(theirs)) / max(1, len(theirs)))
    return round(statistics.mean(shares), 3)


async def compare(
    memstore: list[Query], baseline: list[Query], rounds: int, seconds: float
) -> dict[str, Any]:
    """Both sides in alternating rounds, after one pass of each that checks agreement."""
    agreed = await agreement(memstore, baseline)
    measured, reference = Side(memstore), Side(baseline)
    for r in range(rounds):
        for side in (reference, measured) if r % 2 == 0 else (measured, reference):
            await side.round(seconds)
    res: dict[str, Any] = {"measured": side_summary(measured), "reference": side_summary(reference)}
    pairs = [m["qps"] / b["qps"] for m, b in zip(measured.rounds, reference.rounds, strict=True)]
    res["ratio"] = round(statistics.median(pairs), 3)
    m_cpu, b_cpu = res["measured"]["cpu_us_per_query"], res["reference"]["cpu_us_per_query"]
    res["cpu_ratio"] = round(b_cpu / m_cpu, 3)
    res["agreement"] = agreed
    return res


def _ids(page: Any) -> list[str]:
    return [hit.entity.id for hit in page.items]


def _entities_collection(memory: Any, namespace: str) -> Any:
    """The namespace's entity collection in the manager's search index: the bench reads
    it for the vectors (the baseline compares the same ones) and to wait until the
    background task has stored them."""
    return memory._shared.search.index(namespace).entities


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from memstore.core.settings import Settings
    from memstore.embeddings.base import build_embedder
    from memstore.memory.manager import DistributedMemoryManager

    n, ns = args.entities, args.namespace
    settings = Settings()
    embedder = build_embedder(settings)
    assert embedder is not None, "the search bench needs an embedder (MEMSTORE_EMBEDDER)"
    docs = corpus(n)
    await embedder.embed(["load the model"])  # before any memory is measured
    out: dict[str, Any] = {"entities": n, "embedder": embedder.name, "build": {}, "memory": {}}
    build, memory_use = out["build"], out["memory"]
    try:
        async with DistributedMemoryManager(
            settings=settings, namespace=ns, embedder=embedder
        ) as memory:
            todo = iter(range(n))

            async def writer() -> None:
                for i in todo:
                    await memory.save_entity(ENTITY_TYPE, entity_id(i), docs[i])

            t = time.perf_counter()
            await asyncio.gather(*(writer() for _ in range(LOAD_CONCURRENCY)))
            build["load_entities_per_s"] = round(n / (time.perf_counter() - t), 1)

            rss0 = rss_bytes()
            t = time.perf_counter()
            await memory.search_entities(KEYWORD_QUERIES[0], mode="keyword", limit=LIMIT)
            build["keyword_first_s"] = round(time.perf_counter() - t, 3)
            rss1 = rss_bytes()
            t = time.perf_counter()
            await memory.search_entities(SEMANTIC_QUERIES[0], mode="semantic", limit=LIMIT)
            build["semantic_first_s"] = round(time.perf_counter() - t, 3)
            coll = _entities_collection(memory, ns)
            t = time.perf_counter()
            while coll.has_work and time.perf_counter() - t < args.store_wait:  # noqa: ASYNC110 - the index has no event to wait on
                await asyncio.sleep(0.05)
            stored = not coll.has_work
            if stored:
                build["vectors_stored_s"] = round(time.perf_counter() - t, 3)
            else:
                # Stored in the background during the measurements (a slow backend): the
                # queries' figures then include that work.
                build["vectors_stored_s"] = None
                build["vectors_left_after_wait"] = len(coll.to_persist) + len(coll.pending)
                build["store_wait_s"] = args.store_wait
            rss2 = rss_bytes()  # vectors computed and stored: no batch in flight
            memory_use["rss_bytes_per_entity"] = round((rss1 - rss0) / n)
            memory_use["rss_bytes_per_vector"] = round((rss2 - rss1) / n)
            memory_use["matrix_bytes_per_vector"] = round(coll.vectors.nbytes / n)

            keys = [(ENTITY_TYPE, entity_id(i)) for i in range(n)]
            vectors = np.stack([coll.vectors.get(k) for k in keys]).astype(np.float32)
            rss3 = rss_bytes()
            t = time.perf_counter()
            base = Baseline(docs, vectors, embedder.embed)
            build["baseline_fts5_s"] = round(time.perf_counter() - t, 3)
            memory_use["baseline_rss_bytes_per_entity"] = round((rss_bytes() - rss3) / n)
            memory_use["baseline_fts5_bytes_per_entity"] = round(base.fts_bytes / n)
            memory_use["baseline_numpy_bytes_per_vector"] = round(vectors.nbytes / n)

            def search(**kw: Any) -> Query:
                async def q() -> list[str]:
                    return _ids(await memory.search_entities(limit=LIMIT, **kw))

                return q

            def call(fn: Callable[[Any], Awaitable[list[str]]], arg: Any) -> Query:
                return lambda: fn(arg)

            plans: dict[str, tuple[list[Query], list[Query]]] = {
                "filter": (
                    [search(filter=f, mode="filter") for f, _ in FILTERS],
                    [call(base.filter, c) for _, c in FILTERS],
                ),
                "keyword": (
                    [search(query=q, mode="keyword") for q in KEYWORD_QUERIES],
                    [call(base.keyword, q) for q in KEYWORD_QUERIES],
                ),
                "semantic": (
                    [search(query=q, mode="semantic") for q in SEMANTIC_QUERIES],
                    [call(base.semantic, q) for q in SEMANTIC_QUERIES],
                ),
                "hybrid": (
                    [search(query=q, mode="hybrid") for q in SEMANTIC_QUERIES],
                    [call(base.hybrid, q) for q in SEMANTIC_QUERIES],
                ),
            }
            out["modes"] = {}
            for mode, (mine, theirs) in plans.items():
                res = await compare(mine, theirs, args.rounds, args.seconds)
                out["modes"][mode] = res
                print(
                    f"search {n} {mode}: {res['measured']['qps']:.1f} vs "
                    f"{res['reference']['qps']:.1f} q/s = {res['ratio']}, "
                    f"p99 {res['measured']['p99_ms']:.1f} ms",
                    file=sys.stderr,
                    flush=True,
                )
            base.db.close()

        if args.restart and stored:
            # A replica started after the vectors were stored: entities and vectors are read
            # back, nothing is embedded.
            async with DistributedMemoryManager(
                settings=settings, namespace=ns, embedder=embedder
            ) as restarted:
                t = time.perf_counter()
                await restarted.search_entities(SEMANTIC_QUERIES[0], mode="semantic", limit=LIMIT)
                build["restart_semantic_first_s"] = round(time.perf_counter() - t, 3)
    finally:
        await embedder.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__)
    p.add_argument("--entities", type=int, required=True)
    p.add_argument("--namespace", default="searchbench")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--no-restart", dest="restart", action="store_false")
    p.add_argument(
        "--store-wait",
        type=float,
        default=180.0,
        help="seconds to wait for the vectors to be stored before measuring",
    )
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(measure(args))))
    return 0


# -- the report's tables ------------------------------------------------------------------


def _stored(build: dict[str, Any]) -> str:
    if build["vectors_stored_s"] is not None:
        return f"{build['vectors_stored_s']:.2f}"
    return f"> {build['store_wait_s']:.0f} ({build['vectors_left_after_wait']:,} left)"


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The search tables of ``python -m bench``'s report (``report["search"]``)."""
    if not rows:
        return []
    lines = [
        "| backend | entities | mode | memstore q/s | baseline q/s | ratio "
        "| CPU µs/query memstore / baseline (ratio) | p50 / p99 ms memstore "
        "| p50 / p99 ms baseline | top-10 agreement |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for mode, r in row["modes"].items():
            m, b = r["measured"], r["reference"]
            lines.append(
                f"| {row['group']} | {row['entities']:,} | {mode} | {m['qps']:,.1f} "
                f"| {b['qps']:,.1f} | {r['ratio']:.3f} "
                f"| {m['cpu_us_per_query']:,.0f} / {b['cpu_us_per_query']:,.0f} "
                f"({r['cpu_ratio']:.3f}) | {m['p50_ms']:.2f} / {m['p99_ms']:.2f} "
                f"| {b['p50_ms']:.2f} / {b['p99_ms']:.2f} | {r['agreement']:.2f} |"
            )
    lines += [
        "",
        "| backend | entities | load (entities/s) | first keyword search (index build) s "
        "| first semantic search (embed all) s | vectors stored (background) s "
        "| restarted replica's first semantic s | baseline FTS5 build s "
        "| RSS B/entity memstore / baseline | RSS B/vector (matrix B/vector) "
        "| FTS5 B/entity | numpy B/vector |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        b, mem = row["build"], row["memory"]
        restart = b.get("restart_semantic_first_s")
        lines.append(
            f"| {row['group']} | {row['entities']:,} | {b['load_entities_per_s']:,.0f} "
            f"| {b['keyword_first_s']:.2f} | {b['semantic_first_s']:.2f} "
            f"| {_stored(b)} | {'' if restart is None else f'{restart:.2f}'} "
            f"| {b['baseline_fts5_s']:.2f} "
            f"| {mem['rss_bytes_per_entity']:,} / {mem['baseline_rss_bytes_per_entity']:,} "
            f"| {mem['rss_bytes_per_vector']:,} ({mem['matrix_bytes_per_vector']:,}) "
            f"| {mem['baseline_fts5_bytes_per_entity']:,} "
            f"| {mem['baseline_numpy_bytes_per_vector']:,} |"
        )
    return lines


#: ``report["search"]`` of ``python -m bench`` as Markdown (bench/sections.py).
SECTIONS = (Section("search", "Search scale", value_only(markdown), order=60),)


if __name__ == "__main__":
    sys.exit(main())
