"""The Library tab's export and import: files out in every format, cards in.

The status line shows the result of the last action, failures included:
a failed export or import writes its message there as well as in the
pop-up, so the line never shows an earlier success as if it were news.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from app.errors import InputError, NPCForgeError
from app.services.admission import Admission
from app.services.exports import EXPORT_FORMATS, SCOPES, ExportService
from app.ui.downloads import offer
from app.ui.errors import as_gradio_error, required_npc_id, warn
from app.ui.identity import caller_of, library_seen_by

FAILED = "✗ {action} failed: {message}"
MAX_NOTES_SHOWN = 5


def _required(npc_id: str | None) -> str:
    return required_npc_id(npc_id, "search or list, then pick one (or give its id)")


class CardHandlers:
    """Plain methods, tested directly; ``build_card_io`` wires them."""

    def __init__(
        self, exports: ExportService, export_dir: Path, admission: Admission | None = None
    ) -> None:
        self.exports = exports
        self.export_dir = export_dir
        self.admission = admission  # None: every caller is trusted (direct calls)

    def _exports(self, request: gr.Request | None) -> tuple[ExportService, str | None]:
        """Exports over the caller's view of the library, and whose imports are."""
        if self.admission is None:
            return self.exports, None
        view = library_seen_by(self.exports.library, self.admission, request)
        owner = self.admission.owner(caller_of(self.admission, request))
        return self.exports.seen_by(view), owner

    async def export(
        self, npc_id: str | None, scope: str, fmt: str, request: gr.Request | None = None
    ) -> tuple[str, str]:
        """Write the chosen NPC (or its whole world) in a format; returns the file."""
        exports, _ = self._exports(request)
        exported = await exports.export(_required(npc_id), scope, fmt)
        path = await offer(self.export_dir, "export-", exported.filename, exported.data)
        plural = "s" if exported.count != 1 else ""
        return path, f"Exported {exported.count} NPC{plural} as {fmt}: {exported.filename}."

    async def import_cards(
        self, files: Sequence[str] | None, request: gr.Request | None = None
    ) -> str:
        """Character Cards V1/V2/V3 (JSON, PNG, CHARX or zips of them) into the library."""
        if not files:
            raise InputError(
                "Choose one or more card files (.json, .png, .charx, or a zip of them) to import."
            )
        paths = [Path(name) for name in files]
        contents = await asyncio.to_thread(lambda: [(p.name, p.read_bytes()) for p in paths])
        exports, owner = self._exports(request)
        report = await exports.import_cards(contents, owner)
        if report.problems and not report.imported:
            raise InputError("; ".join(report.problems))
        for message in [*report.problems, *report.notes[:MAX_NOTES_SHOWN]]:
            warn(message)
        count = len(report.imported)
        line = f"Imported {count} card{'s' if count != 1 else ''}: "
        line += ", ".join(npc.name for npc in report.imported) + "."
        if report.problems:
            line += f" Refused {len(report.problems)}: " + "; ".join(report.problems)
        if report.notes:
            shown = report.notes[:MAX_NOTES_SHOWN]
            more = len(report.notes) - len(shown)
            line += f" Notes: {'; '.join(shown)}" + (f" (and {more} more)" if more else "")
        return line


def unchanged(count: int) -> tuple[Any, ...]:
    """Outputs a failed action leaves as they were (all but the status line)."""
    return tuple(gr.skip() for _ in range(count))


def status_of_last_action(
    fn: Callable[..., Any], action: str, blank: tuple[Any, ...] = ()
) -> Callable[..., AsyncIterator[Any]]:
    """``fn`` as a streaming handler whose last output is the status line: on
    failure it shows the failure there (``blank`` fills the other outputs),
    then raises, so the pop-up and API callers get the error too."""

    @functools.wraps(fn)  # Gradio reads fn's parameters (a gr.Request is passed in)
    async def run(*args: Any) -> AsyncIterator[Any]:
        try:
            yield await fn(*args)
        except Exception as exc:
            error = as_gradio_error(exc)
            message = str(exc) if isinstance(exc, NPCForgeError) else error.message
            line = FAILED.format(action=action, message=message)
            yield (*blank, line) if blank else line
            raise error from None

    return run


def build_card_io(
    exports: ExportService,
    export_dir: Path,
    chosen: gr.Dropdown,
    status: gr.Markdown,
    admission: Admission | None = None,
) -> None:
    """The Export and Import accordions, for the NPC picked in ``chosen``."""
    handlers = CardHandlers(exports, export_dir, admission)
    with gr.Accordion("Export", open=False):
        scope = gr.Radio(list(SCOPES), value=SCOPES[0], label="What")
        fmt = gr.Dropdown(list(EXPORT_FORMATS), value="JSON", label="Format")
        export = gr.Button("Export")
        exported = gr.File(label="Download", interactive=False)
    with gr.Accordion("Import Character Cards (V1/V2/V3: JSON, PNG, CHARX or a zip)", open=False):
        uploads = gr.File(
            file_count="multiple", file_types=[".json", ".png", ".charx", ".zip"], type="filepath"
        )
        do_import = gr.Button("Import")
    export.click(
        status_of_last_action(handlers.export, "Export", blank=(None,)),
        [chosen, scope, fmt],
        [exported, status],
        api_name="library_export",
    )
    do_import.click(
        status_of_last_action(handlers.import_cards, "Import"),
        [uploads],
        [status],
        api_name="library_import",
    )
