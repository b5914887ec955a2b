"""The Dialogue tab: lines for many NPCs and situations, shown as each one finishes.

Pick NPCs (or a whole world's cast), type situations one per line or pick
shipped ones, choose how many variants, Generate. Lines appear grouped by NPC
and situation, marked *cached* or *new*; regenerate one line; lock the ones
to keep (a locked line is never replaced); export JSON, a localisation CSV,
Yarn Spinner or Ink.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr

from app.errors import InputError
from app.services.admission import Admission, Ticket
from app.services.dialogue import (
    DialogueLine,
    DialogueManager,
    LineRequest,
    localisation_key,
    situation_text,
)
from app.services.dialogue_exports import EXPORT_LABELS, export_lines
from app.services.dialogue_plan import DialoguePlanner
from app.services.library import Library
from app.services.quotas import QuotaExceededError
from app.ui.downloads import offer
from app.ui.errors import user_errors
from app.ui.identity import TRUSTED, caller_of, library_seen_by

NO_WORLD = "(no world: only the NPCs picked)"
EMPTY = '<div class="dlg-empty">No lines yet: pick NPCs and situations, then Generate.</div>'
# Re-render the lines at most this often while they stream in (a 500-line run
# otherwise sends 500 copies of a growing page).
REFRESH_S = 0.15
Line = dict[str, Any]


class StopFlag:
    """Set by Stop; the run it belongs to ends after the lines already finished."""

    def __init__(self) -> None:
        self.requested = False


# The rendered lines, the lines as JSON (the API's result), the status, the lock and
# regenerate pickers, the lines again as the session's state, and the run's Stop flag.
Outputs = tuple[str, list[Line], str, Any, Any, list[Line], StopFlag]


def _badge(line: Line, locked: bool) -> str:
    if line.get("error"):
        return '<span class="dlg-badge dlg-failed">failed</span>'
    if line.get("line") is None:
        return '<span class="dlg-badge">writing…</span>'
    marks = ["cached" if line.get("cached") else "new", *(["locked"] if locked else [])]
    return "".join(f'<span class="dlg-badge dlg-{mark}">{mark}</span>' for mark in marks)


def render_lines(lines: Sequence[Line], locked: Sequence[str] = ()) -> str:
    """Lines grouped by NPC, then situation, in request order; every string escaped."""
    if not lines:
        return EMPTY
    pinned = set(locked)
    groups: dict[str, dict[str, list[Line]]] = {}
    names: dict[str, str] = {}
    for line in lines:
        names[line["npc_id"]] = line["npc_name"]
        groups.setdefault(line["npc_id"], {}).setdefault(line["situation"], []).append(line)
    parts = ['<div class="dlg-lines">']
    for npc_id, situations in groups.items():
        parts.append(f'<section class="dlg-npc" data-npc-id="{escape(npc_id)}">')
        parts.append(f"<h3>{escape(names[npc_id])}</h3>")
        for situation, variants in situations.items():
            parts.append(f'<h4 class="dlg-situation">{escape(situation)}</h4><ol>')
            for line in variants:
                text = line.get("line") or line.get("error") or ""
                css = "dlg-line dlg-error" if line.get("error") else "dlg-line"
                parts.append(
                    f'<li class="{css}" data-key="{escape(line["key"])}" value="{line["variant"]}">'
                    f"{_badge(line, line['key'] in pinned)} {escape(text)}</li>"
                )
            parts.append("</ol>")
        parts.append("</section>")
    parts.append("</div>")
    return "".join(parts)


def _label(line: Line) -> tuple[str, str]:
    return (f"{line['npc_name']} · {line['situation']} · {line['variant']}", line["key"])


def _status(lines: Sequence[Line], started: float, backend: str, limit: int | None) -> str:
    done = [line for line in lines if line.get("line") is not None or line.get("error")]
    cached = sum(bool(line.get("cached")) for line in done)
    failed = sum(bool(line.get("error")) for line in done)
    parts = [f"**{len(done)}/{len(lines)}** lines from `{backend}`", f"{cached} cached"]
    parts.append(f"{len(done) - cached - failed} new")
    if failed:
        parts.append(f"{failed} failed (the reason is on each)")
    if limit:
        parts.append(f"{limit} calls at once")
    parts.append(f"{time.perf_counter() - started:.2f} s")
    return " · ".join(parts)


class DialogueHandlers:
    """The tab's handlers: plain methods that tests call directly."""

    def __init__(
        self,
        dialogue: DialogueManager,
        planner: DialoguePlanner,
        library: Library,
        export_dir: Path,
        backend_names: Sequence[str],
        admission: Admission | None = None,
    ) -> None:
        self.dialogue = dialogue
        self.planner = planner
        self.library = library
        self.export_dir = export_dir
        self.backend_names = list(backend_names)
        self.admission = admission  # None: every caller is trusted (direct calls)

    def _library(self, request: gr.Request | None) -> Library:
        """The library as the caller sees it (their own NPCs and the team's)."""
        return library_seen_by(self.library, self.admission, request)

    @contextlib.asynccontextmanager
    async def _admitted(
        self, request: gr.Request | None, backend: str | None
    ) -> AsyncIterator[Ticket]:
        """The run admitted: the backend this caller may use, one of their job slots
        (a run of lines is a job, like a cast); the run charges its lines to the
        caller's quota on the ticket. Direct calls (no admission) are trusted."""
        if self.admission is None:
            yield Ticket(TRUSTED, 0, backend)
            return
        caller = caller_of(self.admission, request)
        async with self.admission.dialogue(caller, backend) as ticket:
            yield ticket

    async def find(
        self,
        query: str | None,
        picked: Sequence[str] | None,
        request: gr.Request | None = None,
    ) -> tuple[Any, Any, str]:
        """NPCs for the picker (by meaning, or the first ones) and the library's worlds;
        the NPCs already picked stay picked."""
        library = self._library(request)
        query = _text(query, "The search text")
        if query and query.strip():
            npcs = [hit.npc for hit in await library.search(query, k=30)]
        else:
            npcs = await library.list_npcs(limit=100)
        kept = _texts(picked, "The NPCs")
        choices = [(f"{n.name} · {n.occupation} ({n.world})", n.id) for n in npcs]
        known = {value for _, value in choices}
        choices += [(value, value) for value in kept if value not in known]
        worlds = [NO_WORLD, *await library.worlds()]
        status = f"{len(npcs)} NPCs found." if npcs else "No NPC in the library yet."
        return gr.update(choices=choices, value=kept), gr.update(choices=worlds), status

    async def generate(
        self,
        npc_ids: Sequence[str] | None,
        world: str | None,
        situations: str | None,
        shipped: Sequence[str] | None,
        variants: object,
        backend: str | None,
        locked: Sequence[str] | None = None,
        previous: Sequence[Line] | None = None,
        request: gr.Request | None = None,
    ) -> AsyncIterator[Outputs]:
        """Every line, streamed as they finish; locked lines are kept as they were."""
        started = time.perf_counter()
        world = _text(world, "The world")
        ids = _texts(npc_ids, "The NPCs")
        situations = _text(situations, "The situations")
        asked = self.planner.situations(situations, _texts(shipped, "The shipped situations"))
        library = self._library(request)
        npcs = await self.planner.npcs(ids, None if world == NO_WORLD else world, library)
        requests = self.planner.requests(npcs, asked, _whole(variants))
        backend = _text(backend, "The backend") or None
        pinned = set(_texts(locked, "The locked lines"))
        kept = {line["key"]: line for line in previous or () if line["key"] in pinned}
        lines: list[Line] = [_pending(request) for request in requests]
        todo: list[int] = []
        for index, line in enumerate(lines):
            if line["key"] in kept:
                lines[index] = {**kept[line["key"]], "cached": True}
            else:
                todo.append(index)
        stop = StopFlag()
        delivered_lines: list[DialogueLine] = []
        async with self._admitted(request, backend) as ticket:
            ticket.count = lambda: sum(map(_written, delivered_lines))
            name = self.dialogue.backend_name(ticket.backend)
            yield self._outputs(lines, pinned, _status(lines, started, name, None), stop)
            shown = time.perf_counter()
            # Only the lines the cache does not have are charged (locked ones are kept).
            stream = self.dialogue.stream(
                [requests[i] for i in todo], backend=ticket.backend, before_writing=ticket.charge
            )
            try:
                async with contextlib.aclosing(stream):  # leaving it cancels the calls running
                    async for delivered in stream:
                        lines[todo[delivered.index]] = {**delivered.line.as_dict(), "take": 0}
                        delivered_lines.append(delivered.line)
                        if stop.requested:
                            break
                        if time.perf_counter() - shown >= REFRESH_S:
                            shown = time.perf_counter()
                            limit = self.dialogue.limits().get(name)
                            status = _status(lines, started, name, limit)
                            yield self._outputs(lines, pinned, status, stop)
            except QuotaExceededError as refused:
                # Show what the cache and the locks gave, then say why the rest was not
                # written (the placeholders would otherwise stay, and the kept lines go).
                done = [line for line in lines if line["line"] is not None]
                yield self._outputs(done, pinned, f"Not written: {refused}", stop)
                raise
            status = _status(lines, started, name, self.dialogue.limits().get(name))
            if stop.requested:
                lines = [line for line in lines if line["line"] is not None or line["error"]]
                status = f"Stopped: {status} (the finished lines are kept, and cached)"
            yield self._outputs(lines, pinned, status, stop)

    @staticmethod
    def stop(flag: StopFlag | None) -> None:
        """End the running generation after the lines that already finished."""
        if flag is not None:
            flag.requested = True

    def _outputs(self, lines: list[Line], pinned: set[str], status: str, stop: StopFlag) -> Outputs:
        lines = list(lines)  # a snapshot: the run goes on filling its own list
        done = [line for line in lines if line.get("line") is not None]
        choices = [_label(line) for line in done]
        keys = {key for _, key in choices}
        return (
            render_lines(lines, sorted(pinned)),
            lines,
            status,
            gr.update(choices=choices, value=sorted(pinned & keys)),
            gr.update(choices=choices),
            lines,
            stop,
        )

    async def regenerate(
        self,
        key: str | None,
        backend: str | None,
        locked: Sequence[str] | None,
        previous: Sequence[Line] | None,
        request: gr.Request | None = None,
    ) -> tuple[str, list[Line], str, list[Line]]:
        """A new take of one line (it replaces the old one, in the cache too)."""
        lines = [dict(line) for line in previous or ()]
        key = _text(key, "The line")
        backend = _text(backend, "The backend") or None
        index = next((i for i, line in enumerate(lines) if line["key"] == key), None)
        if index is None:
            raise InputError("Pick a line to regenerate (generate some first).")
        if key in set(_texts(locked, "The locked lines")):
            raise InputError("That line is locked: unlock it first to regenerate it.")
        old = lines[index]
        npc = await self._library(request).get(old["npc_id"])
        take = int(old.get("take") or 0) + 1
        async with self._admitted(request, backend) as ticket:
            ticket.charge(1)  # a new take is always written
            line = await self.dialogue.regenerate(
                LineRequest(npc, old["situation"], int(old["variant"])),
                take=take,
                avoid=[x["line"] for x in lines if x["npc_id"] == npc.id and x["line"]],
                backend=ticket.backend,
            )
            ticket.count = lambda: int(_written(line))
        lines[index] = {**line.as_dict(), "take": take}
        status = f"Regenerated {npc.name} · {old['situation']} · {old['variant']}."
        if line.error:
            status = f"Could not regenerate that line: {line.error}"
            lines[index] = old
        return render_lines(lines, list(locked or ())), lines, status, lines

    def relock(self, locked: Sequence[str] | None, previous: Sequence[Line] | None) -> str:
        return render_lines(list(previous or ()), _texts(locked, "The locked lines"))

    async def export(self, previous: Sequence[Line] | None, label: str) -> str:
        """The lines as JSON, a localisation CSV, Yarn Spinner or Ink."""
        fields = DialogueLine.__dataclass_fields__
        lines = [
            DialogueLine(**{k: v for k, v in line.items() if k in fields})
            for line in previous or ()
        ]
        if not any(line.line for line in lines):
            raise InputError("Generate some lines first; there is nothing to export yet.")
        label = _text(label, "The format")
        filename, data = export_lines(lines, EXPORT_LABELS.get(label, label))
        return await offer(self.export_dir, "dialogue-", filename, data)


def _written(line: DialogueLine) -> bool:
    """A line newly written by the backend (not served from the cache, not failed)."""
    return line.line is not None and line.error is None and not line.cached


def _text(value: object, what: str) -> str:
    """A text field's value as the API may send it: text, or nothing."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{what} must be text; got {type(value).__name__}.")
    return value


def _texts(value: object, what: str) -> list[str]:
    """A multi-select's value: a list of texts (one text counts as a list of one)."""
    if value is None or isinstance(value, str):
        return [value] if value else []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{what} must be a list of texts.")
    return list(value)


def _whole(value: object) -> int:
    try:
        return int(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"Variants must be a whole number; got {value!r}.") from None


def _pending(request: LineRequest) -> Line:
    situation = situation_text(request.situation)
    return {
        "key": localisation_key(request.npc.id, situation, request.variant),
        "npc_id": request.npc.id,
        "npc_name": request.npc.name,
        "situation": situation,
        "variant": request.variant,
        "line": None,
        "cached": False,
        "error": None,
        "take": 0,
    }


def build_dialogue(
    dialogue: DialogueManager,
    planner: DialoguePlanner,
    library: Library,
    export_dir: Path,
    backend_names: Sequence[str],
    tab: gr.Tab | None = None,
    admission: Admission | None = None,
) -> None:
    handlers = DialogueHandlers(dialogue, planner, library, export_dir, backend_names, admission)
    with gr.Row():
        query = gr.Textbox(label="Find NPCs", placeholder="grumpy baker, or a name", scale=3)
        find = gr.Button("Find", scale=0)
        npcs = gr.Dropdown([], multiselect=True, allow_custom_value=True, label="NPCs", scale=4)
        world = gr.Dropdown(
            [NO_WORLD], value=NO_WORLD, allow_custom_value=True,
            label="…or a whole world's cast", scale=2,
        )  # fmt: skip
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            situations = gr.Textbox(
                label="Situations, one per line",
                placeholder="greets the player at dawn\nplayer steals from the stall\n"
                "asked about the missing ship",
                lines=5,
            )
            shipped = gr.Dropdown(
                planner.shipped_choices(), multiselect=True, label="…and/or shipped situations"
            )
            with gr.Row():
                variants = gr.Slider(
                    1, planner.limits.max_variants, value=3, step=1, label="Variants per situation"
                )
                backend = gr.Dropdown(["auto", *backend_names], value="auto", label="Backend")
            with gr.Row():
                generate = gr.Button("Generate lines", variant="primary", scale=3)
                stop = gr.Button("Stop", variant="stop", scale=1)
            status = gr.Markdown()
            with gr.Accordion("Regenerate, lock, export", open=True):
                pick = gr.Dropdown([], label="Line", allow_custom_value=True)
                regenerate = gr.Button("Regenerate this line")
                locked = gr.Dropdown([], multiselect=True, label="Locked lines (kept as they are)")
                fmt = gr.Radio(
                    list(EXPORT_LABELS), value="CSV (localisation table)", label="Export"
                )
                export = gr.Button("Export")
                exported = gr.File(label="Download", interactive=False)
        with gr.Column(scale=3):
            shown = gr.HTML(EMPTY)
            lines = gr.JSON(label="Lines (JSON)", visible=False)
    state = gr.State([])
    running = gr.State(None)

    h = user_errors
    find_outputs = [npcs, world, status]
    find.click(h(handlers.find), [query, npcs], find_outputs, api_name="dialogue_find")
    query.submit(h(handlers.find), [query, npcs], find_outputs, api_visibility="private")
    if tab is not None:
        tab.select(h(handlers.find), [query, npcs], find_outputs, api_visibility="private")
    inputs = [npcs, world, situations, shipped, variants, backend, locked, state]
    outputs = [shown, lines, status, locked, pick, state, running]
    generate.click(h(handlers.generate), inputs, outputs, api_name="generate_dialogue")
    # Not Gradio's cancels=: that would end the run before it shows what finished.
    stop.click(
        h(handlers.stop), [running], None, api_visibility="private", queue=False,
        concurrency_limit=None,
    )  # fmt: skip
    regenerate.click(
        h(handlers.regenerate), [pick, backend, locked, state], [shown, lines, status, state],
        api_name="dialogue_regenerate",
    )  # fmt: skip
    locked.change(h(handlers.relock), [locked, state], [shown], api_visibility="private")
    export.click(h(handlers.export), [state, fmt], [exported], api_name="dialogue_export")
