"""A backend whose calls wait at a gate the test controls: for stop and cancel tests."""

from __future__ import annotations

import asyncio
import itertools
import json

from app.backends.base import Backend, JSONReply, JSONRequest
from tests.npc_fixtures import valid_profile


class GateBackend(Backend):
    """The first ``open_for`` calls answer at once; later ones wait until
    ``gate`` is set. Records calls, calls in flight and cancelled calls."""

    kind = "local"
    supports_schema = True
    cache_responses = False

    def __init__(self, open_for: int = 0) -> None:
        self.open_for = open_for
        self.gate = asyncio.Event()
        self.calls = 0
        self.in_flight = 0
        self.cancelled = 0
        self._numbers = itertools.count(1)

    @property
    def name(self) -> str:
        return "gated:test"

    async def complete_json(self, request: JSONRequest) -> JSONReply:
        self.calls += 1
        self.in_flight += 1
        try:
            if self.calls > self.open_for:
                await self.gate.wait()
            profile = valid_profile(request.inputs.get("name") or f"Gated {next(self._numbers)}")
            return JSONReply(raw=json.dumps(profile), data=profile)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
