"""Which English an NPC speaks: eSpeak NG's accents, picked by the NPC's world.

The lines are English whatever the world, so the voice stays English; where
the world says where it is, the accent follows: the Hebrides sound Scottish,
a Caribbean pirate port Caribbean, a Wild West town American, Victorian
London received pronunciation. The world's name, era and period decide
before its detail (a Caribbean port whose detail mentions a Scottish sailor
stays Caribbean), and within each the order below (a Victorian world in the
Hebrides is Scottish, not RP); a world that names no place keeps eSpeak's
default English.
"""

from __future__ import annotations

import re

from app.models import World

DEFAULT_ACCENT = "en"
# eSpeak NG voice name -> the words of a world that call for it, most specific first.
ACCENTS: dict[str, re.Pattern[str]] = {
    "en-gb-scotland": re.compile(
        r"scotland|scottish|scots\b|hebrid|highlands|gaelic|glasgow|edinburgh|aberdeen"
        r"|orkney|shetland|isle of skye|\bclyde",
        re.I,
    ),
    "en-029": re.compile(
        r"caribbean|jamaica|barbados|tortuga|antilles|port royal|trinidad|bahamas", re.I
    ),
    "en-gb-x-gbclan": re.compile(r"lancashire|manchester|liverpool|yorkshire|mill town", re.I),
    "en-gb-x-gbcwmd": re.compile(r"birmingham|black country|west midlands", re.I),
    "en-us": re.compile(
        r"wild west|old west|weird west|frontier town|american|united states|texas|arizona"
        r"|new york|chicago|california|deadwood|tombstone|dodge city|louisiana|kentucky",
        re.I,
    ),
    "en-gb-x-rp": re.compile(
        r"victorian|edwardian|regency|london|england\b|english countryside|oxford|cambridge",
        re.I,
    ),
}
LANGUAGES = frozenset({DEFAULT_ACCENT, *ACCENTS})


def accent_for(world: World | None) -> str:
    """The eSpeak NG voice name for NPCs of ``world``."""
    if world is None:
        return DEFAULT_ACCENT
    for text in (f"{world.name} {world.era} {world.time_period}", world.detail_text()):
        for name, pattern in ACCENTS.items():
            if pattern.search(text):
                return name
    return DEFAULT_ACCENT
