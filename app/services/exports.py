"""Exports of NPCs: JSON, JSON Lines, CSV, Markdown, and a zip of PNG cards.

Pure functions returning bytes or text; the UI writes them to files.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from app.errors import InputError, NPCForgeError
from app.models import NPC, World
from utils.jsonio import dumps

if TYPE_CHECKING:
    from app.services.library import Library
    from app.services.worlds import WorldService

CSV_FIELDS = (
    "id", "name", "age", "gender", "occupation", "personality_traits", "appearance", "backstory",
    "motivation", "secret", "speech_style", "sample_lines", "world", "backend", "seed", "tags",
    "relationships",
)  # fmt: skip
MAX_STEM = 80
# Letters NFKD does not split into a base letter and accents.
TRANSLITERATE = str.maketrans(
    {"Æ": "Ae", "æ": "ae", "Ø": "O", "ø": "o", "ß": "ss", "Œ": "Oe", "œ": "oe", "Þ": "Th",
     "þ": "th", "Ð": "D", "ð": "d", "Ł": "L", "ł": "l"}
)  # fmt: skip


def safe_filename(text: str, suffix: str, default: str = "npc") -> str:
    """An ASCII file name with no path parts: ``../Ærø Vale`` -> ``Aero_Vale``."""
    plain = unicodedata.normalize("NFKD", text.translate(TRANSLITERATE))
    ascii_text = plain.encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_text.replace(" ", "_"))
    stem = re.sub(r"\.{2,}", "_", stem).strip("._-")[:MAX_STEM].strip("._-")
    return f"{stem or default}{suffix}"


def _dump(npc: NPC) -> dict[str, object]:
    return npc.model_dump(mode="json")


def npcs_json(npcs: Sequence[NPC]) -> bytes:
    return orjson.dumps([_dump(npc) for npc in npcs], option=orjson.OPT_INDENT_2)


def npcs_jsonl(npcs: Sequence[NPC]) -> bytes:
    return b"".join(orjson.dumps(_dump(npc)) + b"\n" for npc in npcs)


def _relationships_text(npc: NPC) -> str:
    return "; ".join(f"{r.type}→{r.target_name} ({r.weight:+.2f})" for r in npc.relationships)


def npcs_csv(npcs: Sequence[NPC]) -> str:
    """One row per NPC; list fields joined with "; " (timing left out)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for npc in npcs:
        row: dict[str, object] = {field: getattr(npc, field) for field in CSV_FIELDS}
        for field in ("personality_traits", "sample_lines", "tags"):
            row[field] = "; ".join(getattr(npc, field))
        row["relationships"] = _relationships_text(npc)
        writer.writerow(row)
    return buffer.getvalue()


def _md(text: str) -> str:
    """NPC text made inert in Markdown: no raw HTML, no accidental headings."""
    text = text.replace("<", "&lt;")
    return "\\" + text if text.startswith("#") else text


def npc_markdown(npc: NPC) -> str:
    """A readable character sheet."""
    lines = [
        f"# {_md(npc.name)}",
        "",
        f"*{_md(npc.occupation)} · {npc.age} · {_md(npc.gender)} · {_md(npc.world)}*",
        "",
        f"**Personality:** {_md(', '.join(npc.personality_traits))}",
        "",
        "## Appearance",
        _md(npc.appearance),
        "",
        "## Backstory",
        _md(npc.backstory),
        "",
        "## Motivation",
        _md(npc.motivation),
        "",
        "## Secret",
        _md(npc.secret),
        "",
        "## Speech",
        _md(npc.speech_style),
        "",
        "## Sample lines",
        *(f"- “{_md(line)}”" for line in npc.sample_lines),
    ]
    if npc.relationships:
        lines += ["", "## Relationships"]
        lines += [
            f"- {r.type} of {_md(r.target_name)} ({r.weight:+.2f})"
            + (" (secret)" if r.secret else "")
            + (f": {_md(r.description)}" if r.description else "")
            for r in npc.relationships
        ]
    return "\n".join(lines) + "\n"


def cast_markdown(npcs: Sequence[NPC], title: str) -> str:
    sheets = "\n---\n\n".join(npc_markdown(npc) for npc in npcs)
    return f"# {_md(title)}\n\n{len(npcs)} characters.\n\n---\n\n{sheets}"


def cards_zip(npcs: Sequence[NPC], world: World | None) -> bytes:
    """One PNG Character Card per NPC; names made unique within the zip."""
    from app.services.cards import card_png, npc_to_card

    names_by_id = {npc.id: npc.name for npc in npcs}
    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for npc in npcs:
            name = safe_filename(npc.name, ".png")
            counter = 2
            while name in used:
                name = safe_filename(f"{npc.name}_{counter}", ".png")
                counter += 1
            used.add(name)
            archive.writestr(name, card_png(npc_to_card(npc, world, names_by_id), npc))
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import of card files kept, and why the others were refused."""

    imported: list[NPC]
    problems: list[str]


@dataclass(frozen=True, slots=True)
class ExportFile:
    """An export ready to download: a safe file name and its bytes."""

    filename: str
    data: bytes
    count: int


def _card_json(npcs: Sequence[NPC], world: World) -> tuple[bytes, str]:
    from app.services.cards import npc_to_card

    if len(npcs) == 1:
        return dumps(npc_to_card(npcs[0], world), pretty=True), ".card.json"
    return dumps([npc_to_card(npc, world) for npc in npcs], pretty=True), ".cards.json"


def _card_png(npcs: Sequence[NPC], world: World) -> tuple[bytes, str]:
    from app.services.cards import card_png, npc_to_card

    if len(npcs) == 1:
        return card_png(npc_to_card(npcs[0], world), npcs[0]), ".png"
    return cards_zip(npcs, world), ".cards.zip"


def _markdown(npcs: Sequence[NPC], world: World) -> tuple[bytes, str]:
    text = npc_markdown(npcs[0]) if len(npcs) == 1 else cast_markdown(npcs, npcs[0].world)
    return text.encode(), ".md"


Builder = Callable[[Sequence[NPC], World], tuple[bytes, str]]
# Label (as the UI and the API name it) -> how to build it.
EXPORT_FORMATS: dict[str, Builder] = {
    "JSON": lambda npcs, world: (npcs_json(npcs), ".json"),
    "JSON Lines": lambda npcs, world: (npcs_jsonl(npcs), ".jsonl"),
    "CSV": lambda npcs, world: (npcs_csv(npcs).encode(), ".csv"),
    "Markdown": _markdown,
    "Character Card V2 (JSON)": _card_json,
    "Character Card V2 (PNG)": _card_png,
}
SCOPES = ("this NPC", "its whole world")


def build_export(npcs: Sequence[NPC], world: World, fmt: str) -> ExportFile:
    """Bytes of ``npcs`` in a format (CPU work: run it in a thread)."""
    builder = EXPORT_FORMATS.get(fmt)
    if builder is None:
        raise InputError(f"Unknown export format {fmt!r}; pick one of {', '.join(EXPORT_FORMATS)}.")
    data, suffix = builder(npcs, world)
    stem = npcs[0].name if len(npcs) == 1 else npcs[0].world
    return ExportFile(safe_filename(stem, suffix), data, len(npcs))


class ExportService:
    """Exports of library NPCs, one NPC or its whole world."""

    def __init__(self, library: Library, worlds: WorldService) -> None:
        self.library = library
        self.worlds = worlds

    async def export(self, npc_id: str, scope: str, fmt: str) -> ExportFile:
        if scope not in SCOPES:
            raise InputError(f"Export {scope!r}? Pick one of: {', '.join(SCOPES)}.")
        npcs = (
            [await self.library.get(npc_id)]
            if scope == SCOPES[0]
            else await self.library.world_npcs(npc_id)
        )
        world = await asyncio.to_thread(self.worlds.world_for, npcs[0].world)
        return await asyncio.to_thread(build_export, npcs, world, fmt)

    async def import_cards(self, files: Sequence[tuple[str, bytes]]) -> ImportReport:
        """Character Cards V2/V3 (JSON or PNG) into the library; one bad file
        never costs the others, and each problem names its file."""
        from app.services.cards import card_to_npc, read_card

        imported, problems = [], []
        for name, data in files:
            try:
                imported.append(card_to_npc(read_card(data, name)))
            except NPCForgeError as exc:
                problems.append(str(exc))
            except (ValueError, TypeError, KeyError, RecursionError) as exc:
                # A card this code did not foresee: refuse it, keep the others.
                problems.append(f"{name}: not a card this version can read ({type(exc).__name__}).")
        await self.library.save(imported)
        return ImportReport(imported, problems)
