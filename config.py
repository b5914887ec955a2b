"""NPC Forge settings: one object, every default in one place.

Precedence is explicit argument > environment (``NPC_FORGE_*``, then ``.env``) >
default. The OpenAI SDK's standard ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``
are honoured; the project's own ``NPC_FORGE_OPENAI_*`` variables override them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_DIR = Path(__file__).resolve().parent

BackendKind = Literal["remote", "local"]
StructuredOutput = Literal["auto", "json_schema", "json_object"]


class Settings(BaseSettings):
    """Everything NPC Forge can be told; build it once and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="NPC_FORGE_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    # Which backend generates: "auto" picks openai when a key or base URL is set.
    backend: str = "auto"

    data_dir: Path = Path("data")
    assets_dir: Path = PROJECT_DIR / "assets"

    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("NPC_FORGE_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
    )
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("NPC_FORGE_OPENAI_API_KEY", "OPENAI_API_KEY"),
    )
    openai_model: str = "gpt-4o-mini"
    openai_timeout: float = Field(default=60.0, gt=0)
    # json_schema where the server supports it; "auto" falls back to json_object
    # when a server rejects it (llama.cpp's server answers HTTP 500).
    openai_structured_output: StructuredOutput = "auto"
    openai_max_tokens: int = Field(default=1200, ge=64)
    # The longest chat reply, in tokens, when a request sets none.
    chat_max_tokens: int = Field(default=400, ge=16)
    # The server's context window in tokens (llama.cpp: --n_ctx). Prompt plus reply
    # budget must fit in it; None = ask the server (llama.cpp's /props) or not budget.
    openai_context_tokens: int | None = Field(default=None, ge=256)
    # Put the system prompt into the first user turn, for chat templates that drop
    # system messages; None = only for models known to (Gemma).
    openai_system_in_user: bool | None = None

    # The embedded local backend (extra [local]): a GGUF file run in-process with
    # llama-cpp-python. Never picked by "auto": set NPC_FORGE_BACKEND=local.
    local_model_path: Path | None = None
    local_context_tokens: int = Field(default=4096, ge=256)
    local_threads: int = Field(default=2, ge=1, le=256)
    local_max_tokens: int = Field(default=1200, ge=64)
    # Check only the sampled token against the JSON grammar (35-50 tokens/s on 2
    # cores instead of 1-10); off = llama-cpp-python's stock grammar sampler.
    local_fast_grammar: bool = True

    # Concurrency and rate limits per backend; None = the backend kind's default.
    max_concurrency: int | None = Field(default=None, ge=1, le=256)
    requests_per_minute: float | None = Field(default=None, gt=0)

    # Retries on 5xx/timeouts/cut streams: exponential backoff with full jitter.
    max_retries: int = Field(default=3, ge=0, le=10)
    retry_base_delay: float = Field(default=0.5, ge=0)
    retry_max_delay: float = Field(default=30.0, ge=0)
    # Rate limits (HTTP 429) are back-pressure, not failures: the guard halves its
    # concurrency, waits as the server asks and retries a call for up to this long.
    rate_limit_deadline: float = Field(default=300.0, ge=0)
    # Circuit breaker: fail fast after this many consecutive failed calls (5xx,
    # timeouts, cut streams; never 429 or another 4xx). The threshold starts at
    # circuit_failure_threshold and moves between the min and the max with the
    # success rate of the last circuit_window calls.
    circuit_failure_threshold: int = Field(default=5, ge=1)
    circuit_min_failures: int = Field(default=3, ge=1)
    circuit_max_failures: int = Field(default=10, ge=1)
    circuit_window: int = Field(default=50, ge=1)
    circuit_reset_seconds: float = Field(default=30.0, ge=0)

    # Response cache: memory LRU, then compact JSON files under cache_dir.
    cache_enabled: bool = True
    cache_dir: Path | None = None  # None = <data_dir>/cache
    cache_memory_entries: int = Field(default=256, ge=1)
    cache_max_entries: int = Field(default=10_000, ge=1)
    cache_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    cache_pretty: bool = False  # indented JSON files, for people who read them
    # Newest disk entries loaded into memory at start, in the background.
    cache_warm_entries: int = Field(default=64, ge=0)

    # NPC library (ChromaDB): embedded under data_dir/chroma, or a Chroma server
    # (`chroma run --path DIR --host 127.0.0.1 --port 8000`) when a host is set,
    # which is how several app instances share one library.
    chroma_host: str | None = None
    chroma_port: int = Field(default=8000, ge=1, le=65535)
    embedding_threads: int = Field(default=1, ge=1, le=64)
    # Keep every NPC the UI generates in the library.
    library_autosave: bool = True

    # Chat: a longer message is cut with a notice; replies see this many past turns.
    chat_max_message_chars: int = Field(default=4000, ge=100)
    chat_history_turns: int = Field(default=8, ge=0, le=100)

    # Long-term memory (chat)
    # Retrieval as in Generative Agents: this many similarity candidates per query,
    # re-ranked by recency (decay per hour since last access), importance and
    # relevance, each min-max scaled, then weighted; the top k go into the prompt.
    memory_candidates: int = Field(default=50, ge=1, le=1000)
    memory_k: int = Field(default=4, ge=1, le=100)
    memory_max_k: int = Field(default=20, ge=1, le=100)
    memory_decay: float = Field(default=0.995, gt=0, lt=1)
    memory_weight_recency: float = Field(default=1.0, ge=0)
    memory_weight_importance: float = Field(default=1.0, ge=0)
    memory_weight_relevance: float = Field(default=1.0, ge=0)
    # Recency and importance count in full for the candidates most similar to the
    # query, fading to nothing at this much cosine similarity below the best: they
    # order memories that are about as relevant, and never lift an off-topic recent
    # one over the one that answers (0 = no gate, plain Generative Agents).
    memory_relevance_margin: float = Field(default=0.03, ge=0, le=2)
    # Roughly how many tokens of memories a chat prompt carries (4 characters a token).
    memory_prompt_tokens: int = Field(default=400, ge=16)
    # Search results cached per (npc, player, query); every write to an NPC's
    # memories drops its entries, so they are never stale.
    memory_cache_ttl: float = Field(default=300.0, gt=0)
    memory_cache_entries: int = Field(default=1024, ge=1)
    memory_max_chars: int = Field(default=2000, ge=20)
    # Imported lines without an importance get this one (1-10).
    memory_import_importance: int = Field(default=5, ge=1, le=10)
    # Extraction: one backend call per this many turns (and at a conversation's end);
    # messages kept for the next try when it fails, at most memory_buffer_max.
    memory_extract_every: int = Field(default=4, ge=1, le=100)
    memory_buffer_max: int = Field(default=64, ge=1)
    memory_temperature: float = Field(default=0.2, ge=0, le=2)
    # Reflection: when the importance of memories since the last reflection adds up
    # to this, the NPC writes 1-3 reflections.
    memory_reflection_threshold: int = Field(default=150, ge=1)
    # Small talk kept out of extraction: a message is skipped when, lower-cased and
    # without punctuation, it is nothing but these phrases (regular expressions).
    # Longer messages and any that state a fact (a number, a name, a promise, a
    # place...) are never skipped. "Yes", "no" and "okay" are not small talk: after a
    # question they are answers (a promise, a refusal).
    memory_skip_max_chars: int = Field(default=80, ge=0)
    memory_skip_patterns: tuple[str, ...] = (
        r"hi|hello|hey|hiya|howdy|greetings|hail|ahoy|yo|well met|welcome( back)?",
        r"good (morning|afternoon|evening|day|night)|morning|evening",
        r"(good ?)?bye|farewell|see (you|ya)( later| soon| around)?|take care|safe travels"
        r"|until next time|later",
        r"thanks|thank you|thank ye|cheers|much obliged|many thanks|(you'?re|you are) welcome"
        r"|my pleasure|no problem|don'?t mention it",
        r"how are (you|ye|things)( doing)?|how'?s it going|how (is|was) your day|how do you do"
        r"|what'?s up|sup|how have you been|(nice|pleased|good) to (meet|see) you",
        r"(i'?m|i am|im) (fine|good|well|alright|all right|doing well|great)|not bad|same here",
        r"h+m+|a+h+|o+h+|u+h+|u+m+|e+r+m*|lol|ha(ha)+|heh|nice|cool|wow|i see|got it|indeed"
        r"|very well|fair enough|right then|alas|oh well",
        r"friend|there|stranger|traveller|traveler|sir|madam|ma'?am|lad|lass|mate|pal|folks"
        r"|everyone|all|again|too|then|now|so much|very much|and|and you|you too|to you",
    )

    # Portraits and voices: drawn and spoken offline by default; an OpenAI-compatible
    # server paints portraits (/v1/images/generations) when images_model is set and
    # speaks lines (/v1/audio/speech) when speech_model is set. media_base_url
    # defaults to openai_base_url (and the API key is openai_api_key).
    media_base_url: str | None = None
    images_model: str | None = None
    images_size: str = "1024x1024"
    images_timeout: float = Field(default=120.0, gt=0)
    speech_model: str | None = None
    speech_timeout: float = Field(default=60.0, gt=0)
    # The longest text one spoken line may have; longer text is cut at a word.
    voice_max_chars: int = Field(default=600, ge=20, le=5000)
    # Speak the sample lines of just-generated NPCs in the background, into the cache.
    voice_warm_lines: bool = True

    # Dialogue lines (the Dialogue tab, `dialogue` command): one backend call per NPC
    # carries up to this many situations; concurrent calls default by backend kind
    # (DEFAULT_DIALOGUE_CONCURRENCY) and each backend may override it by name, e.g.
    # NPC_FORGE_DIALOGUE_CONCURRENCY='{"openai": 2}'.
    dialogue_situations_per_call: int = Field(default=10, ge=1, le=50)
    dialogue_concurrency: dict[str, int] = Field(default_factory=dict)
    dialogue_max_variants: int = Field(default=5, ge=1, le=20)
    dialogue_max_lines: int = Field(default=2000, ge=1)
    dialogue_max_situation_chars: int = Field(default=200, ge=10)

    max_npcs: int = Field(default=100, ge=1)
    max_setting_chars: int = Field(default=20_000, ge=100)
    default_temperature: float = Field(default=0.9, ge=0, le=2)

    log_level: str = "INFO"
    # The other commands print their own summary; their logs say only what went wrong
    # unless NPC_FORGE_LOG_LEVEL is set.
    cli_log_level: str = "WARNING"

    # Sign-in and quotas (shared links, teams). Accounts: "user:password[:role]",
    # roles admin and designer; NPC_FORGE_AUTH takes several, space-separated.
    auth: Annotated[tuple[str, ...], NoDecode] = ()
    auth_file: Path | None = None
    auth_hash_iterations: int = Field(default=600_000, ge=1000)
    # Backends a designer may pick (an admin may pick any): the owner's API key is
    # not spent by whoever has the link unless the owner says so.
    designer_backends: Annotated[tuple[str, ...], NoDecode] = ("procedural",)
    # Per user (signed-in name, or client address without sign-in); 0 = no limit.
    quota_npcs_per_hour: int = Field(default=300, ge=0)
    quota_chat_per_minute: int = Field(default=30, ge=0)
    quota_jobs_running: int = Field(default=1, ge=1)
    quota_jobs_queued: int = Field(default=1, ge=0)
    # Dialogue lines a user may have written per hour (one full run of the most
    # lines a run may ask for fits); lines served from the cache are not counted.
    quota_lines_per_hour: int = Field(default=2000, ge=0)
    # Browser/API sessions whose UI state the server keeps (least recently used
    # dropped first); Gradio keeps 10,000, about 0.4 MB each for this app.
    ui_sessions: int = Field(default=200, ge=1)
    # Uploads larger than this are refused before they are stored.
    upload_max_mb: float = Field(default=10.0, gt=0)
    # Download files and Gradio's copies of uploads and downloads are removed
    # after this many seconds.
    download_keep_s: float = Field(default=3600.0, gt=0)

    @field_validator("auth", "designer_backends", mode="before")
    @classmethod
    def _split_words(cls, value: Any) -> Any:
        """The environment gives one string: entries separated by whitespace (a
        password may hold a comma, so commas do not separate)."""
        if isinstance(value, str):
            return tuple(value.split())
        return value


# Defaults by backend kind: a remote API takes many requests at once, an
# embedded model on 2 cores runs one at a time.
DEFAULT_CONCURRENCY: dict[BackendKind, int] = {"remote": 8, "local": 1}
# Dialogue calls at once, by backend kind: a remote API rate-limits and bills per
# call, so a batch of NPCs goes to it a few at a time; in-process backends are
# bounded only by their guard.
DEFAULT_DIALOGUE_CONCURRENCY: dict[BackendKind, int] = {"remote": 4, "local": 16}
DEFAULT_REQUESTS_PER_MINUTE: dict[BackendKind, float | None] = {"remote": 600.0, "local": None}


def setting_default(name: str) -> Any:
    """A field's default, for keyword constructors that must not drift from this file."""
    return Settings.model_fields[name].default


def resolved_cache_dir(settings: Settings) -> Path:
    return settings.cache_dir or settings.data_dir / "cache"


def resolved_media_base_url(settings: Settings) -> str:
    return settings.media_base_url or settings.openai_base_url or "https://api.openai.com/v1"


def get_settings(**overrides: object) -> Settings:
    """Build settings; keyword overrides win over the environment (None = not given)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**given)  # type: ignore[arg-type]
