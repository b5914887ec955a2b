"""Skip rules, batched extraction, reflection, and the procedural backend's answers.

The writer runs over the real MemoryService on an in-memory store (what the
writer needs of Chroma is add and "since the last reflection"; Chroma itself
is covered by tests/test_memory.py), with the scripted backend behind the
real guard, so every backend call is counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from app.backends.base import JSONReply, JSONRequest
from app.backends.procedural import ProceduralBackend
from app.backends.procedural_memory import extract_memories, fact_signals, reflect
from app.errors import BackendCapabilityError, ConfigError
from app.models import MEMORY_TASK, REFLECTION_TASK
from app.services.extraction import MemoryWriter, SkipRules, WriterOptions
from app.services.memory import MemoryService
from app.store.memory_store import Memory, Owners, visible
from tests.conftest import FakeSleep, make_settings
from tests.doubles import FakeClock, ScriptedBackend, guarded, invalid_reply, until

NOW = 1_800_000_000.0

# (message, skipped?) in both directions; the kept ones each state a fact.
SKIP_TABLE: list[tuple[str, bool]] = [
    ("Hello!", True),
    ("Hi there.", True),
    ("Hey, how are you?", True),
    ("Good morning!", True),
    ("Greetings, traveller.", True),
    ("Well met, stranger.", True),
    ("Thanks!", True),
    ("Thank you so much.", True),
    ("Cheers, mate.", True),
    ("Bye!", True),
    ("Farewell and safe travels.", True),
    ("See you later.", True),
    ("Take care.", True),
    ("Hmm...", True),
    ("Haha", True),
    ("I'm fine, thanks. And you?", True),
    ("Nice to meet you.", True),
    ("How's it going?", True),
    ("What's up?", True),
    ("Welcome back!", True),
    ("You're welcome.", True),
    ("Oh.", True),
    ("Good day to you, sir.", True),
    ("Fair enough.", True),
    ("", True),
    ("Hello, I'm Tom.", False),  # a name
    ("Hi! My sister lives in Harrow Bay.", False),  # family, a place
    ("Thanks, I owe you 5 gold.", False),  # a number, a debt
    ("Bye, I'll be back tomorrow.", False),  # a promise
    ("Good morning, Bran!", False),  # a name: kept, harmless
    ("I promise to bring the herbs.", False),
    ("Meet me at the docks at midnight.", False),  # a place
    ("I'm from Saltmere.", False),
    ("Yes.", False),  # after a question, an answer
    ("No.", False),
    ("Okay, deal.", False),
    ("I hate rats.", False),  # a preference
    ("There are three guards at the gate.", False),  # a number, a place
    ("Don't tell anyone.", False),  # a secret
    ("Bandits attacked the caravan.", False),  # danger
    ("Call me Red.", False),
    ("How are you, Elena?", False),
    ("I'm fine. My leg is broken though.", False),
    ("Thank you for saving my daughter.", False),
    ("See you at the Rusty Anchor.", False),
    ("Where do you live?", False),
    ("I will have your sword ready by Friday.", False),
    ("hello hello hello hello hello hello hello hello hello hello hello hello hello hello", False),
]


@pytest.mark.parametrize(("message", "skipped"), SKIP_TABLE)
def test_skip_rules_keep_small_talk_out_and_every_fact_in(message: str, skipped: bool) -> None:
    assert (SkipRules().reason(message) is not None) is skipped


def test_the_skip_table_is_big_enough_both_ways() -> None:
    assert sum(1 for _, s in SKIP_TABLE if s) >= 15
    assert sum(1 for _, s in SKIP_TABLE if not s) >= 15


def test_skip_rules_are_configurable_and_checked() -> None:
    rules = SkipRules([r"ahoy( matey)?"])
    assert rules.reason("Ahoy, matey!") == r"ahoy( matey)?"
    assert rules.reason("Hello!") is None
    # A fact is never skipped, even by a pattern that would swallow anything.
    assert SkipRules([r".*"]).reason("My brother is 40.") is None
    with pytest.raises(ConfigError, match="not a regular expression"):
        SkipRules([r"(unclosed"])
    settings = make_settings(Path("unused"))
    assert SkipRules.from_settings(settings).patterns == settings.memory_skip_patterns


# -- the procedural backend ---------------------------------------------------------
def test_procedural_extraction_keeps_facts_in_the_third_person() -> None:
    messages = [
        {"role": "user", "content": "Hello there! My sister lives in Harrow Bay."},
        {"role": "assistant", "content": "I will have your sword ready by Friday."},
        {"role": "user", "content": "Can you keep a secret? I hid 30 gold coins under the mill."},
        {"role": "user", "content": "I like apples. Nice weather."},
    ]
    result = extract_memories({"messages": messages, "player": "Tom"})
    assert result == {
        "memories": [
            {"text": "Tom said their sister lives in Harrow Bay.", "importance": 7},
            {"text": "I told Tom: I will have their sword ready by Friday.", "importance": 8},
            {"text": "Tom said they hid 30 gold coins under the mill.", "importance": 9},
            {"text": "Tom said they like apples.", "importance": 5},
        ]
    }
    # "Can you keep a secret?" states nothing: recalled later, a question outranked
    # the answer the player wanted ("ada asked: Who poisoned Tertia, do I think?").
    assert extract_memories({"messages": messages, "player": "Tom"}) == result  # deterministic
    nameless = extract_memories({"messages": messages[:1]})
    assert nameless["memories"][0]["text"] == "The player said their sister lives in Harrow Bay."
    assert extract_memories({"messages": [{"role": "user", "content": "Hi!"}]}) == {"memories": []}


def test_procedural_importance_rules() -> None:
    def rated(text: str) -> int:
        found = extract_memories({"messages": [{"role": "user", "content": text}]})
        return int(found["memories"][0]["importance"])

    assert rated("Wolves attacked the farm last night.") >= 9  # danger
    assert rated("Don't tell anyone about the letter.") == 8  # a secret
    assert rated("I promise to return the book.") == 8
    assert rated("I love honey cakes.") == 5  # a preference
    assert rated("My boots are new.") == 4  # a possession
    assert fact_signals("How are you?") == frozenset()


def test_procedural_reflection_draws_on_the_most_important_memories() -> None:
    memories = [
        {"text": "The player said they like apples.", "importance": 5},
        {"text": "The player said bandits attacked the mill.", "importance": 9},
        {"text": "I told the player: I will keep their secret.", "importance": 8},
        {"text": "The player said they love pears.", "importance": 5},
    ]
    result = reflect({"memories": memories})
    assert result == reflect({"memories": memories})
    texts = [r["text"] for r in result["reflections"]]
    assert 1 <= len(texts) <= 3
    assert texts[0] == (
        "Trouble is close and I should be wary: the player said bandits attacked the mill."
    )
    assert any("keep their secret" in text for text in texts)
    assert result["reflections"][0]["importance"] == 10
    assert reflect({"memories": []}) == {"reflections": []}


async def test_the_procedural_backend_answers_both_tasks(tmp_path: Path) -> None:
    backend = ProceduralBackend(make_settings(tmp_path))
    request = JSONRequest(
        task=MEMORY_TASK,
        messages=[],
        schema={},
        inputs={"messages": [{"role": "user", "content": "My name is Ysolde."}]},
    )
    reply = await backend.complete_json(request)
    said = {"text": "The player said their name is Ysolde.", "importance": 6}
    assert reply.data == {"memories": [said]}
    reflection = await backend.complete_json(
        JSONRequest(
            task=REFLECTION_TASK,
            messages=[],
            schema={},
            inputs={"memories": reply.data["memories"]},
        )
    )
    assert reflection.data["reflections"][0]["text"].startswith("I should remember who is who")


# -- the writer -----------------------------------------------------------------------
class ListStore:
    """What the writer needs of the memory store, in a dict."""

    def __init__(self) -> None:
        self.memories: dict[str, Memory] = {}
        self.writes = 0

    def add(self, memories: Sequence[Memory], embeddings: Any = None) -> None:
        self.writes += 1
        self.memories.update({m.id: m for m in memories})

    def since(
        self,
        npc_id: str,
        after: float | None,
        kinds: Sequence[str],
        *,
        texts: bool = False,
        owners: Owners = None,
    ) -> list[Memory]:
        return [
            m
            for m in self.memories.values()
            if m.npc_id == npc_id
            and m.kind in kinds
            and (after is None or m.created_at > after)
            and visible(m, owners)
        ]

    def newest_created(self, npc_id: str, kind: str, owners: Owners = None) -> float | None:
        times = [
            m.created_at
            for m in self.memories.values()
            if m.npc_id == npc_id and m.kind == kind and visible(m, owners)
        ]
        return max(times) if times else None


FACTS = [
    "My sister lives in Harrow Bay.",
    "I owe the miller 12 crowns.",
    "Don't tell anyone, but I found a map.",
    "I will come back tomorrow.",
]


def memories_reply(*items: tuple[str, int]) -> JSONReply:
    data = {"memories": [{"text": text, "importance": importance} for text, importance in items]}
    return JSONReply(raw=json.dumps(data), data=data)


def reflections_reply(*texts: str) -> JSONReply:
    data = {"reflections": [{"text": text, "importance": 7} for text in texts]}
    return JSONReply(raw=json.dumps(data), data=data)


class Setup:
    def __init__(self, fake_sleep: FakeSleep, **options: Any) -> None:
        self.clock = FakeClock(NOW)
        self.store = ListStore()
        self.memory = MemoryService(lambda: self.store, clock=self.clock)  # type: ignore[arg-type, return-value]
        self.backend = ScriptedBackend()
        self.guarded = guarded(self.backend, fake_sleep)
        values: dict[str, Any] = {"every": 4, "reflection_threshold": 1000}
        values.update(options)
        self.writer = MemoryWriter(
            self.memory, lambda name: self.guarded, options=WriterOptions(**values)
        )

    async def say(self, *texts: str, player: str | None = "Tom") -> list[list[Memory]]:
        results = []
        for i, text in enumerate(texts):
            role = "user" if i % 2 == 0 else "assistant"
            results.append(
                await self.writer.observe("npc-1", player, {"role": role, "content": text})
            )
        return results

    def tasks(self) -> list[str]:
        return [request.task for request in self.backend.history]


@pytest.fixture
async def setup(fake_sleep: FakeSleep) -> AsyncIterator[Setup]:
    made = Setup(fake_sleep)
    yield made
    await made.memory.aclose()


async def test_k_messages_make_exactly_one_backend_call(setup: Setup) -> None:
    setup.backend.enqueue(memories_reply(("Tom's sister lives in Harrow Bay.", 6)))
    results = await setup.say(*FACTS)
    assert results[:3] == [[], [], []] and len(setup.backend.history) == 1
    request = setup.backend.history[0]
    assert request.task == MEMORY_TASK
    assert [m["content"] for m in request.inputs["messages"]] == FACTS
    assert [m["role"] for m in request.inputs["messages"]] == ["user", "assistant"] * 2
    assert "data, never instructions" in request.messages[0]["content"]
    (stored,) = results[3]
    assert (stored.text, stored.importance, stored.kind, stored.player) == (
        "Tom's sister lives in Harrow Bay.",
        6,
        "dialogue",
        "Tom",
    )
    assert setup.store.writes == 1 and setup.writer.pending("npc-1", "Tom") == 0


async def test_small_talk_never_reaches_the_call(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="app.services.extraction"):
        results = await setup.say("Hello!", "Welcome, traveller.", "How are you?", "Thanks!")
    assert results == [[], [], [], []] and setup.backend.history == []  # nothing to extract
    assert setup.writer.skipped == 4
    assert sum("skipped as small talk" in r.getMessage() for r in caplog.records) == 4
    setup.backend.enqueue(memories_reply())
    await setup.say("Fine, thanks.", FACTS[0], "Bye!", FACTS[1])  # "Fine, thanks." is kept
    assert [m["content"] for m in setup.backend.history[0].inputs["messages"]] == [
        "Fine, thanks.",
        FACTS[0],
        FACTS[1],
    ]


async def test_a_conversations_end_flushes_what_is_left_in_one_call(setup: Setup) -> None:
    setup.backend.enqueue(memories_reply(("Tom owes the miller 12 crowns.", 7)))
    await setup.say(*FACTS[:2])
    assert setup.backend.history == []
    stored = await setup.writer.flush("npc-1", "Tom")
    assert [m.text for m in stored] == ["Tom owes the miller 12 crowns."]
    assert len(setup.backend.history) == 1
    assert await setup.writer.flush("npc-1", "Tom") == []  # nothing left: no call
    assert len(setup.backend.history) == 1


async def test_a_failed_extraction_keeps_its_messages_for_the_next_flush(setup: Setup) -> None:
    setup.backend.enqueue(BackendCapabilityError("scripted:test", "down for maintenance"))
    assert (await setup.say(*FACTS))[-1] == []
    assert setup.writer.pending("npc-1", "Tom") == 4 and setup.writer.failures == 1
    setup.backend.enqueue(memories_reply(("Tom found a map.", 8)))
    await setup.say("I'm taking the north road.")
    stored = await setup.writer.flush("npc-1", "Tom")
    assert [m.text for m in stored] == ["Tom found a map."]
    retried = setup.backend.history[1].inputs["messages"]
    assert [m["content"] for m in retried] == [*FACTS, "I'm taking the north road."]


async def test_an_invalid_reply_gets_one_repair_call(setup: Setup) -> None:
    setup.backend.enqueue(invalid_reply('{"memories": "none"}'), memories_reply(("A map.", 3)))
    stored = (await setup.say(*FACTS))[-1]
    assert [m.text for m in stored] == ["A map."]
    assert len(setup.backend.history) == 2 and setup.backend.history[1].inputs["repair"] is True


async def test_importances_are_clamped_and_empty_texts_refused(setup: Setup) -> None:
    setup.backend.enqueue(memories_reply(("A dragon!", 14), ("A pebble.", 0), ("Half.", 4.6)))  # type: ignore[arg-type]
    stored = (await setup.say(*FACTS))[-1]
    clamped = [("A dragon!", 10), ("A pebble.", 1), ("Half.", 5)]
    assert [(m.text, m.importance) for m in stored] == clamped


async def test_a_cancelled_flush_loses_no_message(setup: Setup) -> None:
    setup.backend.hold = asyncio.Event()
    await setup.say(*FACTS[:3])
    task = asyncio.get_running_loop().create_task(setup.writer.flush("npc-1", "Tom"))
    await until(lambda: setup.backend.in_flight == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert setup.writer.pending("npc-1", "Tom") == 3


async def test_a_batch_carries_each_message_cut_to_the_memory_limit(
    fake_sleep: FakeSleep,
) -> None:
    setup = Setup(fake_sleep, max_chars=40)
    setup.backend.enqueue(memories_reply())
    await setup.say(*(fact + " " + "and so on " * 50 for fact in FACTS))
    sent = [m["content"] for m in setup.backend.history[0].inputs["messages"]]
    assert [len(text) for text in sent] == [40] * 4 and sent[0].startswith(FACTS[0])
    await setup.memory.aclose()


async def test_buffers_are_per_npc_and_player(setup: Setup) -> None:
    await setup.say(FACTS[0], player="Ann")
    await setup.say(FACTS[1], player=None)
    assert setup.writer.pending("npc-1", "Ann") == 1
    assert setup.writer.pending("npc-1", None) == 1
    assert setup.writer.pending("npc-1", "Tom") == 0


async def test_reflection_comes_when_the_importance_adds_up(fake_sleep: FakeSleep) -> None:
    setup = Setup(fake_sleep, reflection_threshold=15)
    setup.backend.enqueue(memories_reply(("Tom found a map.", 8)))
    await setup.say(*FACTS)
    assert setup.tasks() == [MEMORY_TASK]  # 8 < 15: no reflection yet
    assert await setup.memory.importance_since_reflection("npc-1") == 8

    setup.clock.now += 60
    setup.backend.enqueue(
        memories_reply(("Tom owes the miller 12 crowns.", 7)),
        reflections_reply("Tom is in debt and hiding something."),
    )
    stored = (await setup.say(*FACTS))[-1]
    assert setup.tasks() == [MEMORY_TASK, MEMORY_TASK, REFLECTION_TASK]
    reflection = setup.backend.history[2]
    assert [m["text"] for m in reflection.inputs["memories"]] == [
        "Tom found a map.",
        "Tom owes the miller 12 crowns.",
    ]
    assert [(m.kind, m.text) for m in stored] == [
        ("dialogue", "Tom owes the miller 12 crowns."),
        ("reflection", "Tom is in debt and hiding something."),
    ]
    assert stored[1].player is None  # shared by every player's conversations
    assert len(stored[1].metadata["sources"]) == 2
    assert await setup.memory.importance_since_reflection("npc-1") == 0

    setup.clock.now += 60
    setup.backend.enqueue(memories_reply(("Tom is leaving.", 5)))
    await setup.say(*FACTS)
    assert await setup.memory.importance_since_reflection("npc-1") == 5
    assert setup.tasks()[-1] == MEMORY_TASK
    await setup.memory.aclose()


async def test_a_failed_reflection_is_tried_again_after_the_next_extraction(
    fake_sleep: FakeSleep,
) -> None:
    setup = Setup(fake_sleep, reflection_threshold=10)
    setup.backend.enqueue(
        memories_reply(("Tom found a map.", 8), ("Bandits are near.", 9)),
        BackendCapabilityError("scripted:test", "no"),
    )
    stored = (await setup.say(*FACTS))[-1]
    assert [m.kind for m in stored] == ["dialogue", "dialogue"] and setup.writer.failures == 1
    setup.clock.now += 60
    setup.backend.enqueue(memories_reply(), reflections_reply("Danger follows Tom."))
    await setup.say(FACTS[0])
    stored = await setup.writer.flush("npc-1", "Tom")
    assert [(m.kind, m.text) for m in stored] == [("reflection", "Danger follows Tom.")]
    assert setup.tasks() == [MEMORY_TASK, REFLECTION_TASK, MEMORY_TASK, REFLECTION_TASK]
    await setup.memory.aclose()


async def test_the_procedural_backend_extracts_and_reflects_end_to_end(
    fake_sleep: FakeSleep, tmp_path: Path
) -> None:
    clock = FakeClock(NOW)
    store = ListStore()
    memory = MemoryService(lambda: store, clock=clock)  # type: ignore[arg-type, return-value]
    backend = guarded(ProceduralBackend(make_settings(tmp_path)), fake_sleep)
    writer = MemoryWriter(
        memory, lambda name: backend, options=WriterOptions(every=4, reflection_threshold=20)
    )
    said = [
        "Hello!",
        "Welcome to the Drowned Lantern.",
        "My brother Aldo was killed by bandits on the east road.",
        "I swear I will help you find them.",
    ]
    stored: list[Memory] = []
    for i, text in enumerate(said):
        role = "user" if i % 2 == 0 else "assistant"
        stored += await writer.observe("npc-p", "Mira", {"role": role, "content": text})
    kinds = [m.kind for m in stored]
    assert kinds.count("dialogue") == 3 and 1 <= kinds.count("reflection") <= 3
    texts = [m.text for m in stored]
    assert "Mira said their brother Aldo was killed by bandits on the east road." in texts
    assert "I told Mira: I swear I will help them find them." in texts
    first_reflection = next(m for m in stored if m.kind == "reflection")
    assert first_reflection.text == (
        "Trouble is close and I should be wary: "
        "Mira said their brother Aldo was killed by bandits on the east road."
    )
    await memory.aclose()


FACTS_TO_ADD = (
    " I owe you 3 crowns.",
    " My sister is ill.",
    " I'm Bran.",
    " Meet me at the mill.",
    " I promise.",
    " Tell no one.",
)


@pytest.mark.parametrize("fact", FACTS_TO_ADD)
def test_small_talk_with_a_fact_in_it_is_kept(fact: str) -> None:
    rules = SkipRules()
    for message, skipped in SKIP_TABLE:
        if skipped and message:
            assert rules.reason(message + fact) is None, message + fact
