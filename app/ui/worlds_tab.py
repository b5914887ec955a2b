"""The World Builder tab: make a world from a form, a file or a pitch; keep it.

The form is checked on every change (the status says what to fix, the JSON
preview shows the file it makes). Saving writes a user world under the data
directory; shipped worlds load as starting points and stay read-only. With
sign-in a loaded saved world shows its owner and editors; its owner and admins
see the Editors field to grant and revoke editing.
"""

from __future__ import annotations

import asyncio
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr

from app.errors import InputError
from app.models import World
from app.services.admission import Admission
from app.services.library import Viewer
from app.services.world_access import ACTIONS, TEAM, WorldGrant
from app.services.world_builder import (
    FormCheck,
    WorldBuilder,
    WorldEntry,
    check_form,
    form_rows,
    form_text,
    world_json,
)
from app.ui.downloads import offer
from app.ui.errors import user_errors
from app.ui.identity import caller_of, viewer_of
from app.ui.tables import rows_of

BLANK = "(blank world)"
DETAIL_COLUMNS = ["section", "text"]
GUARDRAIL_COLUMNS = ["guardrail", "text"]
BLANK_DETAIL = [["Overview", ""], ["Places", ""], ["People", ""], ["Factions", ""]]
BLANK_GUARDRAILS = [["Period", ""], ["Tone", ""]]
EXAMPLE_PITCH = "a lighthouse island in the Outer Hebrides, 1890"
# name, era, time period, detail rows, guardrail rows, status, JSON preview, loaded world
Form = tuple[str, str, str, list[list[str]], list[list[str]], str, str, str]


def _status(check: FormCheck, note: str = "") -> str:
    lead = f"{note}\n\n" if note else ""
    if check.world is None:
        return lead + "**Not a valid world yet:**\n" + "\n".join(f"- {p}" for p in check.problems)
    world = check.world
    sections = len(world.detail) if isinstance(world.detail, dict) else 1
    return lead + (
        f"✓ A valid world: {sections} detail sections, {len(world.guardrails)} guardrails."
    )


def _preview(check: FormCheck) -> str:
    return world_json(check.world).decode() if check.world is not None else ""


def _saved_label(entry: WorldEntry) -> str:
    grant = entry.grant
    owned = f" ({escape(grant.describe())})" if grant not in (None, TEAM) else ""
    return escape(entry.name) + owned


def world_list_html(entries: list[WorldEntry]) -> str:
    """The worlds there are: shipped (read-only) and saved ones (with their owners)."""
    shipped = [escape(e.name) for e in entries if e.shipped]
    saved = [_saved_label(e) for e in entries if not e.shipped]
    return (
        f"<p><b>Shipped</b> (read-only): {', '.join(shipped) or 'none'}</p>"
        f"<p><b>Saved</b>: {', '.join(saved) or 'none yet: save one'}</p>"
    )


def access_line(name: str, grant: WorldGrant, viewer: Viewer) -> str:
    """The Owner line of a loaded saved world, and what the caller may do with it."""
    owner = escape(grant.owner) if grant.owner else "the team (only admins change it)"
    editors = escape(", ".join(grant.editors)) or "none"
    line = f"**Owner:** {owner} · **Editors:** {editors}"
    if grant.may(viewer, "grant"):
        return line + "\n\nYou may grant and revoke editing below."
    if grant.may(viewer, "save over"):  # an editor: what they may, and who may grant
        return line + "\n\n" + grant.refusal(name, viewer, "grant")
    return line + "\n\nRead-only for you. " + grant.refusal(name, viewer, "save over")


class WorldsHandlers:
    """Plain methods, tested directly; the tab wires them to components."""

    def __init__(
        self, builder: WorldBuilder, export_dir: Path, admission: Admission | None = None
    ) -> None:
        self.builder = builder
        self.export_dir = export_dir
        self.admission = admission  # None: every caller is trusted (direct calls)

    # -- what there is -----------------------------------------------------------------
    async def choices(self) -> list[str]:
        return [BLANK, *(entry.name for entry in await self.builder.list_worlds())]

    async def refresh(self, current: str | None = None) -> tuple[dict[str, Any], str]:
        """Fresh choices for the start picker, and the list of worlds."""
        entries = await self.builder.list_worlds()
        choices = [BLANK, *(entry.name for entry in entries)]
        value = current if current in choices else BLANK
        return gr.update(choices=choices, value=value), world_list_html(entries)

    # -- the form ----------------------------------------------------------------------
    @staticmethod
    def check(
        name: str, era: str, time_period: str, detail: Any, guardrails: Any
    ) -> tuple[str, str]:
        """Validate the form as it is typed: a status and the JSON preview."""
        result = check_form(name, era, time_period, rows_of(detail), rows_of(guardrails))
        return _status(result), _preview(result)

    @staticmethod
    def _form(world: World, note: str, loaded: str = "") -> Form:
        detail, guardrails = form_rows(world)
        result = check_form(world.name, world.era, world.time_period, detail, guardrails)
        return (
            world.name, world.era, world.time_period, detail, guardrails,
            _status(result, note), _preview(result), loaded,
        )  # fmt: skip

    @staticmethod
    def blank() -> Form:
        result = check_form("", "", "", BLANK_DETAIL, BLANK_GUARDRAILS)
        return "", "", "", BLANK_DETAIL, BLANK_GUARDRAILS, _status(result), "", ""

    async def load(self, name: str | None, request: gr.Request | None = None) -> Form:
        """Fill the form from a shipped or user world (or blank)."""
        if not name or name == BLANK:
            return self.blank()
        world = await self.builder.get(name)
        shipped = await asyncio.to_thread(self.builder.worlds.is_shipped, world.name)
        if shipped:
            note = f"Loaded the shipped world **{escape(world.name)}**: it stays read-only, so "
            note += "give your version a new name and *Save as new world*."
            return self._form(world, note)
        grant = await self.builder.grant_of(world.name)
        viewer = viewer_of(self.admission, request)
        if grant.may(viewer, "save over"):
            note = f"Loaded the saved world **{escape(world.name)}**."
        else:
            note = f"Loaded **{escape(world.name)}**: read-only for you, so give your version "
            note += "a new name and *Save as new world*."
        return self._form(world, note, world.name)

    async def upload(self, file: str | None) -> Form:
        """Fill the form from an uploaded world file."""
        if not file:
            raise InputError("Choose a world file (.json) to upload.")
        path = Path(file)
        data = await asyncio.to_thread(path.read_bytes)
        world = self.builder.upload(data, path.name)
        return self._form(world, f"Loaded {escape(path.name)}: check it, then save it.")

    async def draft(
        self,
        pitch: str,
        backend: str | None,
        seed: str | None,
        request: gr.Request | None = None,
    ) -> Form:
        """One line in, a whole world draft in the form (not saved until you save it);
        a signed-in designer drafts on the backends their role allows."""
        pitch = form_text(pitch, "The pitch")
        backend = form_text(backend, "The backend") or None
        if self.admission is not None:
            backend = self.admission.backend_for(caller_of(self.admission, request), backend)
        number = None
        if seed and str(seed).strip():
            try:
                number = int(str(seed).strip())
            except ValueError:
                raise InputError(f"The seed {seed!r} is not a whole number.") from None
        draft = await self.builder.draft(pitch, backend=backend, seed=number)
        note = f"Drafted by `{draft.backend}`: edit it, then *Save as new world*."
        return self._form(draft.world, note)

    @staticmethod
    def add_row(rows: Any) -> list[list[str]]:
        return [*rows_of(rows), ["", ""]]

    @staticmethod
    def remove_row(rows: Any) -> list[list[str]]:
        return rows_of(rows)[:-1]

    # -- keeping it --------------------------------------------------------------------
    @staticmethod
    def _world(name: str, era: str, time_period: str, detail: Any, guardrails: Any) -> World:
        return check_form(name, era, time_period, rows_of(detail), rows_of(guardrails)).required()

    async def save(
        self,
        name: str,
        era: str,
        time_period: str,
        detail: Any,
        guardrails: Any,
        request: gr.Request | None = None,  # before ``replace``: Gradio puts it by position
        replace: bool = False,
    ) -> tuple[str, str, dict[str, Any], str]:
        """Save the form as a user world: (status, loaded world, start picker, world list).
        ``replace`` saves over the saved world of that name (when the caller may);
        otherwise a taken name is refused. A new world is the caller's."""
        world = self._world(name, era, time_period, detail, guardrails)
        if replace and world.name not in await asyncio.to_thread(self.builder.worlds.user_worlds):
            raise InputError(
                f"There is no saved world called {world.name!r} to save over; use Save as new "
                "world."
            )
        owner = None
        if self.admission is not None:
            owner = self.admission.owner(caller_of(self.admission, request))
        path = await self.builder.save(
            world, replace=bool(replace), by=viewer_of(self.admission, request), owner=owner
        )
        picker, listing = await self.refresh(world.name)
        return f"✓ Saved **{escape(world.name)}** ({path.name}).", world.name, picker, listing

    async def save_over(
        self,
        name: str,
        era: str,
        time_period: str,
        detail: Any,
        guardrails: Any,
        request: gr.Request | None = None,
    ) -> tuple[str, str, dict[str, Any], str]:
        return await self.save(
            name, era, time_period, detail, guardrails, replace=True, request=request
        )

    @staticmethod
    def _loaded(loaded: str | None, what: str) -> str:
        name = form_text(loaded, "The world being edited")
        if not name:
            raise InputError(f"Load a saved world first (Start from), then {what} it.")
        return name

    async def rename(
        self, loaded: str | None, new_name: str, request: gr.Request | None = None
    ) -> tuple[str, str, str, dict[str, Any], str]:
        """Rename the loaded user world: (name box, status, loaded, picker, list)."""
        old = self._loaded(loaded, "rename")
        renamed, moved = await self.builder.rename(
            old, form_text(new_name, "The new name"), by=viewer_of(self.admission, request)
        )
        picker, listing = await self.refresh(renamed.name)
        cast = f"; its {moved} NPCs in the library moved with it" if moved else ""
        status = f"✓ Renamed **{escape(old)}** to **{escape(renamed.name)}**{cast}."
        return renamed.name, status, renamed.name, picker, listing

    async def delete(
        self, loaded: str | None, confirmed: bool, request: gr.Request | None = None
    ) -> tuple[str, str, dict[str, Any], str]:
        """Delete the loaded user world, once confirmed: (status, loaded, picker, list)."""
        name = self._loaded(loaded, "delete")
        if not confirmed:
            raise InputError(f"Tick 'Yes, delete it' to delete {name!r}.")
        path, left = await self.builder.delete(name, by=viewer_of(self.admission, request))
        picker, listing = await self.refresh()
        kept = f" Its {left} NPCs stay in the library under that world name." if left else ""
        return f"Deleted **{escape(name)}** ({path.name}).{kept}", "", picker, listing

    # -- who may edit -------------------------------------------------------------------
    async def access(
        self, loaded: str | None, request: gr.Request | None = None
    ) -> tuple[str, dict[str, Any]]:
        """The loaded saved world's Owner line, and the Editors field for those who
        may grant (neither without sign-in, when everyone may change everything, nor
        when no saved world is loaded)."""
        hidden = gr.update(visible=False)
        name = form_text(loaded, "The world being edited")
        if not name or not self.builder.accounts.enabled:
            return "", hidden
        if await asyncio.to_thread(self.builder.worlds.is_shipped, name):
            return "", hidden
        viewer = viewer_of(self.admission, request)
        try:
            grant = await self.builder.grant_of(name)
        except InputError as exc:  # deleted or renamed elsewhere since it was loaded
            return str(exc), hidden
        return access_line(name, grant, viewer), gr.update(visible=grant.may(viewer, "grant"))

    async def access_of(self, name: str, request: gr.Request | None = None) -> dict[str, Any]:
        """A saved world's owner and editors, and what the caller may do with it (the
        ``worlds_access`` API)."""
        name = form_text(name, "The world's name")
        grant = await self.builder.grant_of(name)
        viewer = viewer_of(self.admission, request)
        return {
            "world": name,
            "owner": grant.owner,  # None: the team's
            "editors": list(grant.editors),
            "you_may": [action for action in ACTIONS if grant.may(viewer, action)],
        }

    async def _editors(
        self, loaded: str | None, user: str, request: gr.Request | None, *, give: bool
    ) -> tuple[str, str]:
        name = self._loaded(loaded, "grant or revoke editing of")
        viewer = viewer_of(self.admission, request)
        change = self.builder.grant if give else self.builder.revoke
        grant = await change(name, user, by=viewer)
        who = escape(form_text(user, "The user"))
        done = "may now save over and rename" if give else "may no longer change"
        return f"✓ **{who}** {done} **{escape(name)}**.", access_line(name, grant, viewer)

    async def grant(
        self, loaded: str | None, user: str, request: gr.Request | None = None
    ) -> tuple[str, str]:
        """Let an account save over and rename the loaded world: (status, Owner line)."""
        return await self._editors(loaded, user, request, give=True)

    async def revoke(
        self, loaded: str | None, user: str, request: gr.Request | None = None
    ) -> tuple[str, str]:
        """Take editing of the loaded world back from an account: (status, Owner line)."""
        return await self._editors(loaded, user, request, give=False)

    async def download(
        self, name: str, era: str, time_period: str, detail: Any, guardrails: Any
    ) -> str:
        """The form's world as a JSON file."""
        world = self._world(name, era, time_period, detail, guardrails)
        return await offer(
            self.export_dir, "world-", self.builder.filename(world), world_json(world)
        )

    @staticmethod
    def show() -> dict[str, Any]:
        """Show a component that stays hidden until it has something (the file box)."""
        return gr.update(visible=True)


def build_worlds(
    builder: WorldBuilder,
    backend_names: list[str],
    export_dir: Path,
    tab: gr.Tab,
    admission: Admission | None = None,
) -> None:
    """Lay out the World Builder tab inside the current Blocks (``tab`` is its tab:
    selecting it refreshes the lists)."""
    handlers = WorldsHandlers(builder, export_dir, admission)
    start_name, start_era, start_time, start_detail, start_rules, start_status, _, _ = (
        handlers.blank()
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=420):
            with gr.Group():
                with gr.Row():
                    start = gr.Dropdown(
                        [BLANK, *builder.worlds.names()], value=BLANK, scale=3,
                        label="Start from a world", allow_custom_value=True,
                    )  # fmt: skip
                    load = gr.Button("Load", scale=1)
                with gr.Row():
                    pitch = gr.Textbox(
                        label="…or draft from a one-line pitch", placeholder=EXAMPLE_PITCH,
                        scale=3, max_lines=1,
                    )  # fmt: skip
                    draft = gr.Button("Draft from pitch", variant="primary", scale=1)
                with gr.Accordion("…or upload a world file; drafting options", open=False):
                    upload = gr.File(
                        label="World file (.json)", file_types=[".json"], type="filepath"
                    )
                    with gr.Row():
                        backend = gr.Dropdown(
                            ["auto", *backend_names], value="auto", label="Backend"
                        )
                        seed = gr.Textbox(label="Draft seed", placeholder="empty = from the pitch")
            name = gr.Textbox(label="Name", value=start_name, placeholder="Gull Rock Light")
            with gr.Row():
                era = gr.Textbox(label="Era", value=start_era, placeholder="Victorian Scotland")
                time_period = gr.Textbox(label="Time period", value=start_time, placeholder="1890")
            detail = gr.Dataframe(
                value=start_detail, headers=DETAIL_COLUMNS, datatype=["str", "str"],
                interactive=True, wrap=True, label="Detail sections", column_widths=["22%", "78%"],
            )  # fmt: skip
            with gr.Row():
                add_section = gr.Button("+ Add section", size="sm")
                remove_section = gr.Button("− Remove last section", size="sm")
            guardrails = gr.Dataframe(
                value=start_rules, headers=GUARDRAIL_COLUMNS, datatype=["str", "str"],
                interactive=True, wrap=True, label="Guardrails (rules every prompt gets)",
                column_widths=["22%", "78%"],
            )  # fmt: skip
            with gr.Row():
                add_rule = gr.Button("+ Add guardrail", size="sm")
                remove_rule = gr.Button("− Remove last guardrail", size="sm")
        with gr.Column(scale=2, min_width=320):
            # What the last action did; the status below is the form's validation,
            # which every change of the form rewrites (a rename's note must stay).
            note = gr.Markdown("", elem_id="world-note")
            status = gr.Markdown(start_status, elem_id="world-status")
            # Rename and Delete act on this one (the API names it here too).
            loaded = gr.Textbox(
                label="Saved world being edited", interactive=False, max_lines=1,
                placeholder="none: Load a saved world to rename or delete it",
            )  # fmt: skip
            access = gr.Markdown("", elem_id="world-access")
            with gr.Column(visible=False, variant="panel") as editors_box:
                editor = gr.Textbox(
                    label="Editors: grant or revoke an account", max_lines=1,
                    placeholder="account name, e.g. bob",
                )  # fmt: skip
                with gr.Row():
                    grant = gr.Button("Grant editing", size="sm")
                    revoke = gr.Button("Revoke editing", size="sm")
            with gr.Row():
                save_new = gr.Button("Save as new world", variant="primary")
                save_over = gr.Button("Save over this world")
            with gr.Row():
                new_name = gr.Textbox(label="New name", scale=3, max_lines=1)
                rename = gr.Button("Rename", scale=1)
            with gr.Row():
                confirm = gr.Checkbox(label="Yes, delete it", scale=1)
                delete = gr.Button("Delete this world", variant="stop", scale=2)
            download = gr.Button("Download JSON")
            file = gr.File(
                label="World file", interactive=False, visible=False, elem_id="world-file"
            )
            listing = gr.HTML(world_list_html(builder.entries()), elem_id="world-list")
            preview = gr.Code(
                language="json", label="JSON preview", interactive=False, wrap_lines=True,
                max_lines=40,
            )  # fmt: skip

    h = user_errors  # every handler goes through the one error door
    fields = [name, era, time_period, detail, guardrails]
    form = [*fields, status, preview, loaded]
    kept = [note, loaded, start, listing]
    # Whatever changes the loaded world refreshes its Owner line and Editors field.
    show_access: dict[str, Any] = {
        "fn": h(handlers.access), "inputs": [loaded], "outputs": [access, editors_box],
        "api_visibility": "private", "show_progress": "hidden",
    }  # fmt: skip
    loaded.change(**show_access)
    for event in (  # a new form: the last action's note no longer applies
        load.click(h(handlers.load), [start], form, api_name="world_load"),
        draft.click(h(handlers.draft), [pitch, backend, seed], form, api_name="world_draft"),
        pitch.submit(h(handlers.draft), [pitch, backend, seed], form, api_visibility="private"),
        upload.upload(h(handlers.upload), [upload], form, api_name="world_upload"),
    ):
        event.success(lambda: "", None, [note], api_visibility="private", show_progress="hidden")
    check = h(handlers.check)
    typed: list[Any] = fields
    for component in typed:  # validation as you type; the name box's event is the API's
        component.change(
            check, fields, [status, preview], trigger_mode="always_last", show_progress="hidden",
            **({"api_name": "world_check"} if component is name else {"api_visibility": "private"}),
        )  # fmt: skip
    add_section.click(h(handlers.add_row), [detail], [detail], api_visibility="private")
    remove_section.click(h(handlers.remove_row), [detail], [detail], api_visibility="private")
    add_rule.click(h(handlers.add_row), [guardrails], [guardrails], api_visibility="private")
    remove_rule.click(h(handlers.remove_row), [guardrails], [guardrails], api_visibility="private")
    save_new.click(h(handlers.save), fields, kept, api_name="world_save")
    save_over.click(h(handlers.save_over), fields, kept, api_name="world_save_over")
    rename.click(
        h(handlers.rename), [loaded, new_name], [name, note, loaded, start, listing],
        api_name="world_rename",
    )  # fmt: skip
    delete.click(h(handlers.delete), [loaded, confirm], kept, api_name="world_delete")
    for button, handler, api_name in (
        (grant, handlers.grant, "worlds_grant"),
        (revoke, handlers.revoke, "worlds_revoke"),
    ):
        button.click(h(handler), [loaded, editor], [note, access], api_name=api_name)

    async def worlds_access(name: str, request: gr.Request) -> dict[str, Any]:
        """Who owns and may edit a saved world, and what you may do with it."""
        found: dict[str, Any] = await h(handlers.access_of)(name, request)
        return found

    gr.api(worlds_access, api_name="worlds_access")
    # The API gets the file's path; the browser then shows the box it sits in.
    download.click(h(handlers.download), fields, [file], api_name="world_download").success(
        handlers.show, None, [file], api_visibility="private"
    )
    start.focus(h(handlers.refresh), [start], [start, listing], api_visibility="private")
    tab.select(h(handlers.refresh), [start], [start, listing], api_name="worlds_list").then(
        **show_access  # a grant made elsewhere since shows when the tab is opened again
    )
