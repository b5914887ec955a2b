"""Backends by name."""

import subprocess
import sys

import pytest

from app.backends.registry import (
    BackendRegistry,
    default_registry,
    get_backend,
    resolve_backend_name,
)
from app.errors import UnknownBackendError
from config import PROJECT_DIR, Settings


def test_builtins_are_registered() -> None:
    assert default_registry().names() == ["openai", "procedural"]


def test_unknown_backend_lists_the_known_ones(settings: Settings) -> None:
    with pytest.raises(UnknownBackendError) as caught:
        get_backend("gpt-5-turbo-max", settings)
    assert isinstance(caught.value, KeyError)
    message = str(caught.value)
    assert "gpt-5-turbo-max" in message and "openai, procedural" in message


def test_auto_picks_openai_only_when_configured(settings: Settings) -> None:
    assert resolve_backend_name(settings, "auto") == "procedural"
    keyed = settings.model_copy(update={"openai_base_url": "http://127.0.0.1:9/v1"})
    assert resolve_backend_name(keyed, "auto") == "openai"
    assert resolve_backend_name(keyed, "Procedural") == "procedural"


def test_register_rejects_duplicates_and_auto(settings: Settings) -> None:
    registry = BackendRegistry()
    registry.register("x", lambda s: get_backend("procedural", s))
    with pytest.raises(ValueError, match="already registered"):
        registry.register("x", lambda s: get_backend("procedural", s))
    with pytest.raises(ValueError, match="reserved"):
        registry.register("auto", lambda s: get_backend("procedural", s))
    assert registry.create("x", settings).name == "procedural:v1"


def test_procedural_backend_does_not_import_the_openai_sdk() -> None:
    code = (
        "import sys; from app.backends.registry import get_backend; from config import Settings;"
        "get_backend('procedural', Settings(_env_file=None));"
        "print(sorted(m for m in ('openai', 'gradio', 'chromadb') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
