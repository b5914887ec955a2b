"""Who is calling: the signed-in user, or the client's address."""

from __future__ import annotations

import gradio as gr

from app.services.admission import Admission, Caller


def caller_of(admission: Admission, request: gr.Request | None) -> Caller:
    """The caller of a UI or API event (Gradio passes the request)."""
    username = getattr(request, "username", None) if request is not None else None
    client = getattr(request, "client", None) if request is not None else None
    address = getattr(client, "host", None)
    return admission.caller(username, address)
