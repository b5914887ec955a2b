"""Dialogue test doubles: a backend that writes recognisable lines and records its
calls, NPCs to write for, and a fake-server responder that answers dialogue prompts.

``python -m tests.dialogue_fixtures --latency 0.05`` serves the fake OpenAI server
with that responder in its own process (benchmarks/dialogue.py uses it).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from typing import Any

from app.backends.base import Backend, JSONReply, JSONRequest
from app.errors import BackendError
from app.models import NPC
from config import BackendKind
from tests.npc_fixtures import valid_profile

_ASK = re.compile(r'^- id "([^"]+)": (.+?) \((\d+) variants?\)', re.M)


def make_npc(name: str = "Maud Hobb", world: str = "Saltmere", **changes: Any) -> NPC:
    """A library NPC (its id from its name, so an edited copy keeps it)."""
    fields = {**valid_profile(name), **changes}
    slug = name.lower().replace(" ", "-")
    return NPC(**fields, id=f"npc-{slug}", world=world, backend="procedural:v1", seed=1)


def written_line(npc: str, situation: str, variant: int, take: int = 0) -> str:
    return f"{npc} on {situation}, variant {variant}" + (f", take {take}" if take else "")


def lines_for(inputs: Mapping[str, Any]) -> dict[str, Any]:
    npc = str(inputs["npc"]["name"])
    take = int(inputs.get("take") or 0)
    return {
        "lines": [
            {
                "id": s["id"],
                "variants": [written_line(npc, s["situation"], v, take) for v in s["variants"]],
            }
            for s in inputs["situations"]
        ]
    }


class LinesBackend(Backend):
    """Writes ``written_line`` for every variant asked; records each request.

    ``fail_for`` names NPCs whose calls raise ``error`` (``failures_left`` times,
    or always); ``omit`` situations the
    reply leaves out; ``hold`` (when set) keeps calls in flight until it is set.
    """

    supports_schema = True

    def __init__(self, name: str = "scripted:lines", kind: BackendKind = "remote") -> None:
        self._name = name
        self.kind = kind  # type: ignore[misc]
        self.history: list[JSONRequest] = []
        self.fail_for: set[str] = set()
        self.error: BackendError = BackendError(name, "the server said no (HTTP 400)")
        self.failures_left: int | None = None  # None: fail_for fails every time
        self.omit: set[str] = set()
        self.hold: asyncio.Event | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._arrivals: asyncio.Condition | None = None

    async def wait_for_calls(self, count: int) -> None:
        """Until ``count`` calls have arrived (no polling, no wall clock)."""
        self._arrivals = self._arrivals or asyncio.Condition()
        async with self._arrivals:
            await self._arrivals.wait_for(lambda: len(self.history) >= count)

    @property
    def name(self) -> str:
        return self._name

    def situations(self) -> list[list[tuple[str, int]]]:
        """Per call, the (situation, variant) pairs it asked for."""
        return [
            [(s["situation"], v) for s in r.inputs["situations"] for v in s["variants"]]
            for r in self.history
        ]

    async def complete_json(self, request: JSONRequest) -> JSONReply:
        self.history.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self._arrivals is not None:
            async with self._arrivals:
                self._arrivals.notify_all()
        try:
            if self.hold is not None:
                await self.hold.wait()
            await asyncio.sleep(0)
            if request.inputs["npc"]["name"] in self.fail_for and self.failures_left != 0:
                if self.failures_left is not None:
                    self.failures_left -= 1
                raise self.error
            data = lines_for(request.inputs)
            data["lines"] = [e for e in data["lines"] if not self._omitted(request, e["id"])]
            return JSONReply(raw=json.dumps(data), data=data)
        finally:
            self.in_flight -= 1

    def _omitted(self, request: JSONRequest, ask_id: str) -> bool:
        asked = {s["id"]: s["situation"] for s in request.inputs["situations"]}
        return asked[ask_id] in self.omit


def dialogue_responder(body: dict[str, Any]) -> str:
    """The fake server's answer to a dialogue prompt: every id with its variants."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    character = re.search(r"^Character: ([^,]+),", user, re.M)
    npc = character.group(1) if character else "Someone"
    lines = [
        {
            "id": ask_id,
            "variants": [f"{npc}, {situation}, take {n}." for n in range(1, int(count) + 1)],
        }
        for ask_id, situation, count in _ASK.findall(user)
    ]
    return json.dumps({"lines": lines})


def main() -> None:
    import argparse

    from tests.fake_openai import FakeOpenAIServer

    parser = argparse.ArgumentParser(description="fake OpenAI server answering dialogue prompts")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    server = FakeOpenAIServer(latency=args.latency, responder=dialogue_responder)
    print(server.base_url, flush=True)
    server.http.serve_here()


if __name__ == "__main__":
    main()
