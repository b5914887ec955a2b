"""Lorebooks: a world's sections and an NPC's relationships as entries that
trigger on their own subjects, as a card's ``character_book`` or as a
SillyTavern World Info file.

Each entry has its own keys: a section is keyed by its name and the words
only it uses (proper nouns first), a relationship by the other person's
names. The setting line (era and period) is short and always true, so it
is the one constant entry. Placement is chosen per kind: the setting and
sections go before the character definitions, relationships after (closer
to the chat, where they matter most), and relationships keep a higher
priority, so world lore is dropped first when the token budget runs out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.models import NPC, Relationship, World

MAX_SECTION_KEYS = 6
# insertion_order bands (lower = earlier in the prompt) and priorities (lower = dropped first).
SETTING_ORDER, SECTION_ORDER, TIE_ORDER = 0, 10, 100
SETTING_PRIORITY, SECTION_PRIORITY, TIE_PRIORITY = 100, 40, 80
_WORD = re.compile(r"[^\W\d_][\w'’-]{3,}")
# Words that say nothing about a section's subject.
STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        """about above after again against almost along also although among another anyone
    anything around because been before being below between both cannot could does doing
    down during each either else even ever every from further have having here however
    into itself just keep kept know known less like made make many more most much must
    near never next often only other others over own rather same should since some
    still such than that their theirs them then there these they thing things this those
    though through thus together too under until upon very what when where whether which
    while whom whose will with within without would your yours everyone everything
    someone something nothing anyone whole works begun leaves takes gives comes goes""",
    )
)


# Capitalised words that begin a sentence or a name without being one.
LEADING = STOPWORDS | {"the", "a", "an", "in", "on", "at", "of", "and", "but", "when", "if"}


def _words(text: str) -> list[str]:
    return [w.strip("'’-") for w in _WORD.findall(text) if w.lower() not in STOPWORDS]


def proper_nouns(text: str) -> list[str]:
    """Names in ``text`` (``Helix Biotechnica``, ``Rainstep Alley``): runs of
    capitalised words. A lone capital at a sentence start is only a name when
    the text also writes it capitalised mid-sentence (``Life expectancy`` is not)."""
    runs: list[tuple[str, bool]] = []  # (phrase, starts its sentence)
    for sentence in re.split(r"(?<=[.!?;:])\s+|\n+", text):
        # Punctuation ends a run: "Helix, Orison Dynamics" is two names.
        tokens = re.findall(r"[\w'’-]+|[^\w\s]", sentence)
        run: list[str] = []
        start = 0
        for index, word in enumerate([*tokens, ""]):
            possessive = word.endswith(("'s", "’s"))
            if word[:1].isupper() and (run or word.lower() not in LEADING):
                if not run:
                    start = index
                run.append(word[:-2] if possessive else word)
                if not possessive:
                    continue
            if run:
                runs.append((" ".join(run), start == 0))
                run = []
    mid_sentence = {phrase for phrase, first in runs if not first}
    found = [
        phrase for phrase, first in runs if not first or " " in phrase or phrase in mid_sentence
    ]
    return list(dict.fromkeys(found))


def subject_keys(name: str, text: str, others: Iterable[str] = ()) -> list[str]:
    """The section's name, then the names only this section uses, then its most
    frequent words no other section uses."""
    other_text = " ".join(others)
    elsewhere = {w.lower() for w in _words(other_text)}
    label = name.replace("_", " ").strip()
    keys = [label] if label else []
    taken = {label.lower()}
    for phrase in proper_nouns(text):
        if phrase.lower() not in other_text.lower() and phrase.lower() not in taken:
            keys.append(phrase)
            taken.update(part.lower() for part in [phrase, *phrase.split()])
    words = [w.lower() for w in _words(text) if w.lower() not in elsewhere and len(w) >= 5]
    for word, _count in Counter(words).most_common():
        if word not in taken:
            keys.append(word)
            taken.add(word)
    return keys[:MAX_SECTION_KEYS]


def book_entry(
    entry_id: int,
    name: str,
    keys: Sequence[str],
    content: str,
    *,
    order: int,
    priority: int,
    position: str = "before_char",
    constant: bool = False,
    secondary_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """One entry with every field V2 and V3 define (V3's ``use_regex`` included)."""
    return {
        "keys": list(keys),
        "content": content,
        "extensions": {},
        "enabled": True,
        "insertion_order": order,
        "case_sensitive": False,
        "use_regex": False,
        "constant": constant,
        "name": name,
        "priority": priority,
        "id": entry_id,
        "comment": name,
        "selective": bool(secondary_keys),
        "secondary_keys": list(secondary_keys),
        "position": position,
    }


def _sections(world: World) -> dict[str, str]:
    detail = world.detail if isinstance(world.detail, dict) else {"overview": world.detail}
    return {name: text for name, text in detail.items() if text and text.strip()}


def world_entries(world: World, start: int = 0) -> list[dict[str, Any]]:
    """The setting (constant) and one entry per detail section, keyed by its subject.
    A world known only by its name (``Imported``) says nothing: no entries."""
    sections = _sections(world)
    if not sections and world.era == world.name:
        return []
    entries = [
        book_entry(
            start,
            f"{world.name}: setting",
            [world.name],
            f"{world.name}: {world.era}; {world.time_period}.",
            order=SETTING_ORDER,
            priority=SETTING_PRIORITY,
            constant=True,
        )
    ]
    for index, (name, text) in enumerate(sections.items()):
        # The world's own name is the setting's key, so no section's.
        others = [world.name, *(other for key, other in sections.items() if key != name)]
        entries.append(
            book_entry(
                start + len(entries),
                f"{world.name}: {name.replace('_', ' ')}",
                subject_keys(name, text, others),
                text,
                order=SECTION_ORDER + index,
                priority=SECTION_PRIORITY,
            )
        )
    return entries


def name_keys(name: str) -> list[str]:
    """A person's full name and, when it has several parts, the first one."""
    parts = name.split()
    return [name] if len(parts) < 2 else [name, parts[0]]


def tie_text(npc_name: str, tie: Relationship) -> str:
    text = f"{npc_name} and {tie.target_name}: {tie.type} ({tie.weight:+.2f})"
    text += f", {tie.description}" if tie.description else ""
    return text + (". Nobody else knows of it." if tie.secret else ".")


def tie_entries(npc: NPC, start: int, *, both_names: bool = False) -> list[dict[str, Any]]:
    """The NPC's relationships. In its own card the other's names trigger an entry;
    in a world book (``both_names``) both people must be mentioned."""
    entries = []
    for index, tie in enumerate(npc.relationships):
        entries.append(
            book_entry(
                start + index,
                f"{npc.name} → {tie.target_name}",
                name_keys(npc.name) if both_names else name_keys(tie.target_name),
                tie_text(npc.name, tie),
                order=TIE_ORDER + index,
                priority=TIE_PRIORITY,
                position="after_char",
                secondary_keys=name_keys(tie.target_name) if both_names else (),
            )
        )
    return entries


def character_book(npc: NPC, world: World | None) -> dict[str, Any] | None:
    """The NPC's world and relationships as a card's lorebook (None when empty)."""
    entries = world_entries(world) if world is not None else []
    entries += tie_entries(npc, len(entries))
    if not entries:
        return None
    return {
        "name": f"{npc.name} ({npc.world})",
        "description": f"The world of {npc.world} and {npc.name}'s relationships.",
        "recursive_scanning": False,
        "extensions": {},
        "entries": entries,
    }


def world_book(
    world: World, npcs: Sequence[NPC], own_books: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """A whole world's lorebook: its sections, every relationship among ``npcs``,
    and the entries of the lorebooks their imported cards brought (``own_books``,
    by NPC id), each with its own keys, named after its NPC."""
    entries = world_entries(world)
    for npc in npcs:
        entries += tie_entries(npc, len(entries), both_names=True)
    for npc in npcs:
        for entry in (own_books or {}).get(npc.id, {}).get("entries") or []:
            label = entry.get("comment") or entry.get("name") or ", ".join(entry.get("keys") or [])
            entries.append({**entry, "id": len(entries), "comment": f"{npc.name}: {label}"})
    return {
        "name": world.name,
        "description": f"{world.name}: {world.era}, {world.time_period}.",
        "recursive_scanning": False,
        "extensions": {},
        "entries": entries,
    }


ST_POSITIONS = {"before_char": 0, "after_char": 1}
# What SillyTavern keeps of a World Info entry in a card entry's extensions, and
# the World Info field each goes back to.
ST_EXTENSIONS = {
    "position": "position", "probability": "probability", "useProbability": "useProbability",
    "depth": "depth", "selectiveLogic": "selectiveLogic", "group": "group",
    "exclude_recursion": "excludeRecursion", "prevent_recursion": "preventRecursion",
    "scan_depth": "scanDepth", "match_whole_words": "matchWholeWords", "role": "role",
    "sticky": "sticky", "cooldown": "cooldown", "delay": "delay",
}  # fmt: skip


def sillytavern_world_info(book: Mapping[str, Any]) -> dict[str, Any]:
    """A lorebook as a SillyTavern World Info file (``{"entries": {uid: entry}}``),
    the format its World Info import reads; card fields map as SillyTavern's own
    card-book conversion maps them."""
    entries: dict[str, Any] = {}
    for uid, entry in enumerate(book.get("entries") or []):
        entries[str(uid)] = {
            "uid": uid,
            "key": list(entry.get("keys") or []),
            "keysecondary": list(entry.get("secondary_keys") or []),
            "comment": entry.get("comment") or entry.get("name") or "",
            "content": entry.get("content") or "",
            "constant": bool(entry.get("constant")),
            "vectorized": False,
            "selective": bool(entry.get("selective")),
            "selectiveLogic": 0,
            "addMemo": True,
            "order": entry.get("insertion_order", 100),
            "position": ST_POSITIONS.get(entry.get("position") or "before_char", 0),
            "disable": not entry.get("enabled", True),
            "excludeRecursion": False,
            "preventRecursion": not book.get("recursive_scanning", True),
            "delayUntilRecursion": False,
            "probability": 100,
            "useProbability": True,
            "depth": 4,
            "group": "",
            "groupOverride": False,
            "groupWeight": 100,
            "scanDepth": None,
            "caseSensitive": entry.get("case_sensitive"),
            "matchWholeWords": None,
            "useGroupScoring": None,
            "automationId": "",
            "role": None,
            "sticky": 0,
            "cooldown": 0,
            "delay": 0,
            "displayIndex": uid,
            "extensions": dict(entry.get("extensions") or {}),
        }
        extensions = entry.get("extensions") or {}
        entries[str(uid)].update(
            {field: extensions[key] for key, field in ST_EXTENSIONS.items() if key in extensions}
        )
    return {"entries": entries}
