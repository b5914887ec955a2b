"""The app frame: tabs, theme and launch. Later tabs join ``create_app``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import gradio as gr

from app import __version__
from app.clients import Services
from app.ui.generate_tab import build_generate
from utils.watching import FolderWatcher


def app_css(services: Services) -> str:
    path = services.settings.assets_dir / "app.css"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def create_app(services: Services) -> gr.Blocks:
    """Build the Blocks without launching them."""
    with gr.Blocks(title="NPC Forge", analytics_enabled=False) as demo:
        gr.Markdown(f"# NPC Forge <small>v{__version__}</small>")
        with gr.Tabs(), gr.Tab("Generate", id="generate"):
            build_generate(services)
    demo.queue(default_concurrency_limit=4, max_size=64)
    return demo


def launch_options(services: Services) -> dict[str, Any]:
    """What every launch passes: the CSS and the footer links."""
    return {"css": app_css(services), "footer_links": ["api", "settings"]}


def start_background_work(services: Services) -> FolderWatcher:
    """Warm the caches in a thread (never delaying start-up) and watch assets/."""
    threading.Thread(
        target=lambda: asyncio.run(services.warm_up()), name="npc-forge-warm-up", daemon=True
    ).start()
    return services.watch_assets()


def launch(services: Services, *, host: str | None, port: int | None, share: bool) -> None:
    """Serve the UI until interrupted; None host/port read GRADIO_SERVER_NAME/PORT."""
    demo = create_app(services)
    watcher = start_background_work(services)
    try:
        demo.launch(server_name=host, server_port=port, share=share, **launch_options(services))
    finally:
        watcher.stop()
