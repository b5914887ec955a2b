"""Named people a world's text mentions, as candidates for its casts.

"Father Ewan MacNeil, the parish priest" and "Captain Isobel Reid of the
revenue cutter" are people of the world: a cast may hold each of them once
(their name, the role the text gives, the gender their title or pronouns
state), and other NPCs' stories may name them. A name is a person only when
a title or a role says so: "Kepler Station" or "Brightwater Logistics"
standing alone are not.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from app.backends.procedural_deck import shuffled
from app.backends.procedural_tables import Occupation, Tables


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Titles, with the gender they state (None: either).
TITLES: dict[str, str | None] = {
    **dict.fromkeys(
        _words(
            "Father Brother Friar Abbot Mr Mister Sir Lord Master King Prince Duke Baron "
            "Count Earl Monsieur Herr Senhor Don Uncle"
        ),
        "male",
    ),
    **dict.fromkeys(
        _words(
            "Mother Sister Abbess Mrs Miss Ms Lady Dame Mistress Queen Princess Duchess "
            "Baroness Countess Madame Frau Widow Aunt Granny"
        ),
        "female",
    ),
    **dict.fromkeys(
        _words(
            "Captain Doctor Dr Reverend Sergeant Constable Magistrate Governor Senator "
            "Professor Commander Lieutenant Colonel Major General Admiral Inspector Judge "
            "Elder Councillor Mayor Marshal Sheriff Deputy Agent Director Chief Bishop Warden "
            "Overseer Foreman Centurion Tribune Legate Consul Praetor Skipper Boss"
        ),
        None,
    ),
}
# Titles that are a role on their own: "Sheriff Dan Cole" is the sheriff.
OFFICES = frozenset(t for t, g in TITLES.items() if g is None and t not in ("Dr", "Agent", "Boss"))
_ROLE_OF_TITLE = {"Dr": "doctor", "Father": "priest", "Abbot": "abbot", "Abbess": "abbess"}
_TITLE = "|".join(sorted(TITLES, key=len, reverse=True))
_WORD = r"(?:Mac|Mc|O'|O’|D'|De|Van|Von)?[A-Z][a-z'’-]+"
_PERSON = re.compile(
    rf"(?:\b(?P<title>{_TITLE})\.? )?(?P<name>{_WORD}(?: (?:de |van |von |al-)?{_WORD}){{0,2}})"
)
# A role in apposition: ", the parish priest," or " (the harbourmaster)".
_APPOSITION = re.compile(
    r"^(?:,| \(| -| –| —) ?(?:the|a|an|our|their|its) "
    r"(?P<role>[a-z][a-z'’-]*(?: [a-z][a-z'’-]*){0,3})"
)
# "the lighthouse keeper Hamish Gunn": a role written before the name.
_BEFORE = re.compile(r"(?:^|\b)[Tt]he (?P<role>[a-z][a-z'’-]*(?: [a-z][a-z'’-]*){0,2}) $")
# "Captain Isobel Reid of the revenue cutter": the office and what it is of.
_OF = re.compile(r"^ of the (?P<what>[a-z][a-z'’-]*(?: [a-z][a-z'’-]*){0,2})")
# Words that end a role phrase: the sentence goes on with a verb or a clause.
_ROLE_STOP = frozenset(
    _words(
        "who whom which that and but or with is was has had keeps runs says said knows owns "
        "lives sits holds sells buys rules watches guards from in on at for to by since"
    )
)
_SHE = re.compile(r"\b(?:she|her|herself|hers)\b", re.IGNORECASE)
_HE = re.compile(r"\b(?:he|him|his|himself)\b", re.IGNORECASE)
_FEMALE_ROLE = re.compile(r"(?:woman|wife|widow|mistress|ess|girl|mother|sister|nun|maid)$")
_MALE_ROLE = re.compile(r"(?<!wo)(?:man|monk|friar|father|brother|boy|lord)$")
# Capitalised words that open sentences or name no one.
_NOT_PEOPLE = frozenset(
    _words(
        "The A An Every Nobody Everyone Some Most Old New Its Their His Her In On At By Of And "
        "But When Where While Since After Before Beyond Below Above There This That These Those"
    )
)
# A role is a person's when its head noun is an occupation of the tables or ends
# like one (not a place: "a green river valley" is no one's trade).
_PERSONISH = re.compile(
    r"(?:keeper|maker|master|monger|seller|dealer|trader|farmer|hunter|fisher|teacher|"
    r"preacher|worker|miner|driver|rider|writer|officer|minister|manager|owner|lender|"
    r"ist|ian|man|woman|wife|widow|mistress|smith|wright|herd|maid|priest|monk|nun|lord|"
    r"lady|king|queen|chief|captain|healer|witch|wizard|mage|cook|clerk|thief|spy|guard|"
    r"agent|doctor|boss|fixer|medic|pilot|broker|merchant|sheriff|widower|son|daughter)$"
)
# Names of bodies rather than people, beyond the places and factions the world knows.
_BODIES = re.compile(
    r"^(?:security|group|systems|dynamics|holdings|inc|ltd|press|media|news|times|gazette|"
    r"well|spring|springs|farm|ranch|works|yards|exchange|market|fair)$",
    re.IGNORECASE,
)
# Slots a cast deals its named people over, at least: a small cast meets some of them.
PEOPLE_SPREAD = 6
DEFAULT_AGES = (25, 65)


@dataclass(frozen=True, slots=True)
class Person:
    """Someone the world's text names, with what it says of them."""

    name: str  # as the text writes it, title included: "Father Ewan MacNeil"
    given: str  # what the stories call them: "Ewan"
    bare: str  # the name without its title: "Ewan MacNeil"
    gender: str | None  # stated by a title, the role or pronouns; None when not
    occupation: Occupation | None  # None when the text gives no role


def _role(after: str, title: str | None) -> str:
    """The role the text gives right after a name, or the title's own."""
    words: list[str] = []
    found = _APPOSITION.match(after)
    of = _OF.match(after) if title in OFFICES else None
    if found:
        phrase = found.group("role")
    elif of:
        phrase = of.group("what")
    else:
        phrase = ""
    for word in phrase.split():
        if word in _ROLE_STOP:
            break
        words.append(word)
    role = " ".join(words)
    if of and not found and role and title:
        return f"{title.lower()} of the {role}"
    if role:
        return role
    if title in _ROLE_OF_TITLE:
        return _ROLE_OF_TITLE[title]
    return title.lower() if title in OFFICES else ""


def _gender(title: str | None, role: str, sentence_after: str) -> str | None:
    if title and TITLES.get(title):
        return TITLES[title]
    head = role.split(" of ")[0].split()[-1] if role else ""
    if head and _FEMALE_ROLE.search(head):
        return "female"
    if head and _MALE_ROLE.search(head):
        return "male"
    she, he = bool(_SHE.search(sentence_after)), bool(_HE.search(sentence_after))
    if she != he:  # only when the sentence speaks of one of them
        return "female" if she else "male"
    return None


def _occupation(tables: Tables, role: str, level: int) -> Occupation:
    """The role as an occupation: the tables' own ages and class for its head noun."""
    head = role.split(" of ")[0].split()[-1].lower()
    known = [
        o
        for group in (*tables.occupations.values(), *tables.cues.values())
        for o in group
        if o.title.lower() in (role.lower(), head) and o.fits_level(level)
    ]
    if known:
        best = known[0]
        return Occupation(role, best.age_min, best.age_max, best.social, best.tags, None, 0)
    return Occupation(role, *DEFAULT_AGES, "middle")


def _a_trade(tables: Tables, role: str, not_a_trade: re.Pattern[str]) -> bool:
    head = role.split(" of ")[0].split()[-1].lower()
    if not_a_trade.search(head):
        return False
    titles = {o.title.lower() for group in tables.occupations.values() for o in group}
    return head in titles or role.lower() in titles or bool(_PERSONISH.search(head))


def mine_people(
    tables: Tables, text: str, level: int, not_a_name: re.Pattern[str]
) -> tuple[Person, ...]:
    """The people ``text`` names. ``not_a_name`` matches the last word of a place or
    a faction ("Vale", "Company"): such a name, or such a role, is no person."""
    people: dict[str, Person] = {}
    for match in _PERSON.finditer(text):
        title, name = match.group("title"), match.group("name")
        words = name.split()
        if (
            words[0] in _NOT_PEOPLE
            or words[0] in TITLES
            or words[0].endswith(("'s", "’s"))
            or not_a_name.search(words[-1])
            or _BODIES.search(words[-1])
        ):
            continue
        after = text[match.end() : match.end() + 200]
        role = _role(after, title)
        before = _BEFORE.search(text[max(match.start() - 60, 0) : match.start()])
        if not role and not title and before:
            role = before.group("role")
        if not title and (len(words) < 2 or not role or not _a_trade(tables, role, not_a_name)):
            continue  # a capitalised phrase with no title or trade names no one we know
        end = re.search(r"[.!?;](?:\s|$)", after)
        sentence = after[: end.start()] if end else after
        full = f"{title} {name}" if title else name
        key = name.lower()
        if key in people:
            continue
        gender = _gender(title, role, sentence)
        people[key] = Person(
            name=full,
            given=words[0],
            bare=name,
            gender=gender,
            occupation=_occupation(tables, role, level) if role else None,
        )
    return tuple(people.values())


def cast_people(
    people: tuple[Person, ...], cast_key: str, avoid: tuple[str, ...]
) -> dict[int, Person]:
    """The slots of a cast its named people take, each at most once: none that
    the designer or the library already has."""
    taken = {name.lower() for name in avoid}
    castable = [
        p
        for p in people
        if p.occupation is not None and p.name.lower() not in taken and p.bare.lower() not in taken
    ]
    if not castable:
        return {}
    slots = shuffled(f"{cast_key}|people", max(2 * len(castable), PEOPLE_SPREAD))
    return dict(zip(slots, castable, strict=False))


def mentioned(people: tuple[Person, ...], slot: int, rng: random.Random, not_: str) -> str:
    """A named person of the world for this NPC's story to mention, or ""."""
    others = [p.name for p in people if p.name != not_]
    return others[(slot // 3 + rng.randrange(2)) % len(others)] if others else ""
