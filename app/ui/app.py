"""The app frame: tabs, theme and launch. Later tabs join ``create_app``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import gradio as gr

from app import __version__
from app.clients import Services
from app.ui.generate_tab import build_generate
from app.ui.library_tab import build_library
from app.ui.personalities_tab import build_personalities
from app.ui.routes import add_routes
from app.ui.stats_tab import build_stats
from utils.watching import FolderWatcher


def app_css(services: Services) -> str:
    path = services.settings.assets_dir / "app.css"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def create_app(services: Services) -> gr.Blocks:
    """Build the Blocks without launching them."""
    services.response_cache  # noqa: B018 - registers its tiers with the stats registry
    with gr.Blocks(title="NPC Forge", analytics_enabled=False) as demo:
        gr.Markdown(f"# NPC Forge <small>v{__version__}</small>")
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                build_generate(services)
            with gr.Tab("Library", id="library"):
                build_library(services)
            with gr.Tab("Personalities", id="personalities"):
                build_personalities(services)
            with gr.Tab("Stats", id="stats") as stats_tab:
                build_stats(services, stats_tab)
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


def serve(
    services: Services, *, host: str | None = None, port: int | None = None, share: bool = False
) -> gr.Blocks:
    """Start the UI (and /metrics, /stats.json, /healthz) without blocking."""
    demo = create_app(services)
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=True,
        **launch_options(services),
    )
    add_routes(demo.app, services)
    return demo


def launch(services: Services, *, host: str | None, port: int | None, share: bool) -> None:
    """Serve until interrupted; None host/port read GRADIO_SERVER_NAME/PORT."""
    watcher = start_background_work(services)
    demo = serve(services, host=host, port=port, share=share)
    try:
        demo.block_thread()
    finally:
        watcher.stop()
        demo.close()
