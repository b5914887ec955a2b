"""The Library tab: search, open, edit, regenerate, relate, export, import NPCs."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import gradio as gr

from app.errors import InputError
from app.models import NPC, PROFILE_FIELDS, RELATIONSHIP_TYPES
from app.services.admission import Admission, Ticket
from app.services.exports import ExportService
from app.services.graph import GraphLayouts
from app.services.library import EDITABLE_FIELDS, MAX_RESULTS, Library, field_text
from app.services.refine import RefineService
from app.services.removal import NPCRemoval
from app.services.ties import TIE_COLUMNS, tie_rows
from app.ui.cast_graph import EMPTY, cast_graph_component, cast_graph_html, clicked_npc
from app.ui.errors import required_npc_id, user_errors
from app.ui.identity import admitted, caller_of, library_seen_by
from app.ui.library_cards import build_card_io, status_of_last_action, unchanged
from app.ui.media_routes import CardMedia
from app.ui.render import npc_card
from app.ui.tables import rows_of

ALL_WORLDS = "(all worlds)"
# The id stays last: API callers read it as row[-1] (README, Headless API).
RESULT_COLUMNS = ["#", "name", "occupation", "world", "match", "owner", "id"]
NOTHING_OPEN = "<p>Search or list, then choose an NPC.</p>"
# The graph and the tie table show (and save) this many NPCs of a world at most.
GRAPH_MAX_NPCS = 200


def _choice(npc: NPC) -> tuple[str, str]:
    return (f"{npc.name} · {npc.occupation} ({npc.world})", npc.id)


def owner_text(npc: NPC) -> str:
    """Whose an NPC is, as the results table shows it."""
    if npc.owner is None:
        return "team"
    return f"{npc.owner} · shared" if npc.shared else npc.owner


def _required(npc_id: str | None) -> str:
    return required_npc_id(npc_id, "search or list, then pick one (or give its id)")


class LibraryHandlers:
    """Plain methods, tested directly; the tab wires them to components."""

    def __init__(
        self,
        library: Library,
        refine: RefineService,
        removal: NPCRemoval,
        admission: Admission | None = None,
        media: CardMedia | None = None,
        graphs: GraphLayouts | None = None,
    ) -> None:
        self.library = library
        self.refine = refine
        self.removal = removal
        self.admission = admission  # None: every caller is trusted (direct calls)
        self.media = media  # portraits and play buttons on the card
        self.graphs = graphs if graphs is not None else GraphLayouts()

    def _library(self, request: gr.Request | None) -> Library:
        """The library as the caller sees it: a designer's own NPCs and the team's."""
        return library_seen_by(self.library, self.admission, request)

    def _admitted(
        self, request: gr.Request | None, npcs: int, backend: str | None
    ) -> AbstractAsyncContextManager[Ticket]:
        """A model call for this caller: the backends their role may use, a job
        slot, and ``npcs`` against their quota."""
        caller = caller_of(self.admission, request) if self.admission is not None else None
        return admitted(self.admission, caller, npcs, backend)

    def _refine(self, request: gr.Request | None) -> RefineService:
        return (
            self.refine if self.admission is None else self.refine.seen_by(self._library(request))
        )

    # -- finding ---------------------------------------------------------------------
    async def world_choices(self, request: gr.Request | None = None) -> list[str]:
        return [ALL_WORLDS, *await self._library(request).worlds()]

    async def refresh_worlds(
        self, current: str | None, request: gr.Request | None = None
    ) -> dict[str, Any]:
        choices = await self.world_choices(request)
        return gr.update(choices=choices, value=current if current in choices else ALL_WORLDS)

    @staticmethod
    def _world(world: str | None) -> str | None:
        return None if not world or world == ALL_WORLDS else world

    async def search(
        self,
        query: str,
        k: float,
        world: str | None,
        tag: str | None,
        request: gr.Request | None = None,
    ) -> tuple[list[list[Any]], dict[str, Any], str]:
        """NPCs closest in meaning to the query: rows, choices to open, a status line."""
        hits = await self._library(request).search(
            query, k=int(k), world=self._world(world), tag=(tag or "").strip() or None
        )
        rows = [
            [rank, hit.npc.name, hit.npc.occupation, hit.npc.world, f"{1 - hit.distance:.2f}",
             owner_text(hit.npc), hit.npc.id]
            for rank, hit in enumerate(hits, 1)
        ]  # fmt: skip
        choices = [_choice(hit.npc) for hit in hits]
        status = f"{len(hits)} closest to “{query.strip()}”" if hits else "No NPC matches yet."
        return rows, gr.update(choices=choices, value=choices[0][1] if choices else None), status

    async def list_npcs(
        self, world: str | None, tag: str | None, request: gr.Request | None = None
    ) -> tuple[list[list[Any]], dict[str, Any], str]:
        npcs = await self._library(request).list_npcs(
            world=self._world(world), tag=(tag or "").strip() or None
        )
        rows = [
            [i, n.name, n.occupation, n.world, "", owner_text(n), n.id]
            for i, n in enumerate(npcs, 1)
        ]
        choices = [_choice(npc) for npc in npcs]
        total = await self._library(request).count()
        status = f"{len(npcs)} NPCs shown · {total} in the library"
        return rows, gr.update(choices=choices, value=choices[0][1] if choices else None), status

    # -- one NPC ---------------------------------------------------------------------
    async def open(
        self, npc_id: str | None, field: str | None, request: gr.Request | None = None
    ) -> tuple[str, str]:
        """The card and the edit box for the chosen field."""
        if not npc_id:
            return NOTHING_OPEN, ""
        npc = await self._library(request).get(_required(npc_id))
        return npc_card(npc, 1, self.media), field_text(npc, field or "backstory")

    async def field_value(
        self, npc_id: str | None, field: str, request: gr.Request | None = None
    ) -> str:
        if not npc_id:
            return ""
        return field_text(await self._library(request).get(_required(npc_id)), field)

    async def save_field(
        self, npc_id: str | None, field: str, value: str, request: gr.Request | None = None
    ) -> tuple[str, str]:
        """Set a field by hand."""
        npc = await self._library(request).edit_field(_required(npc_id), field, value or "")
        return npc_card(npc, 1, self.media), f"Saved {field} of {npc.name}."

    async def regenerate_field(
        self,
        npc_id: str | None,
        field: str,
        backend: str | None,
        temperature: float | None,
        request: gr.Request | None = None,
    ) -> tuple[str, str, str]:
        """A new value for one field, the rest given to the backend as context."""
        async with self._admitted(request, 0, backend) as ticket:
            new = await self._refine(request).regenerate_field(
                _required(npc_id), field, backend=ticket.backend, temperature=temperature
            )
        return npc_card(new, 1, self.media), field_text(new, field), f"New {field} for {new.name}."

    async def regenerate_npc(
        self,
        npc_id: str | None,
        locked: list[str] | None,
        backend: str | None,
        temperature: float | None,
        request: gr.Request | None = None,
        field: str | None = None,
    ) -> tuple[str, Any, str]:
        """A new take on the NPC keeping the locked fields (one NPC of the quota):
        its card, the edited field's new value (the edit box must not keep the old
        text, or *Save field* would bring it back) and the status."""
        async with self._admitted(request, 1, backend) as ticket:
            new = await self._refine(request).regenerate_npc(
                _required(npc_id), locked or [], backend=ticket.backend, temperature=temperature
            )
            ticket.count = lambda: 1
        kept = f" (kept {', '.join(locked)})" if locked else ""
        value = field_text(new, field) if field in EDITABLE_FIELDS else gr.update()
        return npc_card(new, 1, self.media), value, f"Regenerated {new.name}{kept}."

    async def sharing(
        self, npc_id: str | None, request: gr.Request | None = None
    ) -> dict[str, Any]:
        """The share box for the opened NPC: ticked when shared, usable by whoever
        may share it (its owner or an admin; the team's NPCs are everyone's already)."""
        library = self._library(request)
        try:
            npc = await library.get(_required(npc_id))
        except InputError:  # nothing (or nothing it may see) is open: ``open`` says so
            return gr.update(value=False, interactive=False)
        may = npc.owner is not None and library.viewer.may_change(npc)
        return gr.update(value=npc.shared, interactive=may)

    async def share(
        self, npc_id: str | None, shared: bool, request: gr.Request | None = None
    ) -> tuple[str, str]:
        """Share the NPC with the team, or take it back."""
        npc = await self._library(request).share(_required(npc_id), bool(shared))
        if npc.shared:
            return npc_card(npc, 1, self.media), (
                f"{npc.name} is shared with the team: everyone may open, chat with and export "
                "it; only you (and admins) change it."
            )
        return npc_card(npc, 1, self.media), f"{npc.name} is yours alone again."

    async def delete(
        self, npc_id: str | None, request: gr.Request | None = None
    ) -> tuple[str, str]:
        removed = await self.removal.seen_by(self._library(request)).remove(_required(npc_id))
        return "<p>Deleted.</p>", removed.summary()

    # -- relationships -----------------------------------------------------------------
    async def _graph(self, npc_id: str, request: gr.Request | None) -> tuple[str, list[list[Any]]]:
        """The graph and tie rows of this NPC's world, the NPC marked."""
        cast = await self._library(request).world_cast(npc_id, limit=GRAPH_MAX_NPCS)
        html = await asyncio.to_thread(cast_graph_html, cast, self.graphs, selected=npc_id)
        return html, tie_rows(cast)

    async def show_relationships(
        self, npc_id: str | None, request: gr.Request | None = None
    ) -> tuple[str, list[list[Any]]]:
        if not npc_id:
            return EMPTY, []
        return await self._graph(_required(npc_id), request)

    async def generate_relationships(
        self,
        npc_id: str | None,
        backend: str | None,
        temperature: float | None,
        request: gr.Request | None = None,
    ) -> tuple[str, list[list[Any]], str]:
        """Ties among the NPCs of the chosen NPC's world."""
        npc_id = _required(npc_id)
        async with self._admitted(request, 0, backend) as ticket:
            related = await self._refine(request).relationships(
                npc_id, backend=ticket.backend, temperature=temperature
            )
        count = sum(len(npc.relationships) for npc in related)
        graph, rows = await self._graph(npc_id, request)
        return graph, rows, f"{count} relationships among {len(related)} NPCs."

    async def save_relationships(
        self, npc_id: str | None, rows: Any, request: gr.Request | None = None
    ) -> tuple[str, list[list[Any]], str]:
        """Replace the ties among the world's NPCs with the edited table."""
        npc_id = _required(npc_id)
        await self._library(request).save_tie_rows(npc_id, rows_of(rows), limit=GRAPH_MAX_NPCS)
        graph, ties = await self._graph(npc_id, request)
        return graph, ties, "Relationships saved."


def build_library(
    library: Library,
    refine: RefineService,
    removal: NPCRemoval,
    exports: ExportService,
    export_dir: Path,
    *,
    default_temperature: float,
    admission: Admission | None = None,
    media: CardMedia | None = None,
    graphs: GraphLayouts | None = None,
) -> None:
    handlers = LibraryHandlers(library, refine, removal, admission, media, graphs)
    backend_choices = ["auto", *refine.backends.names()]
    with gr.Row():
        query = gr.Textbox(
            label="Search by meaning", placeholder="grumpy blacksmith with a secret", scale=4
        )
        k = gr.Slider(1, MAX_RESULTS, value=5, step=1, label="Results", scale=1)
        # Custom values: the API may name a world before this browser has listed them.
        world = gr.Dropdown(
            [ALL_WORLDS], value=ALL_WORLDS, label="World", scale=2, allow_custom_value=True
        )
        tag = gr.Textbox(label="Tag", scale=1)
    with gr.Row():
        search = gr.Button("Search", variant="primary")
        list_all = gr.Button("List")
    status = gr.Markdown()
    results = gr.Dataframe(headers=RESULT_COLUMNS, interactive=False, wrap=True, label="Results")
    # Custom values: any NPC id works through the API, not only the ones listed here.
    chosen = gr.Dropdown([], label="Open NPC", interactive=True, allow_custom_value=True)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            card = gr.HTML(NOTHING_OPEN)
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
                with gr.Row():
                    regen_npc = gr.Button("Regenerate NPC")
                    shared = gr.Checkbox(
                        False,
                        label="Shared with the team",
                        info="everyone may open, chat with and export it; only you change it",
                        interactive=False,
                    )
                with gr.Row():
                    backend = gr.Dropdown(backend_choices, value="auto", label="Backend")
                    temperature = gr.Slider(
                        0, 2, value=default_temperature, step=0.05, label="Creativity"
                    )
                delete = gr.Button("Delete NPC", variant="stop")
            build_card_io(exports, export_dir, chosen, status, admission)
    with gr.Accordion("This NPC's world: its cast and relationships", open=True):
        with gr.Row():
            relate = gr.Button("Generate relationships")
            save_ties = gr.Button("Save edited relationships")
        # Full width: 50 names stay readable without zooming; the table is right below.
        graph = cast_graph_component()
        ties = gr.Dataframe(
            headers=list(TIE_COLUMNS), datatype=["str", "str", "str", "number", "bool", "str"],
            interactive=True, wrap=True, max_height=600,
            label=f"Edit ties (types: {', '.join(RELATIONSHIP_TYPES)})",
        )  # fmt: skip

    h = user_errors  # every handler goes through the one error door
    world.focus(h(handlers.refresh_worlds), [world], [world], api_visibility="private")
    # Actions that report on the status line report failures there too.
    s = status_of_last_action
    found = [results, chosen, status]
    searched = s(handlers.search, "Search", unchanged(2))
    search.click(searched, [query, k, world, tag], found, api_name="library_search")
    query.submit(searched, [query, k, world, tag], found, api_visibility="private")
    listed = s(handlers.list_npcs, "List", unchanged(2))
    list_all.click(listed, [world, tag], found, api_name="library_list")
    chosen.change(h(handlers.open), [chosen, field], [card, value], api_name="library_get")
    chosen.change(
        h(handlers.show_relationships), [chosen], [graph, ties], api_name="relationships_show"
    )
    chosen.change(h(handlers.sharing), [chosen], [shared], api_visibility="private")
    # .input: a designer's tick, not the box following the NPC that was opened.
    shared.input(
        s(handlers.share, "Share", unchanged(1)), [chosen, shared], [card, status],
        api_name="library_share",
    )  # fmt: skip
    # A click on an NPC of the graph opens it (and so redraws the graph around it).
    graph.node_click(clicked_npc, None, [chosen], api_visibility="private")
    field.change(h(handlers.field_value), [chosen, field], [value], api_visibility="private")
    save.click(
        s(handlers.save_field, "Save", unchanged(1)), [chosen, field, value], [card, status],
        api_name="library_edit",
    )  # fmt: skip
    regen_field.click(
        s(handlers.regenerate_field, "Regenerate field", unchanged(2)),
        [chosen, field, backend, temperature], [card, value, status],
        api_name="library_regenerate_field",
    )  # fmt: skip
    regen_npc.click(
        s(handlers.regenerate_npc, "Regenerate NPC", unchanged(2)),
        [chosen, locked, backend, temperature, field], [card, value, status],
        api_name="library_regenerate",
    )  # fmt: skip
    delete.click(
        s(handlers.delete, "Delete", unchanged(1)), [chosen], [card, status],
        api_name="library_delete",
    )  # fmt: skip
    relate.click(
        h(handlers.generate_relationships), [chosen, backend, temperature], [graph, ties, status],
        api_name="relationships_generate",
    )  # fmt: skip
    save_ties.click(
        h(handlers.save_relationships), [chosen, ties], [graph, ties, status],
        api_name="relationships_save",
    )  # fmt: skip
