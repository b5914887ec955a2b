"""The Gradio UI: ``create_app`` builds the Blocks, ``launch`` serves them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gradio as gr

    from app.wiring import Services

__all__ = ["create_app", "launch"]


def create_app(services: Services) -> gr.Blocks:
    from app.ui.app import create_app as build

    return build(services)


def launch(
    services: Services,
    *,
    host: str | None = None,
    port: int | None = None,
    share: bool = False,
    no_auth: bool = False,
) -> None:
    import os

    from app.services.accounts import check_exposure

    # Before Gradio is imported: a refusal is immediate.
    check_exposure(
        host=host or os.environ.get("GRADIO_SERVER_NAME"),
        share=share,
        accounts=services.accounts,
        no_auth=no_auth,
    )
    from app.ui.app import launch as serve

    serve(services, host=host, port=port, share=share, no_auth=no_auth)
