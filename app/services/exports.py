"""Exports of NPCs (JSON, JSON Lines, CSV, Markdown, Character Cards V2/V3 as
JSON or PNG, V3 as CHARX, a world as a zip of cards or as SillyTavern World Info) and the
import of cards.

The builders are pure functions returning bytes; the UI writes them to files.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
import unicodedata
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import orjson

from app.errors import InputError, NPCForgeError
from app.models import NPC, World
from app.services.card_schemas import SPEC_V2, SPEC_V3
from app.services.card_store import CardStore, KeptCard
from app.services.library import EVERYONE
from utils.jsonio import dumps

if TYPE_CHECKING:
    from app.services.library import Library
    from app.services.worlds import WorldService

CSV_FIELDS = (
    "id", "name", "age", "gender", "occupation", "personality_traits", "appearance", "backstory",
    "motivation", "secret", "speech_style", "sample_lines", "world", "backend", "seed", "tags",
    "relationships",
)  # fmt: skip
# A cell a spreadsheet would run as a formula starts with one of these (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# File names: at most this many UTF-8 bytes before the suffix (file systems allow 255).
MAX_STEM_BYTES = 120
# Characters no file system takes in a name, and names Windows reserves.
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')
_RESERVED = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?", re.IGNORECASE)


def safe_filename(text: str, suffix: str, default: str = "npc") -> str:
    """A file name safe on every OS that keeps the name's letters in any script:
    ``Zoë 李小龍`` -> ``Zoë_李小龍``, ``../etc/passwd`` -> ``etc_passwd``."""
    stem = unicodedata.normalize("NFC", text)
    stem = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in stem)
    stem = _FORBIDDEN.sub("_", stem)
    stem = re.sub(r"\s+", "_", stem)
    stem = re.sub(r"\.{2,}", "_", stem)
    stem = re.sub(r"_{2,}", "_", stem).strip("._- ")
    encoded = stem.encode()[:MAX_STEM_BYTES]
    stem = encoded.decode(errors="ignore").strip("._- ")
    if _RESERVED.fullmatch(stem):
        stem = f"_{stem}"
    return f"{stem or default}{suffix}"


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``stem_2.suffix``, ... when the zip already has it (any case)."""
    stem, dot, suffix = name.partition(".")
    candidate, counter = name, 2
    while candidate.lower() in used:
        candidate = f"{stem}_{counter}{dot}{suffix}"
        counter += 1
    used.add(candidate.lower())
    return candidate


def csv_safe(value: object) -> object:
    """A text cell a spreadsheet shows as text, never runs as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


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
        row: dict[str, object] = {name: getattr(npc, name) for name in CSV_FIELDS}
        row["age"] = "" if npc.age is None else npc.age
        for name in ("personality_traits", "sample_lines", "tags"):
            row[name] = "; ".join(getattr(npc, name))
        row["relationships"] = _relationships_text(npc)
        writer.writerow({name: csv_safe(value) for name, value in row.items()})
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
        f"*{_md(npc.occupation)} · {npc.age_text()} · {_md(npc.gender)} · {_md(npc.world)}*",
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


@dataclass(frozen=True, slots=True)
class ExportInput:
    """What an export is made of: the NPCs, their world, the cards kept from
    imports (by NPC id), the time the export is made (V3 dates), and whether it
    is the whole world (a zip and the world's name even for a world of one)."""

    npcs: Sequence[NPC]
    world: World
    kept: Mapping[str, KeptCard] = field(default_factory=dict)
    now: float = 0.0
    whole_world: bool = False
    # The NPC's portrait as PNG (a card's picture); None = an initials placeholder.
    portrait: Callable[[NPC], bytes] | None = None

    @property
    def one(self) -> bool:
        return len(self.npcs) == 1 and not self.whole_world


@dataclass(frozen=True, slots=True)
class ExportFile:
    """An export ready to download: a safe file name and its bytes."""

    filename: str
    data: bytes
    count: int


CardFile = Literal["json", "png", "charx"]
CARD_SUFFIX: dict[CardFile, str] = {"json": ".card.json", "png": ".png", "charx": ".charx"}


def _card_bytes(given: ExportInput, npc: NPC, spec: str, kind: CardFile) -> bytes:
    from app.services.cards import CardSubject

    art = given.portrait(npc) if given.portrait is not None else None
    subject = CardSubject(npc, given.world, given.kept.get(npc.id), given.now, art)
    if kind == "png":
        return subject.png(spec)
    if kind == "charx":
        return subject.charx()
    return dumps(subject.card(spec), pretty=True)


def cards_zip(given: ExportInput, spec: str, kind: CardFile) -> bytes:
    """One card file per NPC; names made unique within the zip."""
    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for npc in given.npcs:
            name = unique_name(safe_filename(npc.name, CARD_SUFFIX[kind]), used)
            archive.writestr(name, _card_bytes(given, npc, spec, kind))
    return buffer.getvalue()


def _cards(spec: str, kind: CardFile) -> Builder:
    def build(given: ExportInput) -> tuple[bytes, str]:
        if given.one:
            return _card_bytes(given, given.npcs[0], spec, kind), CARD_SUFFIX[kind]
        return cards_zip(given, spec, kind), ".cards.zip"

    return build


def world_info(given: ExportInput) -> tuple[bytes, str]:
    """The world's sections, the NPCs' relationships and the lorebook entries of
    their imported cards, as SillyTavern World Info."""
    from app.services.lorebook import sillytavern_world_info, world_book

    own = {
        npc_id: book
        for npc_id, kept in given.kept.items()
        if isinstance(book := kept.card.get("data", {}).get("character_book"), dict)
    }
    book = world_book(given.world, given.npcs, own)
    return dumps(sillytavern_world_info(book), pretty=True), ".lorebook.json"


def _markdown(given: ExportInput) -> tuple[bytes, str]:
    npcs = given.npcs
    text = npc_markdown(npcs[0]) if given.one else cast_markdown(npcs, npcs[0].world)
    return text.encode(), ".md"


Builder = Callable[[ExportInput], tuple[bytes, str]]
# Label (as the UI and the API name it) -> how to build it.
EXPORT_FORMATS: dict[str, Builder] = {
    "JSON": lambda given: (npcs_json(given.npcs), ".json"),
    "JSON Lines": lambda given: (npcs_jsonl(given.npcs), ".jsonl"),
    "CSV": lambda given: (npcs_csv(given.npcs).encode(), ".csv"),
    "Markdown": _markdown,
    "Character Card V2 (JSON)": _cards(SPEC_V2, "json"),
    "Character Card V2 (PNG)": _cards(SPEC_V2, "png"),
    "Character Card V3 (JSON)": _cards(SPEC_V3, "json"),
    "Character Card V3 (PNG)": _cards(SPEC_V3, "png"),
    "Character Card V3 (CHARX)": _cards(SPEC_V3, "charx"),
    "SillyTavern World Info (JSON)": world_info,
}
SCOPES = ("this NPC", "its whole world")


def build_export(given: ExportInput, fmt: str) -> ExportFile:
    """Bytes of the NPCs in a format (CPU work: run it in a thread)."""
    builder = EXPORT_FORMATS.get(fmt)
    if builder is None:
        raise InputError(f"Unknown export format {fmt!r}; pick one of {', '.join(EXPORT_FORMATS)}.")
    data, suffix = builder(given)
    npcs = given.npcs
    one = given.one and builder is not world_info  # a lorebook is the world's
    stem = npcs[0].name if one else npcs[0].world
    return ExportFile(safe_filename(stem, suffix), data, len(npcs))


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import of card files kept, what it mended or could not carry
    (notes), and why the refused files were refused (problems)."""

    imported: list[NPC]
    problems: list[str]
    notes: list[str] = field(default_factory=list)


class ExportService:
    """Exports of library NPCs (one NPC or its whole world) and card imports."""

    def __init__(
        self,
        library: Library,
        worlds: WorldService,
        cards: CardStore,
        clock: Callable[[], float] = time.time,
        portrait: Callable[[NPC], bytes] | None = None,
    ) -> None:
        self.library = library
        self.worlds = worlds
        self.cards = cards
        self.clock = clock
        self.portrait = portrait  # blocking: called in the export's thread

    def seen_by(self, library: Library) -> ExportService:
        """The same service exporting from and importing into one viewer's view."""
        return ExportService(library, self.worlds, self.cards, self.clock, self.portrait)

    async def export(self, npc_id: str, scope: str, fmt: str) -> ExportFile:
        if scope not in SCOPES:
            raise InputError(f"Export {scope!r}? Pick one of: {', '.join(SCOPES)}.")
        if fmt not in EXPORT_FORMATS:
            raise InputError(
                f"Unknown export format {fmt!r}; pick one of {', '.join(EXPORT_FORMATS)}."
            )
        npcs = (
            [await self.library.get(npc_id)]
            if scope == SCOPES[0]
            else await self.library.world_npcs(npc_id)
        )

        def build() -> ExportFile:
            kept = {npc.id: card for npc in npcs if (card := self.cards.get(npc.id)) is not None}
            world = self.worlds.world_for(npcs[0].world)
            given = ExportInput(
                npcs,
                world,
                kept,
                self.clock(),
                whole_world=scope == SCOPES[1],
                portrait=self.portrait,
            )
            return build_export(given, fmt)

        return await asyncio.to_thread(build)

    def _read(self, files: Sequence[tuple[str, bytes]]) -> tuple[ImportReport, list[KeptCard]]:
        """The cards of the files, mapped to NPCs, and each card as it was read."""
        from app.services.card_import import read_card
        from app.services.card_mapping import map_card

        imported: dict[str, tuple[NPC, KeptCard, str]] = {}
        problems: list[str] = []
        notes: list[str] = []
        for name, data in self._each_card(files, problems):
            try:
                read = read_card(data, name)
                mapped = map_card(read.card, name)
            except NPCForgeError as exc:
                problems.append(str(exc))
                continue
            except (ValueError, TypeError, KeyError, RecursionError) as exc:
                # A card this code did not foresee: refuse it, keep the others.
                reason = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
                problems.append(f"{name}: not a card NPC Forge can read ({reason}).")
                continue
            npc = mapped.npc
            if npc.id in imported:
                notes.append(f"{name}: the same card as {imported[npc.id][2]}; imported once.")
                continue
            notes += read.notes + mapped.notes
            imported[npc.id] = (
                npc,
                KeptCard(read.card, npc, read.v2, read.png, read.archive),
                name,
            )
        npcs = [npc for npc, _kept, _name in imported.values()]
        return ImportReport(npcs, problems, notes), [kept for _, kept, _ in imported.values()]

    @staticmethod
    def _each_card(
        files: Sequence[tuple[str, bytes]], problems: list[str]
    ) -> list[tuple[str, bytes]]:
        from app.services.card_import import card_files

        each = []
        for name, data in files:
            try:
                each += card_files(data, name)
            except NPCForgeError as exc:
                problems.append(str(exc))
        return each

    async def import_cards(
        self, files: Sequence[tuple[str, bytes]], owner: str | None = None
    ) -> ImportReport:
        """Character Cards V1/V2/V3 (JSON, PNG or CHARX) into the library, each kept
        whole beside its NPC; one bad file never costs the others, each problem names
        its file. An import is the importer's, and never changes who owns an NPC
        already there: the importer's own (or, for an admin, anyone's) is replaced
        in place; someone else's stays theirs and the importer gets a copy."""
        report, cards = await asyncio.to_thread(self._read, files)
        placed = await self._placed(report.imported, owner)
        for npc in report.imported:
            stored, existing = placed[npc.id]
            if stored.id != npc.id:
                report.notes.append(
                    f"{npc.name}: the card is of an NPC that is not yours to change; "
                    "imported as your own copy."
                )
            if existing is not None and existing.model_dump(exclude={"owner"}) != stored.model_dump(
                exclude={"owner"}
            ):
                report.notes.append(
                    f"{npc.name} was in the library already, changed since; the card as "
                    "imported now replaces that version."
                )
        final = [placed[npc.id][0] for npc in report.imported]
        # Each card is kept under its NPC's final id, beside the NPC as stored, so an
        # unedited export gives the card back as it came.
        kept = [replace(card, imported=placed[card.imported.id][0]) for card in cards]
        await asyncio.to_thread(self._keep, kept)
        await self.library.save(final)
        return replace(report, imported=final)

    def _keep(self, cards: Sequence[KeptCard]) -> None:
        for card in cards:
            self.cards.put(card)

    async def _placed(
        self, npcs: Sequence[NPC], owner: str | None
    ) -> dict[str, tuple[NPC, NPC | None]]:
        """Per card id: the NPC to store, and the one it replaces (None: new)."""
        everyone = self.library.as_seen_by(EVERYONE)
        found = {npc.id: npc for npc in await everyone.get_many([n.id for n in npcs])}
        copies = {npc.id: npc.owned_by(owner) for npc in npcs if npc.id in found}
        found |= {n.id: n for n in await everyone.get_many([c.id for c in copies.values()])}
        placed: dict[str, tuple[NPC, NPC | None]] = {}
        for card_npc in npcs:
            npc, there = card_npc, found.get(card_npc.id)
            if there is not None and not self.library.viewer.may_change(there):
                npc = copies[card_npc.id]  # someone else's: the importer's own copy beside it
                there = found.get(npc.id)
            keeps = there.owner if there is not None else owner  # an import never moves one
            # ...nor shares or unshares one: a card that says "shared" is not a choice made here.
            shared = there.shared if there is not None else False
            placed[card_npc.id] = (npc.model_copy(update={"owner": keeps, "shared": shared}), there)
        return placed
