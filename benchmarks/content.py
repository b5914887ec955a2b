"""Content benchmark: is the offline generator faithful, consistent and varied?

    python benchmarks/content.py [--count 100] [--seed 7] [--samples 2] [--world NAME] [--strict]

For every shipped world and ten free-text settings, generates a cast of
--count NPCs with the procedural backend and reports, per world and in all:
contradictions found by the project's rule checker
(app/services/content_check.py), sentences repeated verbatim in appearance,
backstory, motivation and secret (own name and numbers blanked), the share of
distinct sample lines, and the share of NPCs whose occupation or backstory
uses the world's own nouns. Targets: 0 / 0 / >= 90% / >= 80% (grounding for
the rich shipped worlds). A last line shows how a cast treats the people a
world's text names (cast once each, nobody else with their names).
--samples N prints N whole NPCs per world to read.
The period each world is checked against is written here, not taken from the
generator, so a generator that misreads the period is caught.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.backends.procedural_period import Period, tech_level
from app.models import World
from app.services.content_check import (
    CastReport,
    OccupationFacts,
    cast_report,
    parse_content_rules,
    world_nouns,
)

# Shipped world stem -> the year the checker holds it to (None: no period rules).
SHIPPED_YEARS: dict[str, int | None] = {
    "roman_empire": 110,
    "saltmere": 1400,
    "ashmere_vale": 1300,  # high fantasy: medieval technology
    "cinder_gulch": 1878,
    "harrow_bay": 2025,
    "neon_harbor": 2097,
    "colony_kepler": 2450,
    "lanternfall": 1700,  # an unnamed age of lamps and canals: nothing industrial
}
# Free-text settings as a user types them, with the year each is set in.
SETTINGS: tuple[tuple[str, int], ...] = (
    ("lighthouse island, Outer Hebrides 1890", 1890),
    ("Silk Road caravan town, 1250", 1250),
    ("Victorian Hebrides, 1890", 1890),
    ("A Caribbean pirate port in 1715, run by a governor who takes bribes", 1715),
    ("Gold-rush mining camp in the Yukon, 1898", 1898),
    ("Ravenna under the Goths, 6th century", 550),
    ("A hospital in Chicago, present day", 2024),
    ("Orbital shipyard above Titan, 25th century", 2450),
    ("Fallout shelters under a drowned city, 2150, twenty years after the collapse", 2150),
    ("A wizard's academy on a floating island, in an age of magic", 1300),
)
# A world whose text names people: each must be cast at most once, nobody else
# may carry their names, and other NPCs' stories may name them.
PEOPLE_WORLD = World(
    name="Hebrides with people",
    era="Victorian",
    time_period="1890",
    detail=(
        "A lighthouse island in the Outer Hebrides. Father Ewan MacNeil, the parish priest, "
        "keeps the little church above the harbour. Captain Isobel Reid of the revenue cutter "
        "has sworn to hang every smuggler she catches. Morag Bain, the harbourmaster's widow, "
        "runs the inn by the pier."
    ),
)
TARGETS = "targets: 0 contradictions, 0 repeated sentences, >= 90% distinct lines, >= 80% grounded"


def _services() -> Any:
    from app.wiring import Services
    from config import Settings

    return Services(Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp())))  # type: ignore[call-arg]


def _occupations(services: Any) -> dict[str, OccupationFacts]:
    """Every occupation of the tables and of world_cues.json by title; a title in
    several (a cooper) gets the widest age range, all tags, and a class only
    when they agree."""
    tables = services.assets.tables()
    facts: dict[str, OccupationFacts] = {}
    groups = (*tables.occupations.values(), *tables.cues.values())
    for occupation in (o for group in groups for o in group):
        title = occupation.title.lower()
        seen = facts.get(title)
        if seen is None:
            facts[title] = OccupationFacts(
                occupation.age_min, occupation.age_max, occupation.social, occupation.tags
            )
            continue
        facts[title] = OccupationFacts(
            min(seen.age_min, occupation.age_min),
            max(seen.age_max, occupation.age_max),
            seen.social if seen.social == occupation.social else "",
            tuple(dict.fromkeys((*seen.tags, *occupation.tags))),
        )
    return facts


def _stock_words(services: Any) -> set[str]:
    """Words the generator uses in any world: they show no grounding."""
    import re

    tables = services.assets.tables()
    text = " ".join(" ".join(e.text for e in entries) for entries in tables.npc["generic"].values())
    text += " ".join(t.description for t in services.assets.personalities().traits.values())
    return set(re.findall(r"[a-z]+", text.lower()))


async def _cast(services: Any, world: World, count: int, seed: int) -> list[dict[str, Any]]:
    from tests import casts

    outcomes = await casts.outcomes(services, world, count, seed=seed, backend="procedural")
    return [o.npc.model_dump(exclude={"timing"}) for o in outcomes if o.npc is not None]


async def _people_line(services: Any, count: int, seed: int) -> str:
    """How a cast treats the people its world's text names."""
    from app.backends.procedural_world import read_world

    people = read_world(services.assets.tables(), PEOPLE_WORLD).people
    cast = await _cast(services, PEOPLE_WORLD, count, seed)
    cast_once = sum(1 for p in people if [n["name"] for n in cast].count(p.name) == 1)
    sharing = sum(1 for n in cast for p in people if p.bare in n["name"] and n["name"] != p.name)
    naming = sum(1 for n in cast if any(p.name in n["backstory"] for p in people))
    return (
        f"named people ({PEOPLE_WORLD.name}, {len(cast)} NPCs): {len(people)} mined, "
        f"{cast_once} cast exactly once, {sharing} NPCs with one of their names, "
        f"{naming} backstories name one"
    )


def _row(label: str, report: CastReport) -> str:
    return (
        f"{label[:38]:38} {report.npcs:4} {len(report.findings):6} {report.repeated_sentences:6}"
        f" {report.distinct_line_share:7.0%} {report.grounded_share:7.0%}"
    )


def _print_npc(npc: dict[str, Any]) -> None:
    print(f"  - {npc['name']}, {npc['age']}, {npc['gender']}, {npc['occupation']}")
    print(f"    traits: {', '.join(npc['personality_traits'])}")
    for field in ("appearance", "backstory", "motivation", "secret", "speech_style"):
        print(f"    {field}: {npc[field]}")
    for line in npc["sample_lines"]:
        print(f"    > {line}")


async def run(count: int, seed: int, samples: int, only: str | None, strict: bool) -> int:
    import orjson

    services = _services()
    rules = parse_content_rules(orjson.loads((ROOT / "assets" / "content_rules.json").read_bytes()))
    personalities = services.assets.personalities()
    occupations = _occupations(services)
    stock = _stock_words(services)
    worlds: list[tuple[str, World, int | None]] = []
    for stem, year in SHIPPED_YEARS.items():
        worlds.append((stem, services.worlds.resolve(stem, None).world, year))
    for text, year in SETTINGS:
        worlds.append((text, services.worlds.resolve(None, text).world, year))
    if only:
        worlds = [w for w in worlds if only.lower() in w[0].lower()]
    print(f"{'world':38} {'npcs':>4} {'contra':>6} {'repeat':>6} {'lines':>7} {'ground':>7}")
    total = CastReport()
    failing = 0
    for label, world, year in worlds:
        cast = await _cast(services, world, count, seed)
        report = cast_report(
            cast,
            Period(year, tech_level(year)),
            rules,
            world_nouns=world_nouns(world.detail_text() + "\n" + world.era, stock),
            personalities=personalities,
            occupations=occupations,
        )
        print(_row(label, report))
        for finding in report.findings[:5]:
            print(f"    ! {finding}")
        for sentence, extra in report.repeated.most_common(3):
            print(f"    = {extra + 1}x {sentence}")
        for npc in cast[:samples]:
            _print_npc(npc)
        total.npcs += report.npcs
        total.findings += report.findings
        total.repeated.update(report.repeated)
        total.lines += report.lines
        total.distinct_lines += report.distinct_lines
        total.grounded += report.grounded
        failing += bool(report.findings or report.repeated_sentences)
        failing += report.distinct_line_share < 0.9
    print(_row("all", total))
    print(TARGETS)
    if not only:
        print(await _people_line(services, count, seed))
    await services.aclose()
    return 1 if strict and failing else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--samples", type=int, default=0, help="NPCs to print per world")
    parser.add_argument("--world", help="only worlds whose name holds this")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a world misses a target")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.count, args.seed, args.samples, args.world, args.strict)))


if __name__ == "__main__":
    main()
