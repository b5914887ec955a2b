"""Browse the personality data: traits and archetypes, filtered."""

from __future__ import annotations

from app.personality import PersonalityData

POLARITIES = ("all", "positive", "neutral", "negative")
TRAIT_COLUMNS = ["trait", "polarity", "opposite", "description"]
ARCHETYPE_COLUMNS = ["archetype", "traits", "description"]


def _matches(query: str, *texts: str) -> bool:
    return not query or any(query in text.lower() for text in texts)


def filter_traits(data: PersonalityData, query: str = "", polarity: str = "all") -> list[list[str]]:
    """Rows of traits whose name, opposite or description contains ``query``."""
    query = query.strip().lower()
    return [
        [trait.name, trait.polarity, trait.opposite or "", trait.description]
        for trait in sorted(data.traits.values(), key=lambda t: t.name)
        if polarity in ("all", trait.polarity)
        and _matches(query, trait.name, trait.opposite or "", trait.description)
    ]


def filter_archetypes(data: PersonalityData, query: str = "") -> list[list[str]]:
    """Rows of archetypes whose name, traits or description contains ``query``."""
    query = query.strip().lower()
    return [
        [archetype.name, ", ".join(archetype.traits), archetype.description]
        for archetype in data.archetypes
        if _matches(query, archetype.name, " ".join(archetype.traits), archetype.description)
    ]
