"""What keeps the process's memory bounded: the sessions' UI state, the embedder's buffers."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.store.embeddings import MiniLMEmbeddings
from tests.conftest import make_settings
from tests.threaded_server import free_port


@pytest.mark.server
@pytest.mark.slow
def test_the_server_keeps_the_state_of_at_most_ui_sessions_sessions(tmp_path: Path) -> None:
    from gradio_client import Client

    from app.ui.app import serve, shutdown
    from app.wiring import Services

    services = Services(make_settings(tmp_path, ui_sessions=3))
    demo = serve(services, host="127.0.0.1", port=free_port())
    try:
        for _ in range(6):  # six visitors, each a session of its own
            Client(demo.local_url, verbose=False).predict(api_name="/stats")
        # Gradio's default keeps 10,000 (~0.4 MB each here); the oldest went first.
        assert 1 <= len(demo.state_holder.session_data) <= 3
    finally:
        shutdown(services, demo)


def test_the_embedder_runs_without_onnxruntimes_cpu_arena(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # onnxruntime writes under ~/.cache
    embedder = MiniLMEmbeddings()
    assert len(embedder(["a fisher who hates the tide"])[0]) == 384
    session, _ = embedder._load()
    assert session.get_session_options().enable_cpu_mem_arena is False
