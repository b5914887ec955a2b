"""Settings precedence: argument > NPC_FORGE_* > OPENAI_* > default."""

import pytest

from config import Settings, get_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.backend == "auto"
    assert settings.openai_api_key is None
    assert settings.max_npcs == 100


def test_environment_and_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPC_FORGE_BACKEND", "openai")
    monkeypatch.setenv("NPC_FORGE_MAX_CONCURRENCY", "3")
    assert Settings(_env_file=None).backend == "openai"  # type: ignore[call-arg]
    settings = get_settings(backend="procedural", max_concurrency=None)
    assert settings.backend == "procedural"  # the argument wins
    assert settings.max_concurrency == 3  # None means "not given": the env stays


def test_project_variables_override_the_sdk_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-sdk-variable")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-from-sdk-variable"
    assert settings.openai_base_url == "http://127.0.0.1:1/v1"
    monkeypatch.setenv("NPC_FORGE_OPENAI_API_KEY", "sk-project")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-project"


def test_api_key_is_not_in_the_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings(openai_api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(settings)
    assert "sk-very-secret" not in str(settings.model_dump())


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        get_settings(max_concurrency=0)
