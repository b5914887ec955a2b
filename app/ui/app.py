"""The app frame: tabs, theme, launch and shutdown. Later tabs join ``create_app``."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr

from app import __version__
from app.services.accounts import check_exposure
from app.ui.chat_tab import build_chat
from app.ui.dialogue_tab import build_dialogue
from app.ui.generate_tab import build_generate
from app.ui.library_tab import build_library
from app.ui.media_routes import CardMedia, add_media_routes
from app.ui.personalities_tab import build_personalities
from app.ui.routes import add_routes
from app.ui.sessions import signed_in
from app.ui.stats_tab import build_stats
from app.ui.worlds_tab import build_worlds
from app.wiring import Services

log = logging.getLogger(__name__)
# Waiting for library and cache writes at shutdown, at most.
SHUTDOWN_TIMEOUT_S = 30.0


T = TypeVar("T")


def _inside_an_event_loop(build: Callable[[], T]) -> T:
    """``build()``, inside a short-lived event loop that is closed afterwards.

    Called outside a running loop, Gradio makes a new event loop for each of
    its locks and never closes them (leaked sockets); inside one it makes none.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:

        async def in_a_loop() -> T:
            return build()

        return asyncio.run(in_a_loop())
    return build()


def create_app(services: Services, export_dir: Path | None = None) -> gr.Blocks:
    """Build the Blocks without launching them."""
    return _inside_an_event_loop(lambda: _create_app(services, export_dir))


def _create_app(services: Services, export_dir: Path | None) -> gr.Blocks:
    exports = export_dir or Path(tempfile.gettempdir()) / "npc-forge-exports"
    media = CardMedia(services.portraits, services.voices)
    keep = int(services.settings.download_keep_s)
    with gr.Blocks(
        title="NPC Forge",
        analytics_enabled=False,
        # Gradio's copies of uploads and downloads: checked every 10 min, kept `keep` s.
        delete_cache=(min(600, keep), keep),
    ) as demo:
        gr.Markdown(f"# NPC Forge <small>v{__version__}</small>")
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                build_generate(
                    services.cast, services.worlds, exports, services.admission, media=media
                )
            with gr.Tab("World Builder", id="worlds") as worlds_tab:
                build_worlds(
                    services.world_builder, services.backends.names(), exports, worlds_tab,
                    services.admission,
                )  # fmt: skip
            with gr.Tab("Library", id="library"):
                build_library(
                    services.library,
                    services.refine,
                    services.removal,
                    services.exports,
                    exports,
                    default_temperature=services.refine.default_temperature,
                    admission=services.admission,
                    media=media,
                    graphs=services.graphs,
                )
            with gr.Tab("Chat", id="chat"):
                build_chat(
                    services.chat,
                    services.library,
                    services.memory,
                    exports,
                    services.admission,
                    media=media,
                )
            with gr.Tab("Dialogue", id="dialogue") as dialogue_tab:
                build_dialogue(
                    services.dialogue,
                    services.dialogue_planner,
                    services.library,
                    exports,
                    services.backends.names(),
                    dialogue_tab,
                    services.admission,
                )
            with gr.Tab("Personalities", id="personalities") as personalities_tab:
                build_personalities(services.assets.personalities, personalities_tab)
            with gr.Tab("Stats", id="stats") as stats_tab:
                build_stats(services.observability, stats_tab)
    demo.queue(default_concurrency_limit=4, max_size=64)
    return demo


def launch_options(services: Services) -> dict[str, Any]:
    """What every launch passes: the CSS, the footer links, how many sessions' state
    to keep."""
    return {
        "css": services.assets.css(),
        "footer_links": ["api", "settings"],
        "state_session_capacity": services.settings.ui_sessions,
    }


def server_loop(demo: gr.Blocks) -> asyncio.AbstractEventLoop | None:
    """The event loop the launched server runs handlers on (None if it cannot be found)."""
    try:
        return demo.server.servers[0].get_loop()
    except (AttributeError, IndexError):
        log.warning("cannot find the server's event loop; background work runs unattended")
        return None


def serve(
    services: Services, *, host: str | None = None, port: int | None = None, share: bool = False
) -> gr.Blocks:
    """Start the UI (and /metrics, /stats.json, /healthz) without blocking; the
    caches warm up in the background on the server's own loop."""
    demo = create_app(services)
    options = {
        "server_name": host,
        "server_port": port,
        "share": share,
        "prevent_thread_lock": True,
        "max_file_size": int(services.settings.upload_max_mb * 1024 * 1024),
        **launch_options(services),
    }
    if services.accounts.enabled:
        options["auth"] = services.accounts.check
        options["auth_message"] = "Sign in to NPC Forge with the account you were given."
    _inside_an_event_loop(lambda: demo.launch(**options))
    session = signed_in(demo.app, services.accounts)
    add_routes(demo.app, services.observability, session)
    add_media_routes(
        demo.app,
        services.portraits,
        services.voices,
        services.library,
        services.admission,
        session,
    )
    loop = server_loop(demo)
    if loop is not None:
        warm: Future[None] = asyncio.run_coroutine_threadsafe(services.warm_up(), loop)
        warm.add_done_callback(_log_failure)
    return demo


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("warm-up failed: %s", future.exception())


def shutdown(services: Services, demo: gr.Blocks) -> None:
    """Finish library and cache writes and close connections, on the server's
    loop (where they belong), then stop the server."""
    loop = server_loop(demo)
    if loop is not None and loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(services.aclose(), loop).result(SHUTDOWN_TIMEOUT_S)
        except Exception as exc:  # shutting down anyway; say what was not finished
            log.warning("shutdown: %s", exc)
    demo.close()


def launch(
    services: Services,
    *,
    host: str | None,
    port: int | None,
    share: bool,
    no_auth: bool = False,
) -> None:
    """Serve until interrupted; None host/port read GRADIO_SERVER_NAME/PORT.
    Refuses (ConfigError) to serve other machines without sign-in unless ``no_auth``."""
    check_exposure(
        host=host or os.environ.get("GRADIO_SERVER_NAME"),
        share=share,
        accounts=services.accounts,
        no_auth=no_auth,
    )
    watcher = services.watch_assets()
    demo = serve(services, host=host, port=port, share=share)
    try:
        demo.block_thread()
    finally:
        watcher.stop()
        shutdown(services, demo)
