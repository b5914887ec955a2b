"""Memory extraction and reflection for the procedural backend: offline rules.

Extraction keeps the sentences of a chat that carry something worth
remembering (a name, a number, a place, a promise, a secret, a danger, a
preference, family, "my ..."), turns them into the NPC's notes in the third
person ("The player said their sister lives in Harrow Bay.", "I told the
player I will have their sword ready by Friday.") and rates them by rule:
danger, secrets and promises high, people and places middling, preferences
and possessions lower. Reflection turns the most important recent memories
into 1-3 broader notes. Both are deterministic: the same input gives the
same output, and there is no randomness to seed.

``fact_signals`` is also what the skip rules of the memory writer consult, so
a message the offline extractor would keep is never skipped as small talk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# Category -> importance; a sentence takes the highest of its categories.
IMPORTANCE: dict[str, int] = {
    "danger": 9,
    "secret": 8,
    "promise": 8,
    "family": 6,
    "name": 6,
    "place": 6,
    "number": 5,
    "plan": 5,
    "preference": 5,
    "feeling": 4,
    "possession": 4,
}
MAX_MEMORIES = 20
MAX_REFLECTIONS = 3
MAX_TEXT = 400

_WORDS: dict[str, str] = {
    "danger": r"danger\w*|kill\w*|murder\w*|dead|death|die[ds]?|dying|attack\w*|poison\w*"
    r"|threat\w*|blood|war|raid\w*|bandits?|thie(f|ves)|stole|stolen|steal\w*|curse[ds]?"
    r"|monsters?|wolves|ambush\w*|hunt(ed|ing) me|on fire|burn(ed|t|ing)|sick|plague"
    r"|wounded|hurt|run away|fled|flee|escape[ds]?|trap(ped)?|help me|beware|careful",
    "secret": r"secrets?|don'?t tell|do not tell|tell no ?one|between (us|you and me)|hid|hide"
    r"|hiding|hidden|nobody knows|no one knows|confess\w*|truth is|lied|lying|in secret",
    "promise": r"promise[ds]?|swear|swore|sworn|vow\w*|oath|owe[ds]?|debt|pay (you|me|back)"
    r"|i['’]ll|i will|we['’]ll|we will|i shall|going to|gonna|deal|agreed|by (dawn|dusk|noon"
    r"|tomorrow|tonight|monday|tuesday|wednesday|thursday|friday|saturday|sunday|the end)"
    r"|tomorrow|tonight|next (week|month|year|time)|come back|return",
    "family": r"sister|brother|mother|father|mum|mom|dad|son|daughter|wife|husband|uncle"
    r"|aunt|cousin|grand\w+|children|child|kids?|family|parents?|wedding|married|widow\w*"
    r"|friend of mine|my friend|best friend|lover|betrothed|fianc\w+",
    "name": r"my name|name'?s|named|call me|called|i'?m called|known as",
    "place": r"live[ds]?|living|born|from|hometown|home|house|town|village|city|farm|inn"
    r"|tavern|castle|harbou?r|port|road|north|south|east|west|mountains?|forest|river"
    r"|island|market|shop|temple|church|chapel|mill|square|docks?|gate|bridge|camp"
    r"|moved to|travell?ed|travell?ing|went to|headed to|lives? in|stay(ing)? at",
    "plan": r"plan\w*|want to|wants to|need to|hope to|trying to|looking for|search\w* for"
    r"|seek\w*|goal|dream|intend\w*|mean to|will be|leaving|leave|journey|quest",
    "preference": r"like[ds]?|love[ds]?|hate[ds]?|prefer\w*|favou?rite|enjoy\w*|can'?t stand"
    r"|fond of|allergic|afraid|fear\w*|scared|never eat|always drink|dislike[ds]?",
    "feeling": r"sad|happy|angry|lonely|worried|miss (him|her|them|you)|grief|grieving|proud"
    r"|ashamed|guilty|jealous|in love",
    "possession": r"my|mine|our|ours|i have|i own|i've got|i carry|i keep",
}
_CATEGORY = {
    name: re.compile(rf"\b(?:{pattern})\b", re.IGNORECASE) for name, pattern in _WORDS.items()
}
_NUMBER = re.compile(
    r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen"
    r"|fifteen|twenty|thirty|forty|fifty|hundred|thousand|million|dozen|half|once|twice"
    r"|first|third|fourth|fifth|coins?|gold|silver|crowns?|credits?|years?|weeks?"
    r"|months?)\b",
    re.IGNORECASE,
)
# A capitalised word that does not start a sentence is most likely a name or a place.
_CAPITALISED = re.compile(r"\b[A-Z][a-z'’]+")
_NOT_NAMES = frozenset({"I'm", "I'll", "I've", "I'd", "Ok", "Okay", "Mr", "Mrs", "Ms", "Sir"})
_SENTENCE = re.compile(r"(?<=[.!?…])\s+|\n+")


def _sentences(text: str) -> list[str]:
    return [" ".join(part.split()) for part in _SENTENCE.split(text) if part.strip()]


def fact_signals(text: str) -> frozenset[str]:
    """The kinds of fact ``text`` states: danger, secret, promise, family, name,
    place, number, plan, preference, feeling, possession. Empty for small talk."""
    found = {name for name, pattern in _CATEGORY.items() if pattern.search(text)}
    if _NUMBER.search(text):
        found.add("number")
    for sentence in _sentences(text):
        opening = len(sentence) - len(sentence.lstrip("\"“'([-*"))
        if any(
            m.start() > opening and m.group() not in _NOT_NAMES
            for m in _CAPITALISED.finditer(sentence)
        ):
            found.add("name")
    return frozenset(found)


def importance_of(signals: frozenset[str]) -> int:
    """Highest category wins; three or more kinds of fact at once add one."""
    if not signals:
        return 2  # chit-chat
    base = max(IMPORTANCE[name] for name in signals)
    return min(10, base + (1 if len(signals) >= 3 else 0))


# -- third person ----------------------------------------------------------------------
# (pattern, replacement) applied in order, on word boundaries, case-insensitive.
# The player's words: "I" becomes "they", "you" (the NPC) becomes "I"/"me".
_FROM_PLAYER: tuple[tuple[str, str], ...] = (
    (r"i am|i'm|im", "they are"),
    (r"i was", "they were"),
    (r"i've", "they have"),
    (r"i'll", "they will"),
    (r"i'd", "they would"),
    (r"am i", "are they"),
    (r"was i", "were they"),
    (r"myself", "themselves"),
    (r"mine", "theirs"),
    (r"my", "their"),
    (r"me", "them"),
    (r"i", "they"),
    (r"you are|you're|youre", "I am"),
    (r"are you", "am I"),
    (r"you were", "I was"),
    (r"were you", "was I"),
    (r"you've", "I have"),
    (r"you'll", "I will"),
    (r"you'd", "I would"),
    (r"yourself", "myself"),
    (r"yours", "mine"),
    (r"your", "my"),
)
# The NPC's own words: "I" stays, "you" (the player) becomes "they"/"them".
_FROM_NPC: tuple[tuple[str, str], ...] = (
    (r"you are|you're|youre", "they are"),
    (r"are you", "are they"),
    (r"you were", "they were"),
    (r"were you", "were they"),
    (r"you've", "they have"),
    (r"you'll", "they will"),
    (r"you'd", "they would"),
    (r"yourself", "themselves"),
    (r"yours", "theirs"),
    (r"your", "their"),
)
_SUBJECT_BEFORE = re.compile(
    r"(?:^|\b(?:and|but|or|if|when|that|because|so|said|think|know|hope|unless|while|as"
    r"|can|could|will|would|do|did|does|should|shall|may|might|must|have|had|what|where"
    r"|how|why|who|then))[\s,]*$",
    re.IGNORECASE,
)
_YOU = re.compile(r"\byou\b", re.IGNORECASE)
_LOWER_STARTS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "but",
        "so",
        "well",
        "there",
        "it",
        "we",
        "this",
        "that",
        "these",
        "those",
        "yes",
        "no",
        "tomorrow",
        "yesterday",
        "today",
        "tonight",
        "someone",
        "somebody",
        "nobody",
        "everyone",
        "please",
        "oh",
        "ah",
    ]
)


def _compile(pairs: Sequence[tuple[str, str]]) -> tuple[re.Pattern[str], dict[str, str]]:
    table: dict[str, str] = {}
    alternatives = []
    for pattern, replacement in pairs:
        for word in pattern.split("|"):
            table[word.replace("'", "")] = replacement
        alternatives.append(pattern)
    return re.compile(rf"\b(?:{'|'.join(alternatives)})\b", re.IGNORECASE), table


_PLAYER_WORDS = _compile(_FROM_PLAYER)
_NPC_WORDS = _compile(_FROM_NPC)


def _swap(text: str, words: tuple[re.Pattern[str], dict[str, str]]) -> str:
    pattern, table = words
    text = text.replace("’", "'")
    return pattern.sub(lambda m: table[m.group().lower().replace("'", "")], text)


def _you(text: str, subject: str, obj: str) -> str:
    """A remaining "you": the subject at a clause start, else the object."""

    def choose(match: re.Match[str]) -> str:
        return subject if _SUBJECT_BEFORE.search(text[: match.start()]) else obj

    return _YOU.sub(choose, text)


def _body(sentence: str) -> str:
    """The sentence to continue "... said ..." with: no end mark, and a first word
    in lower case unless it is a name."""
    body = sentence.strip().strip("\"“”'").rstrip(".!?…").strip()
    first = body.split(" ", 1)[0]
    if first.lower().strip(",") in _LOWER_STARTS:
        body = body[0].lower() + body[1:]
    return body


def third_person(sentence: str, role: str, player: str) -> str:
    """One sentence of a chat as the NPC remembers it."""
    question = sentence.rstrip().endswith("?")
    if role == "user":
        body = _you(_swap(sentence, _PLAYER_WORDS), "I", "me")
        body = _body(body)
        who = player[0].upper() + player[1:]
        return f"{who} asked: {body}?" if question else f"{who} said {body}."
    body = _you(_swap(sentence, _NPC_WORDS), "they", "them")
    body = _body(body)
    return f"I asked {player}: {body}?" if question else f"I told {player}: {body}."


# The NPC's own answers that only echo or acknowledge the player ("Harrow Bay, you
# say? I'll remember that."): the fact is in the player's message already.
_ECHO = re.compile(
    r"\?$|\byou say\b|\bi'?ll remember (that|it)\b|\bi won'?t forget\b|\bkeep that in mind\b",
    re.IGNORECASE,
)


def _echoes(sentence: str) -> bool:
    return _ECHO.search(sentence.strip()) is not None


def extract_memories(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The procedural answer to MEMORY_TASK: ``{"memories": [{text, importance}]}``."""
    player = " ".join(str(inputs.get("player") or "").split()) or "the player"
    kept: list[dict[str, Any]] = []
    seen: set[str] = set()
    for message in inputs.get("messages", ()):
        role = str(message.get("role", "user"))
        for sentence in _sentences(str(message.get("content", ""))):
            if role == "assistant" and _echoes(sentence):
                continue
            if sentence.rstrip().endswith("?"):
                continue  # a question states nothing (and recalled, it outranks the answer)
            signals = fact_signals(sentence)
            if not signals:
                continue
            text = third_person(sentence, role, player)[:MAX_TEXT]
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            kept.append({"text": text, "importance": importance_of(signals)})
    return {"memories": kept[:MAX_MEMORIES]}


# -- reflection ------------------------------------------------------------------------
_REFLECTION_LEADS: tuple[tuple[str, str], ...] = (
    ("danger", "Trouble is close and I should be wary"),
    ("secret", "I have been trusted with something hidden, and I must guard it"),
    ("promise", "A promise stands between us, and I mean to see it kept"),
    ("family", "Their people matter to them, so they matter to me"),
    ("name", "I should remember who is who"),
    ("place", "I should remember where things are and where people come from"),
    ("plan", "I know what they are after"),
    ("number", "The details count here"),
    ("preference", "I am learning what they like and what they cannot abide"),
    ("feeling", "I can tell how they feel"),
    ("possession", "I know what is theirs"),
)


def _note(text: str) -> str:
    """A memory to end a sentence with (its own end mark, or a full stop)."""
    text = text.strip()
    text = text[0].lower() + text[1:] if text.startswith("The ") else text
    return text if text.endswith((".", "?", "!")) else text + "."


def reflect(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The procedural answer to REFLECTION_TASK: ``{"reflections": [{text, importance}]}``,
    1-3 of them, one per kind of fact, led by the most important recent memory of each."""
    memories = [m for m in inputs.get("memories", ()) if str(m.get("text", "")).strip()]
    # Most important first; among equals the newest (the list comes oldest first).
    ordered = sorted(
        enumerate(memories), key=lambda item: (-int(item[1].get("importance", 1)), -item[0])
    )
    reflections: list[dict[str, Any]] = []
    used: set[str] = set()
    for _, memory in ordered:
        signals = fact_signals(str(memory["text"]))
        choice = next(
            ((name, lead) for name, lead in _REFLECTION_LEADS if name in signals - used), None
        )
        if choice is None:
            continue
        used.add(choice[0])
        lead = choice[1]
        reflections.append(
            {
                "text": f"{lead}: {_note(str(memory['text']))}"[:MAX_TEXT],
                "importance": min(10, int(memory.get("importance", 1)) + 1),
            }
        )
        if len(reflections) == MAX_REFLECTIONS:
            break
    if not reflections and ordered:
        note = _note(str(ordered[0][1]["text"]))
        reflections.append({"text": f"This stays with me: {note}"[:MAX_TEXT], "importance": 5})
    return {"reflections": reflections}
