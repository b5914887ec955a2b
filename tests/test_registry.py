"""Backends by name."""

import os
import subprocess
import sys

import pytest

from app.assets import Assets
from app.backends.procedural import ProceduralBackend
from app.backends.registry import (
    BackendContext,
    BackendRegistry,
    default_registry,
    resolve_backend_name,
)
from app.errors import UnknownBackendError
from config import PROJECT_DIR, Settings


def _context(settings: Settings) -> BackendContext:
    return BackendContext(assets=Assets(settings.assets_dir))


def test_builtins_are_registered() -> None:
    assert default_registry().names() == ["local", "openai", "procedural"]


def test_unknown_backend_lists_the_known_ones(settings: Settings) -> None:
    with pytest.raises(UnknownBackendError) as caught:
        default_registry().create("gpt-5-turbo-max", settings, _context(settings))
    assert isinstance(caught.value, KeyError)
    message = str(caught.value)
    assert "gpt-5-turbo-max" in message and "openai, procedural" in message


def test_auto_picks_openai_only_when_configured(settings: Settings) -> None:
    settings = settings.model_copy(update={"backend": "auto"})
    assert resolve_backend_name(settings, "auto") == "procedural"
    keyed = settings.model_copy(update={"openai_base_url": "http://127.0.0.1:9/v1"})
    assert resolve_backend_name(keyed, "auto") == "openai"
    assert resolve_backend_name(keyed, "Procedural") == "procedural"
    # "auto" in a form means: what the settings name.
    configured = settings.model_copy(update={"backend": "openai"})
    assert resolve_backend_name(configured, "auto") == "openai"
    assert resolve_backend_name(configured, None) == "openai"


def test_register_rejects_duplicates_and_auto(settings: Settings) -> None:
    registry = BackendRegistry()
    registry.register("x", ProceduralBackend)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("x", ProceduralBackend)
    with pytest.raises(ValueError, match="reserved"):
        registry.register("auto", ProceduralBackend)
    assert registry.create("x", settings, _context(settings)).name == "procedural:v1"


def test_procedural_backend_does_not_import_the_openai_sdk(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import sys; from app.wiring import Services; from config import Settings;"
        "Services(Settings(_env_file=None)).backends.get('procedural');"
        "print(sorted(m for m in ('openai', 'gradio', 'chromadb') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"
