"""The vectors of one kind of item of one namespace, in one float32 matrix, and how a
vector is kept in the backend (so a restart does not embed everything again).

Rows are reused: a removed item's row goes to a free list; the matrix doubles when full.
Similarity is the dot product of unit vectors (the embedder normalises them), computed
by one matrix-vector product over the used rows: an exact scan.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import orjson

K = TypeVar("K", bound=Hashable)

#: The reserved namespace holding the vectors of every namespace: outside the namespace
#: rule (a name starts with a letter or digit), so no request can address it. One entity
#: per item: type = the item's namespace, id = the item's kind and a digest of its key.
VECTORS_NAMESPACE = "_search"


def text_digest(text: str) -> str:
    """What the vector was computed from: a stored vector is reused only for the same text."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def vector_id(kind: str, key: tuple[Any, ...]) -> str:
    return f"{kind}:{hashlib.blake2b(orjson.dumps(list(key)), digest_size=16).hexdigest()}"


def stored_vector(
    kind: str,
    key: tuple[Any, ...],
    embedder: str,
    digest: str,
    version: int | None,
    vector: npt.NDArray[np.float32],
) -> dict[str, Any]:
    """The entity that keeps one item's vector in :data:`VECTORS_NAMESPACE`."""
    return {
        "kind": kind,
        "key": list(key),
        "embedder": embedder,
        "dimension": int(vector.shape[0]),
        "version": version,
        "text_sha256": digest,
        "vector": base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode(),
    }


def read_stored_vector(data: dict[str, Any]) -> npt.NDArray[np.float32] | None:
    """The vector of a stored entity, or ``None`` if it is not one (never raises)."""
    try:
        raw = base64.b64decode(data["vector"], validate=True)
        vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        if vector.shape[0] != data["dimension"]:
            return None
        return vector
    except (KeyError, TypeError, ValueError):
        return None


class VectorTable(Generic[K]):
    """Unit vectors by key; ``similarities(q)`` is the cosine similarity of each to ``q``."""

    def __init__(self) -> None:
        self._matrix: npt.NDArray[np.float32] | None = None
        self._row: dict[K, int] = {}
        self._keys: list[K | None] = []
        self._free: list[int] = []
        self._live: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)  # rows holding a vector

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, key: object) -> bool:
        return key in self._row

    @property
    def nbytes(self) -> int:
        return 0 if self._matrix is None else int(self._matrix.nbytes)

    def get(self, key: K) -> npt.NDArray[np.float32] | None:
        row = self._row.get(key)
        return None if row is None or self._matrix is None else self._matrix[row].copy()

    def put(self, key: K, vector: npt.NDArray[np.float32]) -> None:
        dim = vector.shape[0]
        if self._matrix is not None and self._matrix.shape[1] != dim:
            self.clear()  # another vector space: the old vectors mean nothing beside it
        row = self._row.get(key)
        if row is None:
            row = self._free.pop() if self._free else len(self._keys)
            if row == len(self._keys):
                self._keys.append(None)
            self._grow(row + 1, dim)
            self._row[key] = row
            self._keys[row] = key
            self._live[row] = True
        assert self._matrix is not None
        self._matrix[row] = vector

    def remove(self, key: K) -> None:
        row = self._row.pop(key, None)
        if row is not None:
            self._keys[row] = None
            self._live[row] = False
            self._free.append(row)
            if self._matrix is not None:
                self._matrix[row] = 0.0

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def _grow(self, rows: int, dim: int) -> None:
        if self._matrix is None:
            self._matrix = np.zeros((max(rows, 64), dim), dtype=np.float32)
        elif rows > self._matrix.shape[0]:
            bigger = np.zeros((max(rows, 2 * self._matrix.shape[0]), dim), dtype=np.float32)
            bigger[: self._matrix.shape[0]] = self._matrix
            self._matrix = bigger
        if self._live.shape[0] < self._matrix.shape[0]:
            live = np.zeros(self._matrix.shape[0], dtype=bool)
            live[: self._live.shape[0]] = self._live
            self._live = live

    def similarities(
        self, query: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        """The rows holding a vector and their similarity to ``query`` (the float32
        products of one matrix-vector product, widened exactly to float64)."""
        if self._matrix is None or not self._row:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float64)
        sims = self._matrix[: len(self._keys)] @ query.astype(np.float32)
        rows = np.flatnonzero(self._live[: len(self._keys)])
        return rows, sims[rows].astype(np.float64)

    @property
    def rows(self) -> int:
        """How many rows the similarities are indexed by (used or free)."""
        return len(self._keys)

    def key_at(self, row: int) -> K:
        key = self._keys[row]
        assert key is not None
        return key

    def row_of(self, key: K) -> int | None:
        return self._row.get(key)
