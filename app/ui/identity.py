"""Who is calling: the signed-in user, or the client's address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import gradio as gr

from app.services.admission import Admission, Caller, Ticket
from app.services.library import EVERYONE, Library, Viewer

TRUSTED = Caller("local", "admin")  # a direct call (tests, the CLI): no admission


def caller_of(admission: Admission, request: gr.Request | None) -> Caller:
    """The caller of a UI or API event (Gradio passes the request)."""
    username = getattr(request, "username", None) if request is not None else None
    client = getattr(request, "client", None) if request is not None else None
    address = getattr(client, "host", None)
    return admission.caller(username, address)


def library_seen_by(
    library: Library, admission: Admission | None, request: gr.Request | None
) -> Library:
    """The library as the caller sees it: a designer's own NPCs and the team's
    (all of it when there is no admission: direct calls are trusted)."""
    if admission is None:
        return library
    return library.as_seen_by(admission.viewer(caller_of(admission, request)))


@asynccontextmanager
async def admitted(
    admission: Admission | None, caller: Caller | None, npcs: int, backend: str | None
) -> AsyncIterator[Ticket]:
    """The caller's backend rules, job slot and NPC quota around one generation
    (a cast, a regenerated NPC, new relationships); set the ticket's ``count``
    to what the run made, or the NPCs are given back."""
    if admission is None or caller is None:
        yield Ticket(TRUSTED, npcs, backend)
        return
    async with admission.cast(caller, npcs, backend) as ticket:
        yield ticket


def viewer_of(admission: Admission | None, request: gr.Request | None) -> Viewer:
    """Who the caller is for what they may change (everyone's when there is no
    admission: direct calls are trusted)."""
    if admission is None:
        return EVERYONE
    return admission.viewer(caller_of(admission, request))
