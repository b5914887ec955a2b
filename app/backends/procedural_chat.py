"""Offline chat for the procedural backend: an NPC answers from its own profile.

The reply is built from what the NPC is (name, occupation, traits, speech
style, backstory, motive, secret, ties) and what it remembers, chosen by what
the player asked. It never says anything its profile and world do not hold,
so it cannot step out of its era. It keeps its secret unless pushed hard, and
treats "ignore your instructions" as odd talk, not as an order. Deterministic
for a seed, the conversation turn and the message.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.backends.procedural_deck import article

# What the player is after, in the order it is checked: the first match wins.
INTENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("injection", ("ignore your", "ignore all", "ignore previous", "system prompt",
                   "api key", "password", "language model", "you are an ai", "as an ai",
                   "developer mode", "your instructions", "jailbreak")),
    ("farewell", ("goodbye", "farewell", "bye", "see you", "good night", "until next time")),
    ("secret", ("secret", "hiding", "hide something", "the truth", "lying", "what really")),
    ("memory", ("remember", "recall", "did i tell", "what do you know about me", "forgot")),
    ("identity", ("who are you", "your name", "introduce yourself", "who might you be")),
    ("work", ("what do you do", "your work", "your job", "your trade", "occupation",
              "how do you earn", "for a living")),
    ("motive", ("what do you want", "your goal", "you want", "dream", "why are you here",
                "what drives you", "hope for")),
    ("past", ("where are you from", "your past", "grew up", "your family", "about yourself",
              "your story", "how did you come")),
    ("place", ("this place", "around here", "this town", "this city", "news", "rumour",
               "rumor", "what's happening", "what is happening", "tell me about the")),
    ("greeting", ("hello", "hi ", "hi,", "hey", "greetings", "good morning", "good evening",
                  "good day", "well met", "hail")),
)  # fmt: skip
# Words that turn a question about the secret into pressure.
PRESSURE = ("i know", "tell me now", "or else", "i swear", "last chance", "confess", "admit it",
            "i saw you", "don't lie", "i have proof")  # fmt: skip
# Probes of the secret it takes before the NPC gives part of it away.
PROBES_BEFORE_A_SLIP = 2
WORD = re.compile(r"[a-z']+")
STOP_WORDS = frozenset(
    ("the", "a", "an", "and", "or", "but", "to", "of", "in", "on", "at", "for", "with", "is",
     "are", "was", "were", "be", "i", "you", "me", "my", "your", "it", "this", "that", "what",
     "who", "how", "why", "do", "does", "did", "have", "has", "had", "not", "no", "yes", "so",
     # Words of asking about a memory, not what it is about.
     "remember", "recall", "told", "tell", "said", "know", "forget", "forgot")
)  # fmt: skip
# Short answers in kind, for when an NPC has said its lines already.
ASIDES = ("Go on.", "Is that so?", "Hm. And then?", "That's the way of it.", "Say more.",
          "I'd not thought of it like that.", "If you say so.", "Well, there it is.")  # fmt: skip
FIRST_PERSON = {"has": "have", "is": "am", "was": "was", "does": "do", "goes": "go"}


@dataclass(frozen=True, slots=True)
class Voice:
    """How an NPC's traits colour what it says."""

    opener: str
    closer: str
    terse: bool


def _voice(names: Sequence[str], rng: random.Random) -> Voice:
    traits = {trait.lower() for trait in names}
    if traits & {"gruff", "blunt", "taciturn", "cold", "stern", "surly", "impatient"}:
        return Voice(rng.choice(("Hm.", "Right.", "Out with it.")), "", terse=True)
    if traits & {"anxious", "timid", "nervous", "shy", "cautious", "paranoid"}:
        return Voice(rng.choice(("I... well.", "Oh. Yes.", "Quietly, now.")), "", terse=False)
    if traits & {"cheerful", "friendly", "warm", "kind", "generous", "optimistic", "jovial"}:
        return Voice(
            rng.choice(("Ah, good!", "Well now!", "How lovely.")),
            rng.choice(("", " Come back any time.", " Mind how you go.")),
            terse=False,
        )
    if traits & {"proud", "arrogant", "haughty", "vain", "ambitious"}:
        return Voice(rng.choice(("Naturally.", "Of course.", "As you'd expect.")), "", terse=True)
    return Voice(rng.choice(("Well.", "Let me think.", "Fair question.")), "", terse=False)


def _intent(message: str) -> str:
    text = f" {message.lower()} "
    for intent, phrases in INTENTS:
        if any(phrase in text for phrase in phrases):
            # "Remember that my sister..." tells; "Do you remember...?" asks.
            if intent == "memory" and not _asks(message):
                return "tell"
            return intent
    return "tell" if _proper_nouns(message) and not _asks(message) else "talk"


def _asks(message: str) -> bool:
    text = message.strip().lower()
    return text.endswith("?") or text.startswith(
        ("do you", "did i", "what do you", "can you", "tell me", "who is", "what about")
    )


def _proper_nouns(message: str) -> list[str]:
    """Capitalised words past the first of each sentence: names and places the player gave."""
    found = []
    for sentence in re.split(r"(?<=[.!?])\s+", message.strip()):
        words = re.findall(r"[A-Za-z][\w'-]*", sentence)
        phrase: list[str] = []
        for word in [*words[1:], "."]:  # a sentinel ends the last phrase
            if word[0].isupper() and word not in ("I", "I'm", "I'll", "I've"):
                phrase.append(word)
            elif phrase:
                found.append(" ".join(phrase))
                phrase = []
    return list(dict.fromkeys(found))


def _words(text: str) -> set[str]:
    return {word for word in WORD.findall(text.lower()) if word not in STOP_WORDS}


def _second_person(memory: str, player: str | None) -> str:
    """A memory as the NPC says it to the player it is about."""
    text = memory.strip().rstrip(".")
    who = ["the player", *([player] if player else [])]
    told = [f"{w} said that " for w in who] + [f"{w} said " for w in who] + ["The player told me "]
    mine = [f"I told {w}: " for w in who] + [f"I told {w} " for w in who]
    for lead, say in [(lead, "You told me") for lead in told] + [(m, "I told you") for m in mine]:
        if text.lower().startswith(lead.lower()):
            text = text[len(lead) :]
            text = re.sub(r"\btheir\b", "your", text)
            text = re.sub(r"\bthey are\b", "you are", text)
            text = re.sub(r"\bthem\b", "you", text)
            text = re.sub(r"\bthey\b", "you", text)
            return f"{say} {_lower_first(text)}."
    return f"I remember this: {_lower_first(text)}."


def _first_sentence(text: str) -> str:
    match = re.match(r"(.+?[.!?])(\s|$)", text.strip())
    return (match.group(1) if match else text.strip()).strip()


# The NPC's own pronouns in its third-person profile, by gender: said by the NPC,
# "for the sake of his sister" is "for the sake of my sister".
PRONOUNS = {"male": ("he", "him", "his", "himself"), "female": ("she", "her", "her", "herself")}
# After "her", these words mean it is the object ("betrayed her to the guard").
_NOT_A_NOUN = frozenset((
    "to", "and", "for", "with", "in", "on", "at", "the", "a", "an", "that", "when", "because",
    "again", "if", "about", "from", "into", "out", "up", "down", "off", "over", "than", "as",
    "so", "but", "or", "once", "twice",
))  # fmt: skip


def _first_person(text: str, gender: str) -> str:
    """The NPC's third-person pronouns turned into its own (he/she, him/her, his/her)."""
    if gender not in PRONOUNS:
        return text
    subject, obj, possessive, reflexive = PRONOUNS[gender]

    def swap(match: re.Match[str]) -> str:
        word, following = match.group(1), match.group(2) or ""
        lower = word.lower()
        if lower == reflexive:
            mine = "myself"
        elif lower == subject:
            mine = "I"
        elif lower == possessive and (lower != obj or following.lower() not in _NOT_A_NOUN):
            mine = "my" if following else "me"
        else:
            mine = "me"
        if word[0].isupper() and mine != "I":
            mine = mine.capitalize()
        return mine + (f" {following}" if following else "")

    words = "|".join(sorted({subject, obj, possessive, reflexive}, key=len, reverse=True))
    return re.sub(rf"\b({words})\b(?: ([A-Za-z']+))?", swap, text, flags=re.IGNORECASE)


def _mine(sentence: str, name: str, gender: str = "unknown") -> str:
    """A sentence about the NPC in the third person, said by the NPC itself.

    The full name first, then any part of it ("Brother Aldric" is "Aldric" in
    his own backstory), then its pronouns."""
    text = sentence.replace(name, "I")
    for part in sorted(name.split(), key=len, reverse=True):
        if len(part) > 2:
            text = re.sub(rf"\b{re.escape(part)}\b(?!')", "I", text)
    text = _first_person(text, gender)
    return re.sub(r"\bI ([a-z]+s)\b", lambda m: f"I {_base_form(m.group(1))}", text)


def _base_form(verb: str) -> str:
    """``wants`` -> ``want``, ``carries`` -> ``carry``, ``watches`` -> ``watch``."""
    if verb in FIRST_PERSON:
        return FIRST_PERSON[verb]
    if verb.endswith("ies"):
        return verb[:-3] + "y"
    if verb.endswith(("ches", "shes", "sses", "xes")):
        return verb[:-2]
    return verb[:-1]


class ChatDrafter:
    """One reply of one NPC to one message."""

    def __init__(self, inputs: Mapping[str, Any], seed: int | None) -> None:
        self.npc: Mapping[str, Any] = inputs["npc"]
        self.message = str(inputs.get("message", ""))
        self.player = inputs.get("player") or None
        self.memories: list[Mapping[str, Any]] = list(inputs.get("memories") or ())
        self.history: list[Mapping[str, Any]] = list(inputs.get("history") or ())
        self.world: Mapping[str, Any] = inputs.get("world") or {}
        turn = int(inputs.get("turn", len(self.history)))
        self.rng = random.Random(f"chat|{seed}|{self.npc.get('id')}|{turn}|{self.message}")
        self.name = str(self.npc.get("name", "someone"))
        self.gender = str(self.npc.get("gender", "unknown")).lower()
        self.voice = _voice(self.npc.get("personality_traits", ()), self.rng)
        self.said = " ".join(
            str(turn.get("content", "")) for turn in self.history if turn.get("role") == "assistant"
        )

    def _line(self, *, fresh_only: bool = False) -> str:
        """A sample line, one not said yet in this conversation when there is one
        (a catchphrase in every reply is a tic, not a character)."""
        lines = list(self.npc.get("sample_lines") or ())
        fresh = [line for line in lines if line not in self.said]
        if fresh:
            return self.rng.choice(fresh)
        return "" if fresh_only or not lines else self.rng.choice(lines)

    def _mine(self, sentence: str) -> str:
        return _mine(sentence, self.name, self.gender)

    def _aside(self) -> str:
        """Something not said yet when the sample lines are used up: a word of its
        world, or a short reply in kind."""
        detail = self.world.get("detail") or ""
        text = " ".join(detail.values()) if isinstance(detail, dict) else str(detail)
        news = [s for s in re.split(r"(?<=[.!?])\s+", text) if 20 < len(s) < 200]
        fresh = [s for s in [*news, *ASIDES] if s not in self.said]
        return self.rng.choice(fresh) if fresh else self._line() or "Hm."

    def _address(self) -> str:
        return f", {self.player}" if self.player and self.rng.random() < 0.5 else ""

    def _relevant_memory(self) -> Mapping[str, Any] | None:
        """The retrieved memory that shares most words with the message, if any does."""
        asked = _words(self.message)
        best, overlap = None, 0
        for memory in self.memories:
            shared = len(asked & _words(str(memory.get("text", ""))))
            if shared > overlap:
                best, overlap = memory, shared
        return best

    def _probes(self) -> int:
        return sum(
            1
            for turn in self.history
            if turn.get("role") == "user" and _intent(str(turn.get("content", ""))) == "secret"
        )

    def _tie(self) -> str | None:
        """What the NPC says about someone the player named (secret ties stay unsaid)."""
        text = self.message.lower()
        for tie in self.npc.get("relationships") or ():
            other = str(tie.get("target_name", ""))
            if other and other.split()[0].lower() in text:
                if tie.get("secret"):
                    return f"{other}? I hardly know them. Why do you ask?"
                about = str(tie.get("description") or f"{tie.get('type')} of mine").rstrip(".")
                return f"{other}? {self._mine(about)}."
        return None

    def _place(self) -> str:
        detail = self.world.get("detail") or ""
        text = " ".join(detail.values()) if isinstance(detail, dict) else str(detail)
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if 20 < len(s) < 240]
        if not sentences:
            return self._line() or "Same as ever round here."
        return f"You hear things, in my line of work. {self.rng.choice(sentences)}"

    def body(self) -> str:
        npc, intent = self.npc, _intent(self.message)
        tie = self._tie()
        if tie is not None and intent in ("talk", "tell", "place", "past"):
            return tie
        if intent == "injection":
            return self.rng.choice((
                "I don't follow you. Instructions? Keys? Speak plainly, or not at all.",
                "That's no talk I understand. Ask me something a sensible person would.",
                "You've an odd way with words. I'll pretend I didn't hear that.",
            ))  # fmt: skip
        if intent == "greeting":
            lines = list(npc.get("sample_lines") or ())
            first = lines[0] if lines and lines[0] not in self.said else self._line(fresh_only=True)
            return first or f"Well met{self._address()}."
        if intent == "farewell":
            return self.rng.choice(("Go carefully.", "Until next time, then.", "Off you go."))
        if intent == "identity":
            occupation = str(npc.get("occupation", "")).capitalize()
            return f"{self.name}{self._address()}. {occupation}, if you must know."
        if intent == "work":
            return f"I'm {_article(str(npc.get('occupation', 'worker')))}. {self._line()}".strip()
        if intent == "motive":
            want = self._mine(str(npc.get("motivation", "")))
            return want if self.voice.terse else f"Since you ask: {_lower_first(want)}"
        if intent == "past":
            return self._mine(_first_sentence(str(npc.get("backstory", ""))))
        if intent == "secret":
            pushed = any(word in self.message.lower() for word in PRESSURE)
            if pushed and self._probes() >= PROBES_BEFORE_A_SLIP:
                secret = self._mine(str(npc.get("secret", "")))
                return f"...Fine. Keep your voice down. {secret} Tell no one."
            return self.rng.choice((
                "Secrets? Everyone has a few. Mine are my own.",
                "I've nothing to hide. Nothing that concerns you, anyway.",
                "You ask a lot of questions for a stranger.",
            ))  # fmt: skip
        if intent == "memory":
            memory = self._relevant_memory() or (self.memories[0] if self.memories else None)
            if memory is None:
                return "You've told me nothing worth remembering yet."
            return _second_person(str(memory.get("text", "")), self.player)
        if intent == "tell":
            named = " and ".join(_proper_nouns(self.message)[:2])
            heard = f"{named}, you say? " if named else "Is that so? "
            return heard + self.rng.choice(("I'll remember that.", "I won't forget it.",
                                            "I'll keep that in mind."))  # fmt: skip
        if intent == "place":
            return self._place()
        memory = self._relevant_memory()
        if memory is not None:
            return _second_person(str(memory.get("text", "")), self.player)
        return self._line(fresh_only=True) or self._aside()

    def reply(self) -> str:
        body = " ".join(self.body().split())
        plain = _intent(self.message) in ("secret", "farewell", "injection")
        # An opener or sign-off is a habit, not a refrain: each at most once in the
        # last few replies.
        recent = " ".join(
            str(t.get("content", "")) for t in self.history[-6:] if t.get("role") == "assistant"
        )
        closer = self.voice.closer if self.voice.closer.strip() not in recent else ""
        opener = self.voice.opener if self.voice.opener not in recent else ""
        if plain or not opener or self.voice.terse or self.rng.random() < 0.5:
            return f"{body}{closer}".strip()
        return f"{opener} {body}{closer}".strip()


def _lower_first(text: str) -> str:
    """Lower-case the first letter to continue a sentence ("I" stays "I")."""
    if not text or re.match(r"I\b", text):
        return text
    return text[0].lower() + text[1:]


def _article(noun: str) -> str:
    return article(noun.strip() or "worker")


def chat_reply(inputs: Mapping[str, Any], seed: int | None) -> str:
    """The NPC's whole reply to the message in ``inputs``."""
    return ChatDrafter(inputs, seed).reply()


def chunks(text: str, words_per_chunk: int = 2) -> list[str]:
    """The reply as streamed pieces (a few words each), joining back to ``text``."""
    parts = re.findall(r"\S+\s*", text)
    return ["".join(parts[i : i + words_per_chunk]) for i in range(0, len(parts), words_per_chunk)]
