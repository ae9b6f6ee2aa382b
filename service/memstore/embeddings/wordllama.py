"""The default embedder: WordLlama, whose weights ship inside its PyPI package.

The model is a table of token vectors averaged over a text (no transformer): about 16 MB,
CPU only, thousands of short texts per second. Nothing is downloaded, ever. The library's
loader looks for the weights in the package, then in its cache folder, then downloads from
the Hugging Face hub; and it looks for the tokenizer in a package folder that does not
exist (``tokenizer/``; the file is in ``tokenizers/``), so by default it always fetches
the tokenizer from the hub. memstore points the loader's cache folder at the package
itself (``<package>/weights``, ``<package>/tokenizers``: both files are found there)
and disables downloads (a missing file is an error, not a fetch).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from memstore.core.errors import ConfigurationError
from memstore.embeddings.threaded import ThreadedEmbedder
from memstore.embeddings.vectors import unit_rows

if TYPE_CHECKING:
    from wordllama import WordLlamaInference

DEFAULT_MODEL = "l2_supercat/256"
# Tokens of a text that are embedded: an average of word vectors says nothing more about
# a long text than about its first pages, and a batch is padded to its longest text, so
# this bounds a batch's memory (BATCH_SIZE x MAX_TOKENS x dimension x 4 bytes = 64 MB).
MAX_TOKENS = 4096
BATCH_SIZE = 16


def package_dir() -> Path:
    """The installed ``wordllama`` package's folder, found without importing it."""
    spec = importlib.util.find_spec("wordllama")
    if spec is None or spec.origin is None:
        raise ConfigurationError("MEMSTORE_EMBEDDER=wordllama needs the wordllama package")
    return Path(spec.origin).parent


def bundled_models() -> dict[str, int]:
    """The configs whose weights are inside the package, with their stored dimension."""
    found: dict[str, int] = {}
    for path in sorted((package_dir() / "weights").glob("*.safetensors")):
        config, _, dim = path.stem.rpartition("_")
        if config and dim.isdigit() and not config.endswith("_binary"):
            found[config] = int(dim)
    return found


# The model's vectors are trained so that their leading components are an embedding of
# their own (Matryoshka): a smaller dimension is a prefix of the stored one.
TRUNCATED_DIMENSIONS = (64, 128, 256, 512, 1024)


def parse_model(model: str) -> tuple[str, int, int]:
    """``config[/dimension]`` → (config, stored dimension, dimension), checked against the
    package's own files."""
    config, _, dim_text = (model or DEFAULT_MODEL).partition("/")
    bundled = bundled_models()
    choices = ", ".join(
        f"{name}/{dim}"
        for name, stored in bundled.items()
        for dim in TRUNCATED_DIMENSIONS
        if dim <= stored
    )
    if config not in bundled:
        raise ConfigurationError(
            f"MEMSTORE_EMBEDDER_MODEL={model!r}: the wordllama package ships {choices}"
        )
    stored = bundled[config]
    dim = int(dim_text) if dim_text.isdigit() else (stored if not dim_text else -1)
    if dim not in TRUNCATED_DIMENSIONS or dim > stored:
        raise ConfigurationError(
            f"MEMSTORE_EMBEDDER_MODEL={model!r}: the wordllama package ships {choices}"
        )
    return config, stored, dim


@contextmanager
def _root_logging_kept() -> Iterator[None]:
    # Importing wordllama calls logging.basicConfig(level=INFO): in a process that has not
    # configured logging (a library user's) that would install a handler on the root
    # logger. The root logger is put back as it was.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def load_model(config: str, stored: int, dim: int) -> WordLlamaInference:
    """The model from the package's files (see the module's docstring). The tokenizer
    truncates at ``MAX_TOKENS``."""
    with _root_logging_kept():
        from wordllama import WordLlama

    model = WordLlama.load(
        config,
        cache_dir=package_dir(),
        dim=stored,
        trunc_dim=dim if dim < stored else None,
        disable_download=True,
    )
    model.tokenizer.enable_truncation(MAX_TOKENS)
    return model


class WordLlamaEmbedder(ThreadedEmbedder):
    """``embed`` runs the model in one worker thread of its own (loaded there on first
    use, so neither loading nor embedding blocks the event loop, and concurrent calls
    queue instead of competing for the CPU)."""

    def __init__(self, model: str = "") -> None:
        super().__init__("embed-wordllama")
        self._config, self._stored, self.dimension = parse_model(model)
        self.name = f"wordllama/{self._config}/{self.dimension}"
        self._model: WordLlamaInference | None = None

    def embed_now(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """The blocking work of ``embed`` (in the caller's thread)."""
        model = self._loaded()
        # Batches are padded to their longest text: texts of similar length go together.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        pooled: Any = model.embed([texts[i] for i in order], batch_size=BATCH_SIZE)
        rows = np.empty_like(pooled)
        rows[order] = pooled
        return unit_rows(rows)

    def _loaded(self) -> WordLlamaInference:
        with self._load_lock:
            if self._model is None:
                self._model = load_model(self._config, self._stored, self.dimension)
            return self._model
