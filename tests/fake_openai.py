"""A fake OpenAI-compatible server on 127.0.0.1 for tests and benchmarks.

It speaks ``POST /v1/chat/completions`` (plain and streamed, as SSE) over real
HTTP, so the ``openai`` SDK and our backend are exercised end to end. Tests
program it: a default latency and responder, plus a queue of one-off actions
(fail with a status and Retry-After, hang past the client's timeout, trickle
tiny chunks, answer with broken JSON, keep streaming after the object, end a
stream early, cut it in the middle of an event or drop the connection, send
an error event, echo the request headers back as a leaky server would). Like
llama.cpp's server it can say its context size at ``GET /props``. It
records every request body and the highest number of requests it had in
flight at once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.threaded_server import ThreadedServer

Responder = Callable[[dict[str, Any]], str]
# How a stream ends: "done" = finish_reason and [DONE]; "none" = it just stops;
# "truncated" = the body ends in the middle of a ``data: {...`` line;
# "cut" = the connection drops (the server fails mid-response).
StreamEnd = Literal["done", "none", "truncated", "cut"]


class _CutConnectionError(Exception):
    """Raised inside a streaming body so the server drops the connection."""


@dataclass
class Action:
    """What to do with one request. ``content`` None = ask the responder."""

    status: int = 200
    content: str | None = None
    latency: float | None = None
    retry_after: float | None = None
    error_message: str = "fake server error"
    trailing: str = ""  # streamed after the content, e.g. chatter after the JSON
    chunk_size: int = 8
    chunk_delay: float = 0.0  # before each chunk: with tiny chunks, a trickle
    # Stream only this many content chunks, then end as ``stream_end`` says.
    stop_after_chunks: int | None = None
    stream_end: StreamEnd = "done"
    # Instead of the end, an ``error`` event with this message.
    stream_error: str | None = None
    # The first event (role only) that real servers send before any text; without
    # it, stop_after_chunks=0 and stream_end="cut" is an empty body, then a reset.
    role_chunk: bool = True
    finish_reason: str = "stop"  # "length": the reply hit max_tokens
    # Put the request headers (Authorization too) into the error text.
    echo_headers: bool = False


@dataclass
class ServerState:
    latency: float = 0.0
    responder: Responder | None = None
    # Answer json_schema requests with HTTP 500, as llama.cpp's server does.
    reject_json_schema: bool = False
    # What GET /props answers (llama.cpp's shape); None = 404, as most servers.
    props: dict[str, Any] | None = None
    props_requests: int = 0
    # What Ollama's POST /api/show and GET /api/ps answer; None = 404 (not Ollama).
    ollama_show: dict[str, Any] | None = None
    ollama_ps: dict[str, Any] | None = None
    actions: deque[Action] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # of each request
    in_flight: int = 0
    max_in_flight: int = 0
    streams_finished: int = 0
    streams_abandoned: int = 0


def _completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


class FakeOpenAIServer:
    """Start with ``with FakeOpenAIServer() as server:``; point clients at ``server.base_url``."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        responder: Responder | None = None,
        reject_json_schema: bool = False,
    ) -> None:
        self.state = ServerState(
            latency=latency, responder=responder, reject_json_schema=reject_json_schema
        )
        self._lock = threading.Lock()
        # Notified whenever a stream ends, so tests wait for it instead of polling.
        self._streams_ended = threading.Condition(self._lock)
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/stats", self._stats, methods=["GET"]),
                Route("/props", self._props, methods=["GET"]),
                Route("/api/show", self._ollama_show, methods=["POST"]),
                Route("/api/ps", self._ollama_ps, methods=["GET"]),
            ]
        )
        self.http = ThreadedServer(app, "fake OpenAI server")
        self.port = self.http.port

    # -- programming the server -------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.http.base_url

    def set_latency(self, seconds: float) -> None:
        self.state.latency = seconds

    def set_responder(self, responder: Responder) -> None:
        self.state.responder = responder

    def set_context(self, n_ctx: int) -> None:
        """Say this context size at /props, as llama.cpp's server does."""
        self.state.props = {"default_generation_settings": {"n_ctx": n_ctx}, "total_slots": 1}

    def be_ollama(
        self, *, num_ctx: int | None = None, loaded: dict[str, int] | None = None
    ) -> None:
        """Answer like Ollama: ``/api/show`` with ``num_ctx`` in the Modelfile's
        parameters (when given), ``/api/ps`` listing ``loaded`` models' contexts."""
        parameters = f"stop <|im_end|>\nnum_ctx {num_ctx}" if num_ctx else "stop <|im_end|>"
        self.state.ollama_show = {"parameters": parameters, "details": {"format": "gguf"}}
        models = [{"name": name, "context_length": n} for name, n in (loaded or {}).items()]
        self.state.ollama_ps = {"models": models}

    def enqueue(self, *actions: Action) -> None:
        with self._lock:
            self.state.actions.extend(actions)

    def fail(self, status: int, *, times: int = 1, retry_after: float | None = None) -> None:
        self.enqueue(*(Action(status=status, retry_after=retry_after) for _ in range(times)))

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.state.requests

    @property
    def headers(self) -> list[dict[str, str]]:
        return self.state.headers

    @property
    def max_in_flight(self) -> int:
        return self.state.max_in_flight

    def wait_for_streams(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``count`` streams have ended (finished or abandoned)."""
        with self._streams_ended:
            return self._streams_ended.wait_for(
                lambda: self.state.streams_finished + self.state.streams_abandoned >= count,
                timeout,
            )

    def reset(self, *, latency: float = 0.0, responder: Responder | None = None) -> None:
        with self._lock:
            self.state.requests.clear()
            self.state.headers.clear()
            self.state.actions.clear()
            self.state.max_in_flight = 0
            self.state.streams_finished = 0
            self.state.streams_abandoned = 0
            self.state.latency = latency
            self.state.reject_json_schema = False
            self.state.props = None
            self.state.props_requests = 0
            self.state.ollama_show = self.state.ollama_ps = None
            if responder is not None:
                self.state.responder = responder

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the endpoints ----------------------------------------------------------
    async def _stats(self, request: Request) -> Response:
        """What a test in another process needs to know."""
        state = self.state
        return JSONResponse(
            {
                "requests": len(state.requests),
                "max_in_flight": state.max_in_flight,
                "streams_finished": state.streams_finished,
                "streams_abandoned": state.streams_abandoned,
            }
        )

    async def _props(self, request: Request) -> Response:
        with self._lock:
            self.state.props_requests += 1
        if self.state.props is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(self.state.props)

    async def _ollama_show(self, request: Request) -> Response:
        if self.state.ollama_show is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(self.state.ollama_show)

    async def _ollama_ps(self, request: Request) -> Response:
        if self.state.ollama_ps is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(self.state.ollama_ps)

    def _next_action(self) -> Action:
        with self._lock:
            return self.state.actions.popleft() if self.state.actions else Action()

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        headers_text = json.dumps(dict(request.headers))
        with self._lock:
            self.state.requests.append(body)
            self.state.headers.append(dict(request.headers))
            self.state.in_flight += 1
            self.state.max_in_flight = max(self.state.max_in_flight, self.state.in_flight)
        action = self._next_action()
        response_format = body.get("response_format") or {}
        if self.state.reject_json_schema and response_format.get("type") == "json_schema":
            # What llama-cpp-python 0.3.36 answers, word for word (shortened).
            action = Action(
                status=500,
                error_message="1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
                "'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", "
                "'input': 'json_schema'}",
            )
        streaming = False
        try:
            await asyncio.sleep(self.state.latency if action.latency is None else action.latency)
            if action.status != 200:
                headers = {}
                if action.retry_after is not None:
                    headers["retry-after"] = f"{action.retry_after:g}"
                message = action.error_message
                if action.echo_headers:
                    message = f"{message}; request headers: {headers_text}"
                error = {
                    "error": {
                        "message": message,
                        "type": "fake",
                        "code": action.status,
                    }
                }
                return JSONResponse(error, status_code=action.status, headers=headers)
            content = action.content
            if content is None:
                responder = self.state.responder
                content = responder(body) if responder else "{}"
            model = body.get("model", "fake-model")
            if not body.get("stream"):
                return JSONResponse(_completion(model, content + action.trailing))
            streaming = True
            return StreamingResponse(
                self._stream(model, content + action.trailing, action, headers_text),
                media_type="text/event-stream",
            )
        finally:
            if not streaming:
                with self._lock:
                    self.state.in_flight -= 1

    async def _stream(self, model: str, text: str, action: Action, headers_text: str):  # type: ignore[no-untyped-def]
        finished = False
        try:
            if action.role_chunk:
                yield _chunk(model, {"role": "assistant", "content": ""})
            starts = range(0, len(text), action.chunk_size)
            if action.stop_after_chunks is not None:
                starts = starts[: action.stop_after_chunks]
            for start in starts:
                if action.chunk_delay:
                    await asyncio.sleep(action.chunk_delay)
                yield _chunk(model, {"content": text[start : start + action.chunk_size]})
            if action.stream_error is not None:
                message = action.stream_error
                if action.echo_headers:
                    message = f"{message}; request headers: {headers_text}"
                yield f"data: {json.dumps({'error': {'message': message}})}\n\n".encode()
            elif action.stream_end == "done":
                yield _chunk(model, {}, finish=action.finish_reason)
                yield b"data: [DONE]\n\n"
            elif action.stream_end == "truncated":
                last = _chunk(model, {}, finish="stop")
                yield last[: len(last) // 2]
            elif action.stream_end == "cut":
                raise _CutConnectionError("fake server dropped the connection")
            finished = True
        finally:
            with self._lock:
                self.state.in_flight -= 1
                if finished:
                    self.state.streams_finished += 1
                else:
                    self.state.streams_abandoned += 1
                self._streams_ended.notify_all()


def main() -> None:
    """Serve in its own process (benchmarks): ``python -m tests.fake_openai --latency 0.2``.

    Prints the base URL on the first line of stdout, then serves until killed.
    """
    import argparse

    from tests.npc_fixtures import npc_responder

    parser = argparse.ArgumentParser(description="fake OpenAI-compatible server on 127.0.0.1")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    server = FakeOpenAIServer(latency=args.latency, responder=npc_responder)
    print(server.base_url, flush=True)
    server.http.serve_here()


if __name__ == "__main__":
    main()
