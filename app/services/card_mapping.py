"""From a card made by another tool to NPC fields, and edits back onto the card.

The card itself is kept whole beside the NPC (see ``card_store``); these
fields are NPC Forge's view of it. Only what the card states is mapped: an
age, gender or occupation the text does not give stays unknown, and no line
is ever invented. Text longer than an NPC field holds is cut for the view
only, with a note; the kept card still has all of it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.models import NPC

UNKNOWN = "unknown"
EXTENSION = "npc_forge"
# The NPC model's bounds (app.models): names and short fields, long fields, traits, lines.
MAX_NAME, MAX_LONG, MAX_SPEECH = 120, 4000, 480
MAX_TRAITS, MAX_TRAIT_WORDS, MAX_LINES = 8, 3, 4
MIN_APPEARANCE = 60
_PARAGRAPHS = re.compile(r"(\r?\n[ \t]*){2,}")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”)]?\s+(?=[\"'“(]?[A-Z{*])")
_MACRO = re.compile(r"\{\{\s*(char|user)\s*\}\}\s*:?|<\s*(bot|char|user)\s*>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Mapped:
    """An NPC mapped from a card, and what the user should know about it."""

    npc: NPC
    notes: list[str]


def text_field(value: Any) -> str:
    """A spec string field as text: lists joined by blank lines, null as ''."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n\n".join(text_field(item) for item in value if item is not None)
    return value if isinstance(value, str) else str(value)


# -- free text -> facts ----------------------------------------------------------------
_NUMBER_WORDS = {
    w: n
    for n, w in enumerate(
        re.findall(
            r"\w+",
            "zero one two three four five six seven eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen seventeen eighteen nineteen",
        )
    )
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}  # fmt: skip
_DECADES = {"teens": 10, **{f"{word[:-1]}ies": n for word, n in _TENS.items()}}
_DECADE_PART = {"early": 2, "mid": 5, "mid-": 5, "late": 8}
_AGE_NUMBER = (
    r"(\d{1,5}|(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[- ]\w+)?|\w+teen|\w+)"
)
_AGE_PATTERNS = [
    re.compile(rf"\bage[d]?\s*[:=(\"']*\s*{_AGE_NUMBER}\b", re.IGNORECASE),
    re.compile(rf"\b{_AGE_NUMBER}[- ](?:years?|yrs?)[- ]old\b", re.IGNORECASE),
    re.compile(rf"\b{_AGE_NUMBER}[- ]year[- ]old\b", re.IGNORECASE),
    re.compile(rf"\b(?:is|was|turned|just)\s+{_AGE_NUMBER}\s*(?:years|yrs)\b", re.IGNORECASE),
]
_DECADE_PATTERN = re.compile(
    r"\bin\s+(?:his|her|their|its|my)\s+(early|mid-?|late)?\s*-?\s*"
    r"(teens|twenties|thirties|forties|fifties|sixties|seventies|eighties|nineties)\b",
    re.IGNORECASE,
)


def _number(word: str) -> int | None:
    word = word.lower()
    if word.isdigit():
        return int(word)
    if word in _NUMBER_WORDS:
        return _NUMBER_WORDS[word]
    tens, _, unit = word.replace(" ", "-").partition("-")
    if tens in _TENS and (not unit or unit in _NUMBER_WORDS):
        return _TENS[tens] + (_NUMBER_WORDS[unit] if unit else 0)
    return None


def parse_age(text: str) -> int | None:
    """An age the text states (``42 years old``, ``aged 42``, ``Age: 42``,
    ``in her late fifties`` -> 58); None when it states none."""
    for pattern in _AGE_PATTERNS:
        for match in pattern.finditer(text):
            age = _number(match.group(1))
            if age is not None and 0 < age <= 100_000:
                return age
    decade = _DECADE_PATTERN.search(text)
    if decade:
        part = (decade.group(1) or "mid").lower()
        return _DECADES[decade.group(2).lower()] + _DECADE_PART[part]
    return None


_GENDER_LABEL = re.compile(
    r"\b(?:gender|sex)\s*[:=(]\s*[\"']?([A-Za-z][\w -]{1,30}?)\s*(?:[\"')\],;.\n+]|$)", re.I
)
_FEMALE = re.compile(r"\b(woman|girl|lady|female|queen|princess|mother|daughter|wife|sister|"
                     r"actress|waitress|priestess|heroine)\b", re.I)  # fmt: skip
_MALE = re.compile(r"\b(man|boy|gentleman|male|king|prince|father|son|husband|brother|"
                   r"actor|waiter|priest|hero)\b", re.I)  # fmt: skip
_NONBINARY = re.compile(r"\b(non-?binary|enby|agender|genderfluid)\b", re.I)


def parse_gender(text: str) -> str:
    """A gender the text states: a ``Gender:`` label, or clear words and pronouns
    (``a woman``, ``she``); ``unknown`` when they disagree or say nothing."""
    label = _GENDER_LABEL.search(text)
    if label:
        return label.group(1).strip().lower()
    if _NONBINARY.search(text):
        return "non-binary"
    she = len(re.findall(r"\b(she|her|hers|herself)\b", text, re.I))
    he = len(re.findall(r"\b(he|him|his|himself)\b", text, re.I))
    she += 3 * len(_FEMALE.findall(text))
    he += 3 * len(_MALE.findall(text))
    # Other people are mentioned too: only a clear majority counts.
    if she >= 2 and she >= 3 * he:
        return "female"
    if he >= 2 and he >= 3 * she:
        return "male"
    return UNKNOWN


_OCCUPATION_LABEL = re.compile(
    r"\b(?:occupation|profession|job|role|class)\s*[:=(]\s*[\"']?([^\"'\n\]);,.]{2,60})", re.I
)
_OCCUPATION_PHRASE = re.compile(
    r"\b(?:works as|working as|employed as|serves as|trained as)\s+(?:an?|the)\s+"
    r"([a-z][a-z -]{2,40}?)(?=[.,;:!?\n]| and | in | at | for | of | who )"
    r"|\b([a-z][a-z-]{2,30}(?: [a-z-]{3,30})?) by trade\b",
    re.I,
)


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


# "<subject> is a <up to three words>", cut at the first little word or punctuation.
_IS_A = r"\s+(?:is|was)\s+(?:an?|the)\s+((?:[\w'-]+[ \t]+){0,2}[\w'-]+)"
_STOP = _wordset("in on at of for with from who that which and but to by")
_ROLE_SUFFIXES = ("er", "or", "ist", "ian", "smith", "maker", "wright", "monger", "herd",
                  "keeper", "ess", "eer", "ier", "ster", "sman", "swoman")  # fmt: skip
_ROLES = _wordset(
    "knight priest thief nurse monk nun chef cook guard pilot spy bard mage witch wizard "
    "druid cleric paladin rogue scout squire sheriff deputy assassin medic clerk scribe sage "
    "shaman oracle merchant servant maid butler student agent sergeant lieutenant general "
    "admiral pirate fixer netrunner alchemist apothecary mercenary noble courtesan"
)
_NOT_ROLES = _wordset(
    "mother father daughter sister brother lover member character user other monster danger "
    "partner stranger person woman man human girl boy creature master beauty whisper "
    "number wonder shadow power order river tower corner paper matter flower winter summer "
    "water weather feather silver color colour favor favour mirror terror honor honour"
)


def _role_like(word: str) -> bool:
    word = word.lower().strip("'-")
    if word in _NOT_ROLES or len(word) < 3:
        return False
    return word in _ROLES or word.endswith(_ROLE_SUFFIXES)


def _subject_role(text: str, name: str) -> str | None:
    """``Odile is a clockmaker in her fifties`` -> ``clockmaker``."""
    subjects = [re.escape(part) for part in {name, name.split()[0] if name else ""} if part]
    subject = "|".join([*subjects, r"\{\{\s*char\s*\}\}", "she", "he", "they"])
    for match in re.finditer(rf"(?<!\w)(?:{subject}){_IS_A}", text, re.I):
        words = []
        for word in match.group(1).split():
            if word.lower() in _STOP:
                break
            words.append(word)
        if words and _role_like(words[-1]):
            hyphenated = len(words) > 1 and "-" in words[-2] and not words[-2][0].isdigit()
            return " ".join(words[-2:] if hyphenated else words[-1:]).lower()
    return None


def parse_occupation(text: str, name: str = "") -> str:
    """An occupation the text states (``Occupation: smith``, ``works as a smith``,
    ``a smith by trade``, ``Odile is a clockmaker``); ``unknown`` otherwise
    (tags are not occupations)."""
    for pattern in (_OCCUPATION_LABEL, _OCCUPATION_PHRASE):
        match = pattern.search(text)
        if match:
            found = next(group for group in match.groups() if group)
            return found.strip().lower()[:MAX_NAME]
    return _subject_role(text, name) or UNKNOWN


def parse_traits(personality: str) -> list[str]:
    """Traits from a personality field in any of the usual shapes: prose
    (``Sly, patient; proud.``), W++ (``[{{char}}: "creative" + "kind"]``), lists."""
    text = _MACRO.sub(" ", personality)
    text = re.sub(r"\b(?:personality|traits?)\s*[:=(]", " ", text, flags=re.I)
    head = re.split(r"(?<=[a-z])\.\s|\n\n|\bSpeech:", text, maxsplit=1)[0]
    traits = []
    for item in re.split(r"[,;/+|\n]|\band\b", head):
        trait = re.sub(r"[\[\]{}()\"“”*_#:=]", " ", item).strip(" .'-").lower()
        trait = " ".join(trait.split())
        if trait and len(trait.split()) <= MAX_TRAIT_WORDS and len(trait) <= 40:
            traits.append(trait)
    return list(dict.fromkeys(traits))[:MAX_TRAITS]


# -- the description and the lines ----------------------------------------------------
def split_description(description: str) -> tuple[str, str, str]:
    """(appearance, separator, backstory) with appearance + separator + backstory
    == the description: the first paragraph and the rest, or, with no blank line
    (``\\n\\n`` or ``\\r\\n\\r\\n``), the first sentence and the rest. A short
    first part (a ``Gender: female`` line) takes the next one with it."""
    for pattern in (_PARAGRAPHS, _SENTENCE_END):
        for match in pattern.finditer(description):
            if match.start() >= MIN_APPEARANCE:
                return description[: match.start()], match.group(0), description[match.end() :]
    return description, "", ""


def example_lines(mes_example: str) -> list[str]:
    """What the character says in the example dialogues."""
    lines = []
    for line in mes_example.splitlines():
        match = re.match(r"\s*(?:\{\{\s*char\s*\}\}|<\s*(?:bot|char)\s*>)\s*:\s*(.+)", line, re.I)
        if match and match.group(1).strip():
            lines.append(match.group(1).strip())
    return lines


def _sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _PARAGRAPHS.split(text) if p and p.strip()]
    if len(parts) >= 2:
        return parts
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def sample_lines(data: Mapping[str, Any]) -> list[str]:
    """Up to four things the character says, all from the card: the greetings,
    then the example dialogues, then the parts of a lone greeting."""
    greetings = [text_field(data.get("first_mes"))]
    greetings += [text_field(g) for g in data.get("alternate_greetings") or []]
    greetings += [text_field(g) for g in data.get("group_only_greetings") or []]
    lines = [g.strip() for g in greetings if g.strip()]
    if len(lines) < 2:
        lines += example_lines(text_field(data.get("mes_example")))
    if len(lines) < 2 and lines:
        lines = _sentences(lines[0]) + lines[1:]
    return list(dict.fromkeys(lines))[:MAX_LINES]


def cut(text: str, limit: int, what: str, notes: list[str]) -> str:
    """``text`` within ``limit`` characters, cut at a word with a note."""
    if len(text) <= limit:
        return text
    notes.append(f"{what} has {len(text):,} characters; the NPC shows the first {limit:,} "
                 "(the kept card has all of it).")  # fmt: skip
    head = text[: limit - 1]
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head).rstrip() + "…"


def npc_id(name: str, description: str) -> str:
    digest = hashlib.blake2b(f"{name}|{description}".encode(), digest_size=8).hexdigest()
    return f"npc-{digest}"


def map_card(card: Mapping[str, Any], filename: str, *, world: str = "Imported") -> Mapped:
    """The NPC a card describes. A card made here carries its NPC in
    ``extensions.npc_forge`` and comes back exactly; others are mapped."""
    from pydantic import ValidationError

    data: Mapping[str, Any] = card["data"]
    ours = (data.get("extensions") or {}).get(EXTENSION)
    if isinstance(ours, dict):
        try:
            return Mapped(NPC.model_validate(ours), [])
        except ValidationError:
            pass  # edited by hand elsewhere: map the card's own fields instead
    notes: list[str] = []
    name = text_field(data.get("name")).strip()
    description = text_field(data.get("description")).strip()
    personality = text_field(data.get("personality"))
    facts = f"{description}\n{personality}"
    appearance, _, backstory = split_description(description)
    lines = sample_lines(data)
    if len(lines) < 2:
        raise ValueError(
            "it has no greeting or example line with two sentences; NPC Forge needs at least "
            "two things the character says (add a first_mes or alternate_greetings)"
        )
    speech = personality.split("Speech:", 1)[1].strip() if "Speech:" in personality else ""
    if not speech and example_lines(text_field(data.get("mes_example"))):
        speech = "as in the card's example dialogues"
    tags = [text_field(tag).strip() for tag in data.get("tags") or [] if text_field(tag).strip()]
    npc = NPC(
        name=cut(name, MAX_NAME, "The name", notes),
        age=parse_age(facts),
        gender=parse_gender(facts),
        occupation=parse_occupation(facts, name),
        appearance=cut(appearance.strip() or UNKNOWN, MAX_LONG, "The appearance", notes),
        personality_traits=parse_traits(personality) or [UNKNOWN],
        backstory=cut(backstory.strip() or UNKNOWN, MAX_LONG, "The backstory", notes),
        motivation=UNKNOWN,
        secret=UNKNOWN,
        speech_style=cut(speech or UNKNOWN, MAX_SPEECH, "The speech style", notes),
        sample_lines=lines,
        id=npc_id(name, description),
        world=world,
        backend="import:card",
        seed=0,
        tags=tags,
    )
    return Mapped(npc, [f"{filename}: {note}" for note in notes])


# -- edits back onto the card ---------------------------------------------------------
def _description(data: Mapping[str, Any], before: NPC, after: NPC) -> str:
    """The card's description with only the edited part (appearance or backstory) replaced."""
    original = text_field(data.get("description")).strip()
    appearance, separator, backstory = split_description(original)
    if after.appearance != before.appearance:
        appearance = after.appearance
    if after.backstory != before.backstory:
        backstory = after.backstory
    separator = separator or "\n\n"
    return separator.join(part for part in (appearance, backstory) if part and part != UNKNOWN)


TIE_MARK = {EXTENSION: "relationship"}  # marks the lorebook entries NPC Forge adds


def _with_ties(book: Any, npc: NPC) -> dict[str, Any]:
    """The card's lorebook with the NPC's relationships as entries (replacing the
    ones added before); the card's own entries stay as they were."""
    from app.services.lorebook import tie_entries

    book = dict(book) if isinstance(book, dict) else {"extensions": {}, "entries": []}
    own = [e for e in book.get("entries") or [] if (e.get("extensions") or {}) != TIE_MARK]
    ids = [e["id"] for e in own if isinstance(e.get("id"), int)]
    ties = tie_entries(npc, max(ids, default=-1) + 1)
    for entry in ties:
        entry["extensions"] = dict(TIE_MARK)
    return {**book, "extensions": book.get("extensions") or {}, "entries": own + ties}


def apply_edits(card: Mapping[str, Any], before: NPC, after: NPC) -> dict[str, Any]:
    """``card`` with the NPC edits made since import written into the fields they
    came from; everything else stays as the card had it. The whole edited NPC
    rides in ``extensions.npc_forge`` (secret, motivation, age have no card field)."""
    data = dict(card["data"])
    if after.name != before.name:
        data["name"] = after.name
    if (after.appearance, after.backstory) != (before.appearance, before.backstory):
        data["description"] = _description(data, before, after)
    if after.personality_traits != before.personality_traits:
        data["personality"] = ", ".join(after.personality_traits)
    if after.sample_lines != before.sample_lines:
        old_first = before.sample_lines[0] if before.sample_lines else ""
        if text_field(data.get("first_mes")).strip() == old_first:
            data["first_mes"] = after.sample_lines[0]
    if after.tags != before.tags:
        data["tags"] = list(after.tags)
    if after.relationships != before.relationships:
        data["character_book"] = _with_ties(data.get("character_book"), after)
    data["extensions"] = {
        **dict(data.get("extensions") or {}),
        EXTENSION: after.model_dump(mode="json"),
    }
    edited = {**card, "data": data}
    # A V1 mirror at the root (SillyTavern writes one) follows the fields it mirrors.
    for key in ("name", "description", "personality", "first_mes", "tags"):
        if key in card and card[key] == card["data"].get(key) and data.get(key) != card[key]:
            edited[key] = data[key]
    return edited
