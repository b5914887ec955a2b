"""Any OpenAI-compatible server: OpenAI, Ollama, vLLM, llama.cpp server, LM Studio.

Structured output uses ``response_format`` json_schema where the server takes
it and json_object (with the schema in the prompt, and in the json_object
format for servers that read it there) where it clearly says it does not. The
reply is streamed and reading stops as soon as the JSON object is complete.

``openai_timeout`` bounds the whole call, not each read, so a server that
trickles whitespace cannot hold a call forever. A stream that ends early (cut,
truncated, no end marker) is a retryable BackendUnavailableError, not invalid
output. Error text from the server is redacted (the configured key and
key-like strings) before it becomes one of our messages.

Small local servers need three more things. Prompt plus ``max_tokens`` must fit
the server's context (``openai_context_tokens``, or what llama.cpp's ``/props``
or Ollama's ``/api/ps`` and ``/api/show`` says): the reply budget is cut to
fit, and a prompt that leaves no room fails at once with what to change. Chat
templates that drop system messages (Gemma's) get the instructions folded into
the first user turn. json_object requests
carry the schema with its bounds, which llama.cpp turns into a grammar.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from app.backends.base import Backend, ChatRequest, JSONReply, JSONRequest, Message
from app.backends.json_stream import JSONObjectScanner
from app.errors import (
    BackendCapabilityError,
    BackendError,
    BackendResponseError,
    BackendUnavailableError,
    ConfigError,
    RateLimitedError,
)
from app.logs import redact
from app.models import strict_schema
from config import Settings

if TYPE_CHECKING:
    from openai import AsyncOpenAI

# After the JSON object is complete, read at most this many more events before
# closing the stream (see _stream_json).
TRAILING_EVENTS_READ = 16
# Local servers (Ollama, llama.cpp) ignore the key, but the SDK insists on one.
PLACEHOLDER_API_KEY = "not-needed"
# An answer that clearly says structured output is not supported (as opposed to
# a transient server error): only this switches a server to json_object.
_SCHEMA_WORDS = re.compile(r"json[_ ]?schema|response[_ ]?format|structured output", re.I)
# Chat templates known to drop (or refuse) system messages: fold them into the user turn.
_DROPS_SYSTEM = re.compile(r"gemma", re.I)
# Token estimates without the server's tokenizer: English prose runs ~4 characters
# a token, the JSON schema in a prompt nearer 3; the lower figure never undercounts
# by much. Each message costs a few tokens of template around it.
CHARS_PER_TOKEN = 3.0
TOKENS_PER_MESSAGE = 8
# A reply budget smaller than this cannot hold an NPC (or a useful chat line).
MIN_REPLY_TOKENS = 128
# Seconds to wait for a server to say its context size (llama.cpp's /props).
CONTEXT_PROBE_TIMEOUT = 3.0
# Ollama's context when neither the loaded model nor its Modelfile says one: the
# smallest default of its releases (2048; 4096 in newer ones). Its OpenAI endpoint
# takes no num_ctx and cuts a longer prompt from the front, system prompt first.
OLLAMA_DEFAULT_CONTEXT = 2048
_NUM_CTX = re.compile(r"^\s*num_ctx\s+(\d+)\s*$", re.M)
_UNSUPPORTED_WORDS = re.compile(
    r"not supported|unsupported|not implemented|does not support|unknown|unrecognized"
    r"|not available|not allowed"
    # llama-cpp-python's server: pydantic's "Input should be 'text' or 'json_object'".
    r"|input should be|literal_error",
    re.I,
)


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds form only)."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) * scale
        except ValueError:
            continue
    return None


def parse_json_object(text: str) -> tuple[Any, str | None]:
    """Parse model output; control characters inside strings are tolerated."""
    try:
        return json.loads(text, strict=False), None
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"


def rejects_json_schema(status: int, message: str) -> bool:
    """Whether an HTTP error says the server does not take json_schema output."""
    return (
        status in (400, 422, 500)
        and _SCHEMA_WORDS.search(message) is not None
        and _UNSUPPORTED_WORDS.search(message) is not None
    )


@dataclass(slots=True)
class StreamEnd:
    """How an event stream ended, for the caller to judge after reading it."""

    finished: bool = False  # a finish_reason or [DONE] arrived
    truncated: bool = False  # the body ended in the middle of an event
    reason: str | None = None  # the finish_reason ("stop", "length")


async def _guarded_lines(
    lines: AsyncIterator[str], backend: str, secrets: Sequence[str]
) -> AsyncIterator[str]:
    """Lines of the stream; a connection that breaks mid-stream is a retryable error.

    The SDK wraps transport errors only while sending the request; once the body
    streams, its HTTP library's own exceptions come through as they are.
    """
    try:
        async for line in lines:
            yield line
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2"):
            raise BackendUnavailableError(
                backend, redact(f"the connection broke mid-stream ({exc!r})", secrets)
            ) from None
        raise


async def _content_deltas(
    lines: AsyncIterator[str], backend: str, secrets: Sequence[str], end: StreamEnd
) -> AsyncIterator[str]:
    """The text of choice 0 from ``data:`` lines of an OpenAI event stream.

    Sets ``end`` as the stream ends; an event that does not parse is only an
    error when more follows it (the last one may just be cut off).
    """
    malformed = False
    async for line in _guarded_lines(lines, backend, secrets):
        # After [DONE] the body is read to its end (a few bytes), so the
        # keep-alive connection goes back to the pool instead of being closed.
        if end.finished or not line.startswith("data:"):
            continue
        if malformed:
            raise BackendError(backend, "the server sent a malformed stream event")
        payload = line[5:].strip()
        if payload == "[DONE]":
            end.finished = True
            continue
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            malformed = True
            continue
        if not isinstance(event, dict):
            continue
        if event.get("error"):
            error = event["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise BackendResponseError(
                backend, redact(f"error during the stream: {message}", secrets), status=500
            )
        for choice in event.get("choices") or ():
            if choice.get("index", 0) == 0:
                if choice.get("finish_reason"):
                    end.finished = True
                    end.reason = choice["finish_reason"]
                content = (choice.get("delta") or {}).get("content")
                if content:
                    yield content
    end.truncated = malformed


def _plain_body(*, model: str, messages: list[Any], **fields: Any) -> dict[str, Any]:
    """Arguments for ``chat.completions.create`` that skip the SDK's transform.

    The SDK walks typed parameters (messages, response_format) recursively to
    transform them: ~2 ms of CPU per call for a long prompt and a deep schema,
    which on 2 cores limits how many NPCs stream at once. Ours are plain JSON
    already, so they travel in ``extra_body``, which the SDK merges into the
    request body as it is (it overrides the empty ``messages`` placeholder).
    """
    body = {"messages": messages, **{k: v for k, v in fields.items() if v is not None}}
    return {"model": model, "messages": [], "extra_body": body}


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A generous guess at a prompt's length in tokens (see CHARS_PER_TOKEN)."""
    chars = sum(len(message["content"]) for message in messages)
    return round(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)


def fold_system(messages: Sequence[Message]) -> list[Message]:
    """The system messages moved into the first user turn, for templates that drop them."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest  # type: ignore[return-value]
    instructions = "\n\n".join(system)
    for message in rest:
        if message["role"] == "user":
            message["content"] = f"{instructions}\n\n{message['content']}"
            return rest  # type: ignore[return-value]
    return [{"role": "user", "content": instructions}, *rest]  # type: ignore[list-item]


def _context_size(props: Any) -> int | None:
    """n_ctx from llama.cpp's /props (per slot in ``default_generation_settings``)."""
    if not isinstance(props, dict):
        return None
    settings = props.get("default_generation_settings")
    for source in (settings, props):
        if isinstance(source, dict) and isinstance(source.get("n_ctx"), int):
            return int(source["n_ctx"]) if source["n_ctx"] > 0 else None
    return None


def _ollama_loaded_context(ps: Any, model: str) -> int | None:
    """The context a loaded model runs with (Ollama's ``/api/ps``)."""
    models = ps.get("models") if isinstance(ps, dict) else None
    for entry in models if isinstance(models, list) else []:
        if isinstance(entry, dict) and model in (entry.get("name"), entry.get("model")):
            size = entry.get("context_length")
            return size if isinstance(size, int) and size > 0 else None
    return None


def _ollama_modelfile_context(show: Any) -> int | None:
    """``num_ctx`` from a model's Modelfile parameters (Ollama's ``/api/show``)."""
    parameters = show.get("parameters") if isinstance(show, dict) else None
    found = _NUM_CTX.search(parameters) if isinstance(parameters, str) else None
    return int(found.group(1)) if found and int(found.group(1)) > 0 else None


def schema_instruction(schema: Any) -> str:
    """The schema as prompt text, for servers without json_schema support."""
    return (
        "Reply with one JSON object and nothing else. It must match this JSON schema:\n"
        + json.dumps(schema, separators=(",", ":"))
    )


class OpenAIBackend(Backend):
    """Chat completions over HTTP with the official ``openai`` SDK."""

    kind = "remote"
    supports_schema = True
    can_stream = True

    def __init__(self, settings: Settings, context: object = None) -> None:
        """Raises ConfigError at once when there is neither an API key nor a server.

        ``context`` (the registry's BackendContext) is not needed here.
        """
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
        if not key and not settings.openai_base_url:
            raise ConfigError(
                "The openai backend needs an API key or a server: set OPENAI_API_KEY "
                "(or NPC_FORGE_OPENAI_API_KEY), or NPC_FORGE_OPENAI_BASE_URL for a local "
                "server such as Ollama (http://127.0.0.1:11434/v1)."
            )
        self._settings = settings
        self._api_key = key or PLACEHOLDER_API_KEY
        # Values to mask in any text that came from the server or the SDK.
        self._secrets: tuple[str, ...] = (key,) if key else ()
        self._model = settings.openai_model
        # None until a server has shown whether it accepts json_schema.
        self._json_schema_ok: bool | None = {
            "auto": None,
            "json_schema": True,
            "json_object": False,
        }[settings.openai_structured_output]
        system = settings.openai_system_in_user
        self._fold_system = bool(_DROPS_SYSTEM.search(self._model)) if system is None else system
        # The server's context in tokens: configured, or asked once (None = unknown).
        self._context: int | None = settings.openai_context_tokens
        self._context_known = self._context is not None or not settings.openai_base_url
        # One question per event loop, however many first calls wait for the answer.
        self._context_probes: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Task[int | None]
        ] = weakref.WeakKeyDictionary()
        # An httpx pool belongs to the event loop that opened it.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncOpenAI] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def name(self) -> str:
        return f"openai:{self._model}"

    @property
    def cache_identity(self) -> str:
        # The same model name on two servers (Ollama vs vLLM) is two models.
        return f"{self.name}@{self.base_url}"

    @property
    def base_url(self) -> str:
        return self._settings.openai_base_url or "https://api.openai.com/v1"

    def _safe(self, text: str) -> str:
        return redact(text, self._secrets)

    def _client(self) -> AsyncOpenAI:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            from openai import AsyncOpenAI  # imported here: ~1 s, only when used

            client = AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self._settings.openai_timeout,
                max_retries=0,  # GuardedBackend retries, honouring Retry-After
            )
            self._clients[loop] = client
        return client

    def _timed_out(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            self.name,
            f"no answer from {self.base_url} within {self._settings.openai_timeout:g} s",
        )

    def _wrap(self, exc: Exception) -> BackendError:
        """Turn an SDK exception into ours, without the key or long bodies."""
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return self._timed_out()
        if isinstance(exc, openai.APIConnectionError):
            return BackendUnavailableError(
                self.name, f"cannot reach {self.base_url}. Is the server running?"
            )
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            retry_after = _retry_after(exc.response.headers)
            if status == 429:
                return RateLimitedError(
                    self.name, "rate limited (HTTP 429)", retry_after=retry_after
                )
            if status == 401:
                detail = "the server rejected the API key; check OPENAI_API_KEY"
            elif status == 404:
                detail = (
                    f"model {self._model!r} not found at {self.base_url}; "
                    "check NPC_FORGE_OPENAI_MODEL"
                )
            else:
                # Redacted before cutting, so a cut cannot split a secret.
                detail = f"HTTP {status}: {self._safe(str(exc.message))[:300]}"
            return BackendResponseError(self.name, detail, status=status, retry_after=retry_after)
        return BackendError(self.name, self._safe(f"{type(exc).__name__}: {exc}"))

    def _response_format(self, request: JSONRequest, json_schema: bool) -> dict[str, Any]:
        if json_schema:
            return {
                "type": "json_schema",
                "json_schema": {
                    "name": request.task,
                    "schema": strict_schema(dict(request.schema)),
                    "strict": True,
                },
            }
        # llama.cpp's server constrains generation with a schema given here;
        # servers that do not know the key ignore it.
        return {"type": "json_object", "schema": dict(request.schema)}

    def _messages(self, request: JSONRequest, json_schema: bool) -> list[Message]:
        messages = [dict(message) for message in request.messages]
        if not json_schema:
            # Without json_schema the model only knows the shape from the prompt.
            instruction = schema_instruction(request.schema)
            if messages and messages[0]["role"] == "system":
                messages[0]["content"] = f"{messages[0]['content']}\n\n{instruction}"
            else:
                messages.insert(0, {"role": "system", "content": instruction})
        return self._chat_messages(messages)  # type: ignore[arg-type]

    def _chat_messages(self, messages: Sequence[Message]) -> list[Message]:
        return fold_system(messages) if self._fold_system else list(messages)

    async def _context_tokens(self) -> int | None:
        """The server's context size: configured, else asked once (llama.cpp's /props)."""
        if not self._context_known:
            loop = asyncio.get_running_loop()
            probe = self._context_probes.get(loop)
            if probe is None:
                probe = self._context_probes[loop] = loop.create_task(self._ask_context())
            # Shielded: one caller cancelled must not cancel the answer the others await.
            self._context = await asyncio.shield(probe)
            self._context_known = True
        return self._context

    async def _ask_context(self) -> int | None:
        """llama.cpp says at ``/props``; Ollama at ``/api/ps`` (a loaded model),
        ``/api/show`` (its Modelfile) or not at all (then its default)."""
        import httpx

        origin = self.base_url.rstrip("/").removesuffix("/v1")
        try:
            async with httpx.AsyncClient(timeout=CONTEXT_PROBE_TIMEOUT) as client:
                response = await client.get(f"{origin}/props")
                if response.status_code == 200:
                    return _context_size(response.json())
                show = await client.post(f"{origin}/api/show", json={"model": self._model})
                if show.status_code != 200:
                    return None  # a server that does not say: no budget beyond max_tokens
                ps = await client.get(f"{origin}/api/ps")
                loaded = _ollama_loaded_context(ps.json(), self._model) if ps.is_success else None
                stated = _ollama_modelfile_context(show.json())
                return loaded or stated or OLLAMA_DEFAULT_CONTEXT
        except (httpx.HTTPError, ValueError):
            return None

    async def _reply_budget(self, messages: Sequence[Message], wanted: int) -> int:
        """``wanted`` tokens, cut so prompt plus reply fit the server's context.

        Raises BackendCapabilityError (not retried: it would fail again) when
        the prompt leaves less than MIN_REPLY_TOKENS.
        """
        context = await self._context_tokens()
        if context is None:
            return wanted
        prompt = estimate_tokens(messages)
        room = context - prompt
        if room < MIN_REPLY_TOKENS:
            raise BackendCapabilityError(
                self.name,
                f"the prompt (about {prompt} tokens) leaves no room for a reply in the "
                f"server's {context}-token context. Start the server with a larger context "
                "(llama.cpp: --n_ctx 4096 or more) and set NPC_FORGE_OPENAI_CONTEXT_TOKENS "
                "to match, or shorten the world detail.",
            )
        return min(wanted, room)

    async def complete_json(self, request: JSONRequest) -> JSONReply:
        """One JSON object, within ``openai_timeout`` for the whole call."""
        # The SDK's first import and client take about a second of CPU: not the server's time.
        self._client()
        timeout = asyncio.timeout(self._settings.openai_timeout)
        try:
            async with timeout:
                return await self._complete_json(request)
        except TimeoutError:
            if not timeout.expired():
                raise
            raise self._timed_out() from None

    async def _complete_json(self, request: JSONRequest) -> JSONReply:
        import openai

        use_schema = self._json_schema_ok is not False
        try:
            reply = await self._stream_json(request, use_schema)
        except openai.APIStatusError as exc:
            # "auto": a server that clearly says it does not take json_schema gets
            # json_object from now on; any other error (a transient 500) is just that.
            if not (
                use_schema
                and self._json_schema_ok is None
                and rejects_json_schema(exc.status_code, str(exc.message))
            ):
                raise self._wrap(exc) from None
            self._json_schema_ok = False
            try:
                return await self._stream_json(request, False)
            except openai.OpenAIError as retry_exc:
                raise self._wrap(retry_exc) from None
        except openai.OpenAIError as exc:
            raise self._wrap(exc) from None
        if use_schema:
            self._json_schema_ok = True
        return reply

    @asynccontextmanager
    async def _deltas(
        self, options: dict[str, Any], end: StreamEnd
    ) -> AsyncIterator[AsyncIterator[str]]:
        """Stream a chat completion as text deltas.

        The raw server-sent events are parsed with orjson rather than through the
        SDK's per-chunk pydantic models: those cost ~10 ms of CPU per NPC, which
        on 2 cores is what limits how many NPCs can stream at once. Leaving the
        block closes the connection, so the server stops generating.
        """
        create = self._client().chat.completions.with_streaming_response.create
        async with create(stream=True, **options) as response:
            yield _content_deltas(response.iter_lines(), self.name, self._secrets, end)

    async def _stream_json(self, request: JSONRequest, use_schema: bool) -> JSONReply:
        started = time.perf_counter()
        first_token: float | None = None
        scanner = JSONObjectScanner()
        messages = self._messages(request, use_schema)
        max_tokens = await self._reply_budget(
            messages, request.max_tokens or self._settings.openai_max_tokens
        )
        options = _plain_body(
            model=self._model,
            messages=messages,
            temperature=request.temperature,
            seed=request.seed,
            max_tokens=max_tokens,
            response_format=self._response_format(request, use_schema),
        )
        stopped_early = False
        extra_events = 0
        end = StreamEnd()
        async with self._deltas(options, end) as deltas:
            async for delta in deltas:
                if first_token is None:
                    first_token = time.perf_counter()
                if not scanner.complete:
                    scanner.feed(delta)
                    continue
                # The object is complete. A stream that ends within a few more events
                # is read to the end, so its keep-alive connection is reused; one that
                # keeps talking is cut off, so we stop paying for its tokens.
                extra_events += 1
                if extra_events > TRAILING_EVENTS_READ:
                    stopped_early = True
                    break
        if not (stopped_early or end.finished or scanner.complete):
            # The reply was cut off in transit: a transport failure worth a retry,
            # not invalid output worth a repair call.
            raise self._cut_off(end)
        elapsed = time.perf_counter() - started
        text = scanner.object_text() or scanner.text
        data, error = parse_json_object(text) if text.strip() else (None, "the reply was empty")
        if error is not None and end.reason == "length" and not scanner.complete:
            error = (
                f"the reply reached its limit of {max_tokens} tokens before the JSON object "
                "closed; write shorter fields"
            )
        if error is None and not isinstance(data, dict):
            data, error = None, f"expected a JSON object, got {type(data).__name__}"
        stats = {"backend_ms": elapsed * 1000, "stopped_early": float(stopped_early)}
        if first_token is not None:
            stats["ttft_ms"] = (first_token - started) * 1000
        return JSONReply(raw=scanner.text, data=data, parse_error=error, stats=stats)

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[str]:
        import openai

        messages = self._chat_messages(request.messages)
        end = StreamEnd()
        try:
            # Without a bound a small model talks until its context is full.
            max_tokens = await self._reply_budget(
                messages, request.max_tokens or self._settings.chat_max_tokens
            )
            options = _plain_body(
                model=self._model,
                messages=messages,
                temperature=request.temperature,
                seed=request.seed,
                max_tokens=max_tokens,
            )
            async with self._deltas(options, end) as deltas:
                async for delta in deltas:
                    yield delta
        except openai.OpenAIError as exc:
            raise self._wrap(exc) from None
        if not end.finished:
            raise self._cut_off(end)

    def _cut_off(self, end: StreamEnd) -> BackendUnavailableError:
        if end.truncated:
            return BackendUnavailableError(
                self.name, "the stream ended in the middle of an event (cut off in transit)"
            )
        return BackendUnavailableError(
            self.name, "the stream ended before the reply did (no finish_reason or [DONE])"
        )

    async def aclose(self) -> None:
        """Close the connections opened on this event loop. A pool belongs to the
        loop that opened it (the UI server closes its own at shutdown); pools of
        loops that are gone are dropped."""
        loop = asyncio.get_running_loop()
        for owner, client in list(self._clients.items()):
            if owner is loop:
                await client.close()
            if owner is loop or owner.is_closed():
                del self._clients[owner]
