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
    services: Services, *, host: str | None = None, port: int | None = None, share: bool = False
) -> None:
    from app.ui.app import launch as serve

    serve(services, host=host, port=port, share=share)
