"""The pure parts of search: the tokenizer and BM25 against SQLite FTS5 itself (the same
texts, the same ranking and scores), and the filter evaluator's semantics."""

from __future__ import annotations

import random
import sqlite3

import pytest

from memstore.core.errors import InvalidInputError
from memstore.core.search import check_filter, matches_filter
from memstore.core.text import BM25Index, tokenize

WORDS = (
    "apple banana cherry date elder fig grape honey iris jade kiwi lemon mango nut olive"
    " pear quince rose sage thyme café naïve Zoë Ærø"
).split()


def test_the_tokenizer_follows_fts5_unicode61() -> None:
    assert tokenize("Hello, WORLD! snake_case x2 café naïve Ærø") == [
        "hello", "world", "snake", "case", "x2", "cafe", "naive", "ærø",
    ]  # fmt: skip
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'row')")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(body)")
    text = "Hello, WORLD! snake_case x2 café naïve Zoë l'été 3.14 don't"
    db.execute("INSERT INTO t VALUES (?)", (text,))
    fts5 = sorted(row[0] for row in db.execute("SELECT term FROM v"))
    assert sorted(set(tokenize(text))) == fts5


def test_bm25_ranks_and_scores_as_fts5_does() -> None:
    rng = random.Random(7)
    docs = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))) for _ in range(300)
    ]
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(body)")
    db.executemany("INSERT INTO t(rowid, body) VALUES (?, ?)", list(enumerate(docs)))
    index: BM25Index[int] = BM25Index()
    for i, text in enumerate(docs):
        index.put(i, tokenize(text))
    for query in ("apple", "cafe", "Zoë kiwi", "rose sage thyme", "naive quince olive pear"):
        match = " OR ".join(tokenize(query))
        expected = {
            rowid: -score
            for rowid, score in db.execute(
                "SELECT rowid, bm25(t) FROM t WHERE t MATCH ?", (match,)
            )
        }
        got = index.scores(tokenize(query))
        assert got.keys() == expected.keys(), query
        for rowid, score in expected.items():
            assert got[rowid] == pytest.approx(score, rel=1e-9), (query, rowid)


def test_bm25_updates_and_removals_keep_the_statistics() -> None:
    index: BM25Index[str] = BM25Index()
    index.put("a", ["x", "y"])
    index.put("b", ["y"])
    index.put("a", ["z"])  # re-indexed: no longer holds x
    assert set(index.scores(["x"])) == set()
    assert set(index.scores(["y", "z"])) == {"a", "b"}
    index.remove("b")
    index.remove("b")
    assert len(index) == 1 and set(index.scores(["y"])) == set()


DATA = {
    "n": 3,
    "f": 2.5,
    "s": "abc",
    "b": True,
    "z": None,
    "l": [1, 2],
    "o": {"p": {"q": 7}, "r": "x"},
}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"n": 3}, True),
        ({"n": 3.0}, True),
        ({"n": "3"}, False),
        ({"b": 1}, False),
        ({"b": True}, True),
        ({"z": None}, True),
        ({"missing": None}, False),
        ({"l": [1, 2]}, True),
        ({"l": 1}, False),
        ({"o.p.q": 7}, True),
        ({"o": {"p": {"q": 7}}}, True),
        ({"o": {"r": "x"}}, True),  # an object of fields: those fields match
        ({"o": {"$eq": {"r": "x"}}}, False),  # $eq with an object: the whole object
        ({"n": {"$gt": 2, "$lte": 3}}, True),
        ({"n": {"$gt": "2"}}, False),
        ({"s": {"$gt": "abb"}}, True),
        ({"s": {"$lt": 5}}, False),
        ({"b": {"$gt": 0}}, False),
        ({"n": {"$in": [1, 3]}}, True),
        ({"n": {"$in": ["3"]}}, False),
        ({"n": {"$nin": [1, 2]}}, True),
        ({"missing": {"$ne": 1}}, True),
        ({"missing": {"$nin": [1]}}, True),
        ({"missing": {"$eq": None}}, False),
        ({"missing": {"$lt": 1}}, False),
        ({"o.p.missing": {"$ne": 1}}, True),
        ({"s.deeper": {"$ne": 1}}, True),
        ({"n": 3, "s": "abd"}, False),
    ],
)
def test_filter_semantics(flt: dict[str, object], expected: bool) -> None:
    check_filter(flt)
    assert matches_filter(DATA, flt) is expected


@pytest.mark.parametrize(
    ("flt", "field"),
    [
        ({"a": {"$foo": 1}}, "filter.a.$foo"),
        ({"a": {"b": {"$in": "x"}}}, "filter.a.b.$in"),
        ({"a": {"$lt": None}}, "filter.a.$lt"),
        ({"a": {"$gte": [1]}}, "filter.a.$gte"),
        ({"a": {"$eq": 1, "b": 1}}, "filter.a"),
        ({"": 1}, "filter"),
        ({".a": 1}, "filter"),
        ({"$and": []}, "filter.$and"),
    ],
)
def test_bad_filters_name_the_path(flt: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_filter(flt)
    assert caught.value.details["field"] == field
