"""Shared fixtures: isolated settings, services, the fake OpenAI server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from app.backends.registry import BackendRegistry
from app.wiring import Services
from config import PROJECT_DIR, Settings
from tests.fake_openai import FakeOpenAIServer
from tests.npc_fixtures import npc_responder
from tests.threaded_server import free_port

ASSETS_DIR = PROJECT_DIR / "assets"
WORLDS_DIR = ASSETS_DIR / "worlds"


@pytest.fixture(autouse=True)
def _isolated_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test sees the developer's keys, servers or settings."""
    for name in list(os.environ):
        if name.startswith(("NPC_FORGE_", "OPENAI_", "GRADIO_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def cli_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data directory for ``main([...])`` runs (the CLI reads the environment)."""
    monkeypatch.setenv("NPC_FORGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NPC_FORGE_BACKEND", "procedural")
    return tmp_path / "data"


class FakeSleep:
    """Records the delays the code asked for instead of waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    # The library (Chroma) is on for the tests that are about it, off elsewhere:
    # opening it costs a second and is not what those tests check.
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "backend": "procedural",
        "library_autosave": False,
        # Speaking a finished cast's lines in the background changes the cache's
        # figures while a test reads them; the tests about it switch it on.
        "voice_warm_lines": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


MakeServices = Callable[..., Services]


@pytest.fixture
async def make_services(fake_sleep: FakeSleep) -> AsyncIterator[MakeServices]:
    """Build apps the way main.py does; every one is closed when the test ends
    (its connections, background library and cache writes)."""
    made: list[Services] = []

    def make(
        settings: Settings, registry: BackendRegistry | None = None, **options: Any
    ) -> Services:
        options.setdefault("sleep", fake_sleep)
        built = Services(settings, registry, **options)
        made.append(built)
        return built

    yield make
    for built in made:
        await built.aclose()


@pytest.fixture
def services(settings: Settings, make_services: MakeServices) -> Services:
    return make_services(settings)


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(responder=npc_responder) as server:
        yield server


@pytest.fixture
def openai_server(fake_server: FakeOpenAIServer) -> FakeOpenAIServer:
    """The shared fake server, reset to a clean, instant, valid-NPC state."""
    fake_server.reset(responder=npc_responder)
    return fake_server


@pytest.fixture
def openai_settings(tmp_path: Path, openai_server: FakeOpenAIServer) -> Settings:
    return make_settings(
        tmp_path,
        backend="openai",
        openai_base_url=openai_server.base_url,
        openai_api_key="sk-test-secret-123",
        openai_model="fake-model",
        openai_timeout=5.0,
        retry_base_delay=0.0,
    )


@pytest.fixture
def openai_services(openai_settings: Settings, make_services: MakeServices) -> Services:
    return make_services(openai_settings)


@contextmanager
def api_client(services: Services) -> Iterator[Any]:
    """The app served on 127.0.0.1 and a gradio_client Client on it, closed after."""
    from gradio_client import Client

    from app.ui.app import serve, shutdown

    demo = serve(services, host="127.0.0.1", port=free_port())
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        shutdown(services, demo)
