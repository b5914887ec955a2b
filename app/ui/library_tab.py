"""The Library tab: search, open, edit, regenerate, relate, export, import NPCs."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from app.clients import Services
from app.errors import InputError, NPCForgeError
from app.models import NPC, RELATIONSHIP_TYPES, Relationship
from app.services.graph import relationship_graph
from app.services.library import EDITABLE_FIELDS, MAX_RESULTS, Library, field_text
from app.services.prompts import PROFILE_FIELDS
from app.ui.render import npc_card
from utils.jsonio import atomic_write_bytes, dumps

ALL_WORLDS = "(all worlds)"
EXPORT_FORMATS = ("JSON", "JSON Lines", "CSV", "Markdown", "Character Card V2 (JSON)",
                  "Character Card V2 (PNG)")  # fmt: skip
RESULT_COLUMNS = ["#", "name", "occupation", "world", "match", "id"]
RELATIONSHIP_COLUMNS = ["from", "to", "type", "weight", "secret", "description"]
# Relationship generation looks at this many NPCs of a world at most.
MAX_CAST_FOR_RELATIONSHIPS = 30


def _error(exc: NPCForgeError) -> gr.Error:
    return gr.Error(str(exc), print_exception=False)


def _choice(npc: NPC) -> tuple[str, str]:
    return (f"{npc.name} · {npc.occupation} ({npc.world})", npc.id)


class LibraryHandlers:
    """Plain methods, tested directly; the tab wires them to components."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.export_dir = Path(tempfile.mkdtemp(prefix="npc-forge-library-"))

    @property
    def library(self) -> Library:
        return self.services.library

    # -- finding ---------------------------------------------------------------------
    async def world_choices(self) -> list[str]:
        return [ALL_WORLDS, *await self.library.worlds()]

    async def refresh_worlds(self, current: str | None) -> dict[str, Any]:
        choices = await self.world_choices()
        return gr.update(choices=choices, value=current if current in choices else ALL_WORLDS)

    @staticmethod
    def _world(world: str | None) -> str | None:
        return None if not world or world == ALL_WORLDS else world

    async def search(
        self, query: str, k: float, world: str | None, tag: str | None
    ) -> tuple[list[list[Any]], dict[str, Any], str]:
        """NPCs closest in meaning to the query: rows, choices to open, a status line."""
        try:
            hits = await self.library.search(
                query, k=int(k), world=self._world(world), tag=(tag or "").strip() or None
            )
        except NPCForgeError as exc:
            raise _error(exc) from None
        rows = [
            [
                rank,
                hit.npc.name,
                hit.npc.occupation,
                hit.npc.world,
                f"{1 - hit.distance:.2f}",
                hit.npc.id,
            ]
            for rank, hit in enumerate(hits, 1)
        ]
        choices = [_choice(hit.npc) for hit in hits]
        status = f"{len(hits)} closest to “{query.strip()}”" if hits else "No NPC matches yet."
        return rows, gr.update(choices=choices, value=choices[0][1] if choices else None), status

    async def list_npcs(
        self, world: str | None, tag: str | None
    ) -> tuple[list[list[Any]], dict[str, Any], str]:
        npcs = await self.library.list_npcs(
            world=self._world(world), tag=(tag or "").strip() or None
        )
        rows = [[i, n.name, n.occupation, n.world, "", n.id] for i, n in enumerate(npcs, 1)]
        choices = [_choice(npc) for npc in npcs]
        total = await self.library.count()
        status = f"{len(npcs)} NPCs shown · {total} in the library"
        return rows, gr.update(choices=choices, value=choices[0][1] if choices else None), status

    # -- one NPC ---------------------------------------------------------------------
    async def open(self, npc_id: str | None, field: str | None) -> tuple[str, str]:
        """The card and the edit box for the chosen field."""
        if not npc_id:
            return "<p>Search or list, then choose an NPC.</p>", ""
        try:
            npc = await self.library.get(npc_id)
        except NPCForgeError as exc:
            raise _error(exc) from None
        return npc_card(npc, 1), field_text(npc, field or "backstory")

    async def field_value(self, npc_id: str | None, field: str) -> str:
        if not npc_id:
            return ""
        return field_text(await self.library.get(npc_id), field)

    async def save_field(self, npc_id: str | None, field: str, value: str) -> tuple[str, str]:
        """Set a field by hand."""
        try:
            npc = await self.library.edit_field(self._required(npc_id), field, value)
        except NPCForgeError as exc:
            raise _error(exc) from None
        return npc_card(npc, 1), f"Saved {field} of {npc.name}."

    async def regenerate_field(
        self, npc_id: str | None, field: str, backend: str | None, temperature: float
    ) -> tuple[str, str, str]:
        """A new value for one field, the rest given to the backend as context."""
        try:
            npc = await self.library.get(self._required(npc_id))
            refiner = self.services.refiner(backend)
            world = await asyncio.to_thread(self.services.world_for, npc.world)
            new = await refiner.regenerate_field(npc, field, world, temperature=float(temperature))
            await self.library.replace(new)
        except NPCForgeError as exc:
            raise _error(exc) from None
        return npc_card(new, 1), field_text(new, field), f"New {field} for {new.name}."

    async def regenerate_npc(
        self, npc_id: str | None, locked: list[str] | None, backend: str | None, temperature: float
    ) -> tuple[str, str]:
        """A new take on the NPC keeping the locked fields."""
        try:
            npc = await self.library.get(self._required(npc_id))
            world = await asyncio.to_thread(self.services.world_for, npc.world)
            new = await self.services.refiner(backend).regenerate_npc(
                npc, locked or [], world, temperature=float(temperature)
            )
            await self.library.replace(new)
        except NPCForgeError as exc:
            raise _error(exc) from None
        kept = f" (kept {', '.join(locked)})" if locked else ""
        return npc_card(new, 1), f"Regenerated {new.name}{kept}."

    async def delete(self, npc_id: str | None) -> tuple[str, str]:
        try:
            npc = await self.library.delete(self._required(npc_id))
        except NPCForgeError as exc:
            raise _error(exc) from None
        return "<p>Deleted.</p>", f"Deleted {npc.name} and every relationship pointing at them."

    @staticmethod
    def _required(npc_id: str | None) -> str:
        if not npc_id:
            raise InputError("Choose an NPC first: search or list, then pick one.")
        return npc_id

    # -- export / import -------------------------------------------------------------
    async def _scope(self, npc_id: str | None, scope: str) -> list[NPC]:
        npc = await self.library.get(self._required(npc_id))
        if scope == "this NPC":
            return [npc]
        return await self.library.list_npcs(world=npc.world, limit=10_000)

    async def export(self, npc_id: str | None, scope: str, fmt: str) -> tuple[str, str]:
        """Write the chosen NPC (or its whole world) in a format; returns the file."""
        try:
            npcs = await self._scope(npc_id, scope)
        except NPCForgeError as exc:
            raise _error(exc) from None
        # Exports load Pillow and the card code only when someone exports.
        from app.services.cards import card_png, npc_to_card
        from app.services.exports import (
            cards_zip,
            cast_markdown,
            npc_markdown,
            npcs_csv,
            npcs_json,
            npcs_jsonl,
            safe_filename,
        )

        world = await asyncio.to_thread(self.services.world_for, npcs[0].world)
        stem = npcs[0].name if len(npcs) == 1 else npcs[0].world
        data: bytes
        if fmt == "JSON":
            data, suffix = npcs_json(npcs), ".json"
        elif fmt == "JSON Lines":
            data, suffix = npcs_jsonl(npcs), ".jsonl"
        elif fmt == "CSV":
            data, suffix = npcs_csv(npcs).encode(), ".csv"
        elif fmt == "Markdown":
            text = npc_markdown(npcs[0]) if len(npcs) == 1 else cast_markdown(npcs, npcs[0].world)
            data, suffix = text.encode(), ".md"
        elif fmt == "Character Card V2 (JSON)":
            if len(npcs) == 1:
                data, suffix = dumps(npc_to_card(npcs[0], world), pretty=True), ".card.json"
            else:
                data, suffix = (
                    dumps([npc_to_card(n, world) for n in npcs], pretty=True),
                    ".cards.json",
                )
        elif fmt == "Character Card V2 (PNG)":
            if len(npcs) == 1:
                data, suffix = card_png(npc_to_card(npcs[0], world), npcs[0]), ".png"
            else:
                data, suffix = cards_zip(npcs, world), ".cards.zip"
        else:
            raise gr.Error(
                f"Unknown export format {fmt!r}; pick one of {', '.join(EXPORT_FORMATS)}."
            )
        path = self.export_dir / safe_filename(stem, suffix)
        await asyncio.to_thread(atomic_write_bytes, path, data)
        return str(path), f"Exported {len(npcs)} NPC{'s' if len(npcs) != 1 else ''} as {fmt}."

    async def import_cards(self, files: Sequence[str] | None) -> str:
        """Character Cards V2/V3 (JSON or PNG) into the library."""
        from app.services.cards import card_to_npc, read_card

        if not files:
            raise gr.Error("Choose one or more card files (.json or .png) to import.")
        imported, problems = [], []
        for name in files:
            path = Path(name)
            try:
                data = await asyncio.to_thread(path.read_bytes)
                imported.append(card_to_npc(read_card(data, path.name)))
            except NPCForgeError as exc:
                problems.append(str(exc))
        await self.library.save(imported)
        if problems and not imported:
            raise gr.Error("; ".join(problems))
        for problem in problems:
            gr.Warning(problem)
        names = ", ".join(npc.name for npc in imported)
        return f"Imported {len(imported)} card{'s' if len(imported) != 1 else ''}: {names}."

    # -- relationships -----------------------------------------------------------------
    async def _world_cast(self, npc_id: str | None) -> list[NPC]:
        npc = await self.library.get(self._required(npc_id))
        cast = await self.library.list_npcs(world=npc.world, limit=MAX_CAST_FOR_RELATIONSHIPS)
        return cast if any(c.id == npc.id for c in cast) else [npc, *cast[:-1]]

    @staticmethod
    def _rows(npcs: Sequence[NPC]) -> list[list[Any]]:
        return [
            [npc.name, tie.target_name, tie.type, tie.weight, tie.secret, tie.description]
            for npc in npcs
            for tie in npc.relationships
        ]

    async def show_relationships(self, npc_id: str | None) -> tuple[Any, list[list[Any]]]:
        if not npc_id:
            return relationship_graph([]), []
        cast = await self._world_cast(npc_id)
        return relationship_graph(cast), self._rows(cast)

    async def generate_relationships(
        self, npc_id: str | None, backend: str | None, temperature: float
    ) -> tuple[Any, list[list[Any]], str]:
        """Ties among the NPCs of the chosen NPC's world."""
        try:
            cast = await self._world_cast(npc_id)
            world = await asyncio.to_thread(self.services.world_for, cast[0].world)
            related = await self.services.refiner(backend).relationships(
                cast, world, temperature=float(temperature)
            )
            await self.library.save(related)
        except NPCForgeError as exc:
            raise _error(exc) from None
        count = sum(len(npc.relationships) for npc in related)
        return (
            relationship_graph(related),
            self._rows(related),
            f"{count} relationships among {len(related)} NPCs.",
        )

    async def save_relationships(
        self, npc_id: str | None, rows: Any
    ) -> tuple[Any, list[list[Any]], str]:
        """Replace the ties among the world's NPCs with the edited table."""
        try:
            cast = await self._world_cast(npc_id)
            by_name = {npc.name.lower(): npc for npc in cast}
            ties: dict[str, list[Relationship]] = {npc.id: [] for npc in cast}
            values = rows.values.tolist() if hasattr(rows, "values") else list(rows or [])
            for line, row in enumerate(values, 1):
                if not row or not str(row[0]).strip():
                    continue
                source, target = by_name.get(str(row[0]).lower()), by_name.get(str(row[1]).lower())
                if source is None or target is None:
                    raise InputError(
                        f"Row {line}: both names must be NPCs of this world "
                        f"({row[0]!r} → {row[1]!r})."
                    )
                try:
                    tie = Relationship(
                        target_id=target.id, target_name=target.name, type=str(row[2]),
                        weight=float(row[3]), secret=str(row[4]).lower() in ("true", "1", "yes"),
                        description=str(row[5] or ""),
                    )  # fmt: skip
                except ValueError as exc:
                    raise InputError(f"Row {line}: {exc}".splitlines()[0]) from None
                ties[source.id].append(tie)
            cast_ids = {npc.id for npc in cast}
            updated = [
                npc.model_copy(
                    update={
                        "relationships": [
                            r for r in npc.relationships if r.target_id not in cast_ids
                        ]
                        + ties[npc.id]
                    }
                )
                for npc in cast
            ]
            await self.library.save(updated)
        except NPCForgeError as exc:
            raise _error(exc) from None
        return relationship_graph(updated), self._rows(updated), "Relationships saved."


def build_library(services: Services) -> None:
    handlers = LibraryHandlers(services)
    backend_choices = ["auto", *services.backend_names()]
    with gr.Row():
        query = gr.Textbox(
            label="Search by meaning", placeholder="grumpy blacksmith with a secret", scale=4
        )
        k = gr.Slider(1, MAX_RESULTS, value=5, step=1, label="Results", scale=1)
        world = gr.Dropdown([ALL_WORLDS], value=ALL_WORLDS, label="World", scale=2)
        tag = gr.Textbox(label="Tag", scale=1)
    with gr.Row():
        search = gr.Button("Search", variant="primary")
        list_all = gr.Button("List")
    status = gr.Markdown()
    results = gr.Dataframe(headers=RESULT_COLUMNS, interactive=False, wrap=True, label="Results")
    chosen = gr.Dropdown([], label="Open NPC", interactive=True)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            card = gr.HTML("<p>Search or list, then choose an NPC.</p>")
        with gr.Column(scale=2):
            with gr.Accordion("Edit", open=True):
                field = gr.Dropdown(list(EDITABLE_FIELDS), value="backstory", label="Field")
                value = gr.Textbox(label="Value", lines=5)
                with gr.Row():
                    save = gr.Button("Save field")
                    regen_field = gr.Button("Regenerate field")
                locked = gr.CheckboxGroup(
                    list(PROFILE_FIELDS), label="Lock fields, then regenerate the rest"
                )
                regen_npc = gr.Button("Regenerate NPC")
                with gr.Row():
                    backend = gr.Dropdown(backend_choices, value="auto", label="Backend")
                    temperature = gr.Slider(
                        0, 2, value=services.settings.default_temperature, step=0.05,
                        label="Creativity",
                    )  # fmt: skip
                delete = gr.Button("Delete NPC", variant="stop")
            with gr.Accordion("Export", open=False):
                scope = gr.Radio(["this NPC", "its whole world"], value="this NPC", label="What")
                fmt = gr.Dropdown(list(EXPORT_FORMATS), value="JSON", label="Format")
                export = gr.Button("Export")
                exported = gr.File(label="Download", interactive=False)
            with gr.Accordion("Import Character Cards (V2/V3, JSON or PNG)", open=False):
                uploads = gr.File(
                    file_count="multiple", file_types=[".json", ".png"], type="filepath"
                )
                do_import = gr.Button("Import")
    with gr.Accordion("Relationships of this NPC's world", open=False):
        with gr.Row():
            relate = gr.Button("Generate relationships")
            save_ties = gr.Button("Save edited relationships")
        graph = gr.Image(label="Relationship graph", type="pil", interactive=False)
        ties = gr.Dataframe(
            headers=RELATIONSHIP_COLUMNS, datatype=["str", "str", "str", "number", "bool", "str"],
            interactive=True, wrap=True,
            label=f"Edit ties (types: {', '.join(RELATIONSHIP_TYPES)})",
        )  # fmt: skip

    world.focus(handlers.refresh_worlds, [world], [world], api_visibility="private")
    found = [results, chosen, status]
    search.click(handlers.search, [query, k, world, tag], found, api_name="library_search")
    query.submit(handlers.search, [query, k, world, tag], found, api_visibility="private")
    list_all.click(handlers.list_npcs, [world, tag], found, api_name="library_list")
    chosen.change(handlers.open, [chosen, field], [card, value], api_name="library_get")
    chosen.change(handlers.show_relationships, [chosen], [graph, ties], api_visibility="private")
    field.change(handlers.field_value, [chosen, field], [value], api_visibility="private")
    save.click(handlers.save_field, [chosen, field, value], [card, status], api_name="library_edit")
    regen_field.click(
        handlers.regenerate_field, [chosen, field, backend, temperature], [card, value, status],
        api_name="library_regenerate_field",
    )  # fmt: skip
    regen_npc.click(
        handlers.regenerate_npc, [chosen, locked, backend, temperature], [card, status],
        api_name="library_regenerate",
    )  # fmt: skip
    delete.click(handlers.delete, [chosen], [card, status], api_name="library_delete")
    export.click(
        handlers.export, [chosen, scope, fmt], [exported, status], api_name="library_export"
    )
    do_import.click(handlers.import_cards, [uploads], [status], api_name="library_import")
    relate.click(
        handlers.generate_relationships, [chosen, backend, temperature], [graph, ties, status],
        api_name="relationships_generate",
    )  # fmt: skip
    save_ties.click(
        handlers.save_relationships, [chosen, ties], [graph, ties, status],
        api_name="relationships_save",
    )  # fmt: skip
