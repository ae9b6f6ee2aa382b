"""What every embedder does to a model's output: float32 rows of unit length."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def unit_rows(matrix: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """``matrix`` as C-contiguous float32 rows scaled to length 1. A row of zeros (a text
    with no known token) stays zeros: its similarity to everything is 0, not NaN."""
    rows = np.array(matrix, dtype=np.float32, copy=True, order="C", ndmin=2)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    np.divide(rows, norms, out=rows, where=norms > 0)
    return rows
