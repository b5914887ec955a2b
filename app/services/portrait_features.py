"""From an NPC's own fields to the parts and colours of its portrait.

The appearance text decides first (its hair clause for the hair, its eye
clause for the eyes, what it wears for the clothing); the occupation next;
what the text leaves open is drawn from the parts that fit the NPC's gender,
age, build and genre, seeded by its id, so the same NPC always gets the same
face and an edit of one field changes only what that field says.
"""

from __future__ import annotations

import colorsys
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.models import NPC
from app.services.portrait_parts import ColourWord, Part, PartsData, Slot

_CLAUSE_SPLIT = re.compile(r"[.;!?]+|,\s*|\s+with\s+|\s+and\s+|\s+under\s+")
_SENTENCE_SPLIT = re.compile(r"[.;!?]+")
_HAIR = re.compile(
    r"hair|curl|braid|plait|mane|lock|ponytail|\bbun\b|mohawk|dread|buzz|scalp|head\b|tonsure"
    r"|bald|crown|wig|cut\b|fringe|undercut|pate|tangle|shock of|\bpart\b|slick|pigtail",
    re.IGNORECASE,
)
_EYES = re.compile(r"\beyes?\b|optic|lens|implant|gaze", re.IGNORECASE)
_BEARD = re.compile(r"beard|moustache|mustache|goatee|whisker|stubble", re.IGNORECASE)
_HAT = re.compile(r"\bhat\b|\bcap\b|hood|bonnet|helmet|band\b|scarf|wimple|veil", re.IGNORECASE)
_CLOTHES = re.compile(
    r"cloak|coat|dress|gown|robe|tunic|shirt|jacket|apron|armou?r|mail\b|suit|toga|stola|shawl"
    r"|hood\b|uniform|vest|tabard|jerkin|habit|smock|trousers|scarf|cape|mantle|overalls"
    r"|jumpsuit|kimono|sari|hoodie|sweater|jumper|blouse|rags|wrap\b|harness|leathers|furs",
    re.IGNORECASE,
)
_WEARS = re.compile(r"\b(?:wears?|wearing|dressed in|clad in|in a|in an)\b(.*)", re.IGNORECASE)
_BUILDS = {
    "wide": re.compile(
        r"broad|heavy|barrel|thick|stocky|muscular|hulking|brawler|solid|powerful|wrestler"
        r"|burly|big|large|draft horse",
        re.IGNORECASE,
    ),
    "round": re.compile(
        r"plump|round|soft|paunch|jowly|banquet|belly|pear|chubby|\bfat\b", re.IGNORECASE
    ),
    "narrow": re.compile(
        r"wiry|slight|gaunt|lean|thin|bony|bird-boned|skeletal|lanky|rangy|willowy|stringy"
        r"|underfed|small|spare|slender",
        re.IGNORECASE,
    ),
}
BODY_SCALE = {"wide": 1.12, "round": 1.08, "narrow": 0.9, "average": 1.0}
HEAD_SCALE = {"wide": 1.05, "round": 1.04, "narrow": 0.96, "average": 1.0}
OLD_AGE, GREYING_AGE, WHITE_AGE = 60, 45, 75
UNKNOWN_AGE = 30


@dataclass(frozen=True)
class Texts:
    """The parts of the NPC's text each slot reads."""

    appearance: str
    hair: str
    eyes: str
    clothing: str
    build: str
    beard: str
    hat: str
    occupation: str

    def read(self, name: str) -> str:
        return "" if name == "none" else str(getattr(self, name))


@dataclass(frozen=True)
class PortraitSpec:
    """What a portrait shows: the chosen part of each slot, the colours, the scales.

    ``because`` says, per slot, which words chose the part ('default' when the
    text said nothing). Two NPCs with equal specs get the same picture.
    """

    genre: str
    parts: dict[str, tuple[str, ...]]
    colours: dict[str, str]
    body_scale: float
    head_scale: float
    hidden: frozenset[str]
    because: dict[str, str] = field(default_factory=dict, compare=False)

    def part(self, slot: str) -> str | None:
        """The slot's (first) part id, or None when the slot is empty."""
        chosen = self.parts.get(slot, ())
        return chosen[0] if chosen else None


def age_of(npc: NPC) -> int:
    """The NPC's age, or an adult's when it is unknown (an imported card may not say)."""
    return npc.age if npc.age is not None else UNKNOWN_AGE


def gender_key(gender: str) -> str:
    text = gender.strip().lower()
    if re.match(r"(f|w)|.*\b(female|woman|girl|lady|she)\b", text):
        return "f"
    if re.match(r"m\b|male|man\b|.*\b(male|man|boy|he)\b", text):
        return "m"
    return "x"


def _clauses(text: str, wanted: re.Pattern[str]) -> str:
    """The clauses that mention ``wanted``, each with a short clause before it
    ("dark, watchful eyes" is split at the comma, and "dark" belongs to the eyes)."""
    clauses = [c.strip() for c in _CLAUSE_SPLIT.split(text)]
    picked = []
    for index, clause in enumerate(clauses):
        if clause and wanted.search(clause):
            before = clauses[index - 1] if index else ""
            short = before and len(before.split()) <= 2 and not wanted.search(before)
            picked.append(f"{before} {clause}" if short else clause)
    return " ; ".join(picked)


def _clothing_text(appearance: str) -> str:
    worn = [m.group(1) for s in _SENTENCE_SPLIT.split(appearance) if (m := _WEARS.search(s))]
    # No "wears": the clauses that name clothes (not the whole text, whose first
    # colour is as likely the hair's).
    return " ; ".join(worn) if worn else _clauses(appearance, _CLOTHES)


def texts_of(npc: NPC) -> Texts:
    appearance = npc.appearance
    sentences = [s for s in _SENTENCE_SPLIT.split(appearance) if s.strip()]
    return Texts(
        appearance=appearance,
        hair=_clauses(appearance, _HAIR),
        eyes=_clauses(appearance, _EYES),
        clothing=_clothing_text(appearance),
        build=sentences[0] if sentences else "",
        beard=_clauses(appearance, _BEARD),
        hat=_clauses(appearance, _HAT),
        occupation=npc.occupation,
    )


def build_of(text: str) -> str:
    for build, pattern in _BUILDS.items():
        if pattern.search(text):
            return build
    return "average"


def _rng(npc: NPC, purpose: str) -> random.Random:
    digest = hashlib.blake2b(f"{npc.id}|{npc.name}|{purpose}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


_NEGATED = re.compile(r"\b(?:no|not|never|without|nor)\s+(?:\w+\s+)?$", re.IGNORECASE)


def _first_match(patterns: Sequence[re.Pattern[str]], text: str) -> str | None:
    """The first pattern's words that occur, not negated ("hair that no hat can tame")."""
    for pattern in patterns:
        found = _word_search(pattern, text)
        while found is not None:
            if not _NEGATED.search(text, max(0, found.start() - 20), found.start()):
                return found.group(0)
            found = _word_search(pattern, text, found.end())
    return None


def _word_search(pattern: re.Pattern[str], text: str, start: int = 0) -> re.Match[str] | None:
    """The first match that begins a word ("red" in "a red hood", not in "bored")."""
    found = pattern.search(text, start)
    while found is not None and found.start() > 0:
        before = text[found.start() - 1]
        if not (before.isalnum() or before in "-_"):
            break
        found = pattern.search(text, found.start() + 1)
    return found


def _colour_word(words: Sequence[ColourWord], text: str) -> tuple[str, str] | None:
    """The colour of the earliest colour word in the text, and that word."""
    best: tuple[int, str, str] | None = None
    for word in words:
        for pattern in word.when:
            found = _word_search(pattern, text)
            if found and (best is None or found.start() < best[0]):
                best = (found.start(), word.colour, found.group(0))
    return (best[1], best[2]) if best else None


def mix(colour: str, other: str, amount: float) -> str:
    a = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    b = [int(other[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * amount):02x}" for x, y in zip(a, b, strict=True))


def _hue_shift(colour: str, shift: float) -> str:
    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    h, light, s = colorsys.rgb_to_hls(r, g, b)
    r, g, b = colorsys.hls_to_rgb((h + shift) % 1.0, light, s)
    return "#" + "".join(f"{round(v * 255):02x}" for v in (r, g, b))


class SpecBuilder:
    """Chooses parts and colours for NPCs from one version of the part data."""

    def __init__(self, data: PartsData) -> None:
        self.data = data

    def spec(self, npc: NPC, genre: str, world_key: str) -> PortraitSpec:
        texts = texts_of(npc)
        gender = gender_key(npc.gender)
        build = build_of(texts.build)
        parts: dict[str, tuple[str, ...]] = {}
        because: dict[str, str] = {}
        for slot in self.data.slots.values():
            chosen, reason = self._choose(slot, npc, texts, gender, genre, build)
            if chosen:
                parts[slot.name] = tuple(part.id for part in chosen)
                because[slot.name] = reason
        hidden = frozenset(
            layer
            for slot, ids in parts.items()
            for part_id in ids
            for layer in self.data.part_index[f"{slot}/{part_id}"].hides
        )
        colours = self._colours(npc, texts, genre, world_key, because)
        return PortraitSpec(
            genre=genre if genre in self.data.styles else "generic",
            parts=parts,
            colours=colours,
            body_scale=BODY_SCALE[build],
            head_scale=HEAD_SCALE[build],
            hidden=hidden,
            because=because,
        )

    def _choose(
        self, slot: Slot, npc: NPC, texts: Texts, gender: str, genre: str, build: str
    ) -> tuple[list[Part], str]:
        text = texts.read(slot.reads)
        matched: list[tuple[Part, str]] = []
        for part in slot.parts:
            word = _first_match(part.when, text) if text else None
            if word:
                matched.append((part, word))
                if not slot.many:
                    break
        if matched:
            return [p for p, _ in matched], ", ".join(f"'{w}'" for _, w in matched)
        for part in slot.parts:
            word = _first_match(part.occupations, texts.occupation)
            if word:
                return [part], f"occupation '{word}'"
        fitting = [
            p
            for p in slot.parts
            if p.default is not None and p.default.fits(gender, genre, build, age_of(npc))
        ]
        if not fitting:
            return [], ""
        rng = _rng(npc, slot.name)
        weights = [p.default.weight for p in fitting if p.default is not None]
        return [rng.choices(fitting, weights=weights)[0]], "default"

    def _colours(
        self, npc: NPC, texts: Texts, genre: str, world_key: str, because: dict[str, str]
    ) -> dict[str, str]:
        data = self.data
        style = data.styles.get(genre, data.styles["generic"])
        words = data.words
        # One world, one look: its genre's style, turned a little by the world's own key.
        shift = (int(world_key[:4] or "0", 16) % 25 - 12) / 360 if world_key else 0.0
        skin_word = _colour_word(words["skin"], texts.appearance)
        skin = skin_word[0] if skin_word else _rng(npc, "skin").choice(data.skin_tones)
        hair = self._hair_colour(npc, texts.hair, because)
        beard_word = _colour_word(words["hair"], texts.beard)
        beard = beard_word[0] if beard_word else hair
        eye_word = _colour_word(words["eye"], texts.eyes)
        eye = eye_word[0] if eye_word else _rng(npc, "eyes").choice(data.natural_eyes)
        cloth_word = _colour_word(words["cloth"], texts.clothing)
        cloth_rng = _rng(npc, "cloth")
        cloth = cloth_word[0] if cloth_word else cloth_rng.choice(style.cloth)
        trim = cloth_rng.choice([c for c in style.cloth if c != cloth] or [style.metal])
        hat_word = _colour_word(words["cloth"], texts.hat)
        hat = hat_word[0] if hat_word else mix(cloth, "#000000", 0.15)
        for name, found in (
            ("skin", skin_word), ("beard", beard_word), ("eye", eye_word),
            ("cloth", cloth_word), ("hat", hat_word),
        ):  # fmt: skip
            if found:
                because[f"colour.{name}"] = f"'{found[1]}'"
        colours = {
            "bg": _hue_shift(style.bg, shift),
            "bg_light": _hue_shift(style.bg_light, shift),
            "line": style.line,
            "metal": style.metal,
            "skin": skin,
            "skin_shadow": mix(skin, "#3a1a10", 0.22),
            "skin_light": mix(skin, "#ffffff", 0.45),
            "lip": mix(skin, "#b04848", 0.35),
            "hair": hair,
            "hair_shadow": mix(hair, "#000000", 0.3),
            "brow": mix(hair, "#000000", 0.2),
            "beard": beard,
            "eye": eye,
            "cloth": cloth,
            "cloth_shadow": mix(cloth, "#000000", 0.25),
            "cloth_trim": trim,
            "hat": hat,
            "hat_shadow": mix(hat, "#000000", 0.3),
        }
        colours.update(data.fixed)
        return colours

    def _hair_colour(self, npc: NPC, hair_text: str, because: dict[str, str]) -> str:
        data = self.data
        found = _colour_word(data.words["hair"], hair_text)
        if found:
            because["colour.hair"] = f"'{found[1]}'"
            return found[0]
        natural = _rng(npc, "hair").choice(data.natural_hair)
        age = age_of(npc)
        # The text gives no colour: age does. Grey from 60, white from 75, greying between.
        if age >= WHITE_AGE:
            because["colour.hair"] = f"age {age}"
            return data.white_hair
        if age >= OLD_AGE:
            because["colour.hair"] = f"age {age}"
            return data.grey_hair
        if age >= GREYING_AGE:
            because["colour.hair"] = f"age {age} (greying)"
            return mix(natural, data.grey_hair, (age - GREYING_AGE) / (OLD_AGE - GREYING_AGE))
        because["colour.hair"] = "default"
        return natural
