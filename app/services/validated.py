"""One backend call validated, with one repair call only when the output is invalid.

Every use case that asks a backend for JSON (an NPC, one field, relationships)
goes through ``complete_validated``, so "skip the critic when the JSON is
valid" holds everywhere and repairs are counted in one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from pydantic import ValidationError

from app.backends.base import JSONReply, JSONRequest
from app.backends.guard import GuardedBackend
from app.errors import GenerationError
from app.models import StageTimings
from app.services.prompts import repair_request

T = TypeVar("T")
Parse = Callable[[JSONReply], T]


def validation_problems(error: ValidationError) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in item['loc']) or 'object'}: {item['msg']}"
        for item in error.errors()[:10]
    ]


def _try(reply: JSONReply, parse: Parse[T]) -> tuple[T | None, list[str]]:
    if not reply.ok:
        return None, [reply.parse_error or "unparseable output"]
    try:
        return parse(reply), []
    except ValidationError as exc:
        return None, validation_problems(exc)
    except (ValueError, TypeError, KeyError) as exc:
        return None, [str(exc)]


async def _call(
    guarded: GuardedBackend, request: JSONRequest, parse: Parse[T], timings: StageTimings
) -> tuple[T | None, list[str], str]:
    reply = await guarded.complete_json(request)
    timings.queue_ms += reply.stats.get("queue_ms", 0.0)
    timings.backend_ms += reply.stats.get("backend_ms", 0.0)
    started = time.perf_counter()
    value, problems = _try(reply, parse)
    timings.parse_ms += (time.perf_counter() - started) * 1000
    return value, problems, reply.raw


async def complete_validated(
    guarded: GuardedBackend,
    request: JSONRequest,
    parse: Parse[T],
    timings: StageTimings | None = None,
    *,
    what: str = "output",
) -> tuple[T, bool]:
    """``(value, repaired)``; raises GenerationError when the repair fails too.

    ``parse`` turns a reply into the value or raises (pydantic's
    ValidationError, ValueError): its messages are what the repair call shows.
    """
    timings = timings if timings is not None else StageTimings()
    value, problems, raw = await _call(guarded, request, parse, timings)
    if value is not None:
        return value, False
    backend_before = timings.backend_ms
    value, second_problems, _ = await _call(
        guarded, repair_request(request, raw, problems), parse, timings
    )
    # The repair's backend time is its own stage; its wait for a slot is already
    # in queue_ms, so the stages add up to the total instead of overlapping.
    timings.repair_ms = timings.backend_ms - backend_before
    timings.backend_ms = backend_before
    if value is None:
        raise GenerationError(
            f"{guarded.name} gave an invalid {what} twice: {'; '.join(second_problems[:3])}"
        )
    if guarded.metrics is not None:
        guarded.metrics.backend_requests.labels(guarded.name, request.task, "repaired").inc()
    return value, True
