"""The one door through which errors reach the browser.

Every handler the UI wires is wrapped by ``user_errors``: our error tree
becomes a ``gr.Error`` with the message (which says what to do), and an
unexpected exception is logged with its traceback and shown as one line
that points at the log, never as a stack trace. It works for plain
functions, coroutines and async generators (streaming handlers).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

import gradio as gr

from app.errors import InputError, NPCForgeError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def as_gradio_error(exc: BaseException) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, NPCForgeError):
        return gr.Error(str(exc), print_exception=False)
    log.error("unexpected error in a UI handler", exc_info=exc)
    return gr.Error(
        f"Something went wrong on the server ({type(exc).__name__}); "
        "the details are in its log. Please try again.",
        print_exception=False,
    )


def user_errors(fn: F) -> F:
    """``fn`` with every error turned into a message for the user."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            try:
                async for item in fn(*args, **kwargs):
                    yield item
            except Exception as exc:
                raise as_gradio_error(exc) from None

        return cast(F, stream)
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                raise as_gradio_error(exc) from None

        return cast(F, call_async)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise as_gradio_error(exc) from None

    return cast(F, call)


def warn(message: str | None) -> None:
    """Show a warning the service returned (nothing when there is none)."""
    if message:
        gr.Warning(message)


def required_npc_id(npc_id: str | None, how: str) -> str:
    """The NPC id a picker (or an API caller) gave; InputError saying ``how`` to pick one."""
    if not npc_id or not str(npc_id).strip():
        raise InputError(f"Choose an NPC first: {how}.")
    return str(npc_id).strip()
