"""Voices of NPCs: one per NPC from its world's accent, gender, age and speech style, spoken
offline with eSpeak NG (or by a speech API when configured), as Ogg Opus,
cached by (voice, text) in the two-tier response cache.

A voice is written as a key (``espeak:en+m3:p40:r50:s160``, with
``|api:onyx:1.00`` when a speech model is set) so a play button's URL names
the voice and the text and nothing else: the route needs no lookup.
``warm_soon`` speaks the sample lines of just-generated NPCs in the
background, one line at a time, so their play buttons answer from the cache.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache

from app.cache.response import ResponseCache, Source
from app.errors import InputError, NPCForgeError
from app.models import NPC, World
from app.services.portrait_features import age_of, gender_key
from app.services.voice_accents import DEFAULT_ACCENT, LANGUAGES, accent_for
from app.services.voice_codec import MIME, SUFFIX, pcm_to_ogg_opus
from app.services.voice_engine import EspeakEngine, EspeakVoice, espeak_engine
from app.services.voice_remote import RemoteSpeaker

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger(__name__)

VOICE_VERSION = 1
VARIANTS = {
    "m": ("m1", "m2", "m3", "m4", "m5", "m6", "m7"),
    "f": ("f1", "f2", "f3", "f4", "f5"),
    "x": ("m5", "f2", "m7", "f4"),
}
KNOWN_VARIANTS = frozenset(
    {v for vs in VARIANTS.values() for v in vs}
    | {"whisper", "whisperf", "robosoft", "croak", "grandpa", "grandma"}
)
API_VOICES = {
    "m": ("onyx", "echo", "ash", "fable"),
    "f": ("nova", "shimmer", "coral", "sage"),
    "x": ("alloy", "ballad", "verse"),
}
BASE_PITCH = {"m": 38, "f": 66, "x": 52}
BASE_RATE = 165
_STYLE = {
    "whisper": re.compile(r"whisper|hushed|breathy", re.I),
    "robot": re.compile(r"modulator|metallic|robot|synthetic voice|terminal readout", re.I),
    "croak": re.compile(r"croak|hoarse|gravel|rasp", re.I),
    "deep": re.compile(r"deep|booming|rumbl|gruff|gravel|growl|bass", re.I),
    "high": re.compile(r"high-pitched|shrill|squeak|sing-song|piping|bird", re.I),
    "flat": re.compile(r"flat|monoton|clipped|deadpan|cold|drone|terminal|formal", re.I),
    "lively": re.compile(
        r"sing-song|melodic|excited|flamboyant|cheerful|lively|animated|loud", re.I
    ),
    "fast": re.compile(r"rapid|fast|quick|breathless|torrent|chatter|babbl|rushed|patter", re.I),
    "slow": re.compile(
        r"slow|drawl|deliberate|careful|pause|measured|silence|weigh|soft-spoken|precise", re.I
    ),
}
_KEY = re.compile(
    r"espeak:(?P<lang>[a-z0-9-]{2,16})\+(?P<variant>[A-Za-z0-9]{1,16}):p(?P<pitch>\d{1,2}):"
    r"r(?P<range>\d{1,2}):s(?P<rate>\d{2,3})(?:\|api:(?P<api>[a-z0-9_-]{1,32}):(?P<speed>\d\.\d\d))?$"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class Voice:
    espeak: EspeakVoice
    api_voice: str | None = None
    speed: float = 1.0

    @property
    def key(self) -> str:
        e = self.espeak
        key = f"espeak:{e.language}+{e.variant}:p{e.pitch}:r{e.range}:s{e.rate}"
        return key + (f"|api:{self.api_voice}:{self.speed:.2f}" if self.api_voice else "")


def parse_voice_key(key: str) -> Voice:
    """A voice from its key (as a play button's URL carries it)."""
    found = _KEY.match(key or "")
    if found is None or found["lang"] not in LANGUAGES or found["variant"] not in KNOWN_VARIANTS:
        raise InputError(f"Unknown voice {key[:80]!r}: take the voice from an NPC's card.")
    espeak = EspeakVoice(
        found["variant"],
        int(found["pitch"]),
        int(found["range"]),
        int(found["rate"]),
        found["lang"],
    )
    if found["api"]:
        return Voice(espeak, found["api"], float(found["speed"]))
    return Voice(espeak)


def _clamp(value: float, low: int, high: int) -> int:
    return int(max(low, min(high, round(value))))


def voice_for(npc: NPC, *, api: bool = False, accent: str = DEFAULT_ACCENT) -> Voice:
    """The NPC's voice: the world's accent, variant by gender (and a few styles),
    pitch by gender and age, intonation range and speed by speech style; small
    seeded differences so two NPCs of one kind do not sound alike."""
    gender = gender_key(npc.gender)
    age = age_of(npc)
    style = npc.speech_style
    seed = hashlib.blake2b(f"{npc.id}|{npc.name}|voice".encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(seed, "big"))
    variant = rng.choice(VARIANTS[gender])
    if _STYLE["whisper"].search(style):
        variant = "whisperf" if gender == "f" else "whisper"
    elif _STYLE["robot"].search(style):
        variant = "robosoft"
    elif _STYLE["croak"].search(style) and age >= 50:
        variant = "croak"
    elif age >= 70 and gender in ("m", "f"):
        variant = "grandpa" if gender == "m" else "grandma"
    pitch = BASE_PITCH[gender] + rng.uniform(-6, 6)
    if age < 14:
        pitch += 22
    elif age < 18:
        pitch += 8
    elif age >= 60:
        pitch -= 6 + (4 if age >= 75 else 0)
    pitch += -10 if _STYLE["deep"].search(style) else 0
    pitch += 10 if _STYLE["high"].search(style) else 0
    tone = 50 + rng.uniform(-8, 8)
    tone = 22 if _STYLE["flat"].search(style) else 82 if _STYLE["lively"].search(style) else tone
    rate = BASE_RATE + rng.uniform(-8, 8)
    rate += 40 if _STYLE["fast"].search(style) else 0
    rate -= 35 if _STYLE["slow"].search(style) else 0
    rate -= 15 if age >= 65 else 0
    espeak = EspeakVoice(
        variant, _clamp(pitch, 5, 95), _clamp(tone, 5, 95), _clamp(rate, 90, 320), accent
    )
    if not api:
        return Voice(espeak)
    return Voice(espeak, rng.choice(API_VOICES[gender]), max(0.6, min(1.6, espeak.rate / 170)))


@dataclass(frozen=True)
class Speech:
    audio: bytes
    voice: str
    duration_s: float
    source: Source | None  # where the cache found it; None when computed without a cache
    remote: bool = False
    first_audio_s: float = 0.0  # computed: from the request to the first samples
    mime: str = MIME
    suffix: str = SUFFIX


def clean_text(text: str | None, max_chars: int) -> str:
    cleaned = " ".join(_CONTROL.sub(" ", text or "").split())
    if not cleaned:
        raise InputError("Give the text to speak.")
    if len(cleaned) > max_chars:
        cut = cleaned[:max_chars]
        cleaned = cut[: cut.rfind(" ")] if " " in cut else cut
    return cleaned


class Voices:
    def __init__(
        self,
        engine: EspeakEngine,
        cache: ResponseCache | None,
        *,
        speaker: RemoteSpeaker | None = None,
        max_chars: int = 600,
        warm_lines: bool = True,
        world_for: Callable[[str], World] | None = None,
    ) -> None:
        self.engine = engine
        self.world_for = world_for  # the NPC's world, for its accent (None: default English)
        # Accents by world name: card renders ask per NPC; a world edit shows within a minute.
        self._accents: TTLCache[str, str] = TTLCache(maxsize=256, ttl=60)
        self.cache = cache
        self.speaker = speaker
        self.max_chars = max_chars
        self.warm_lines = warm_lines
        self._warming: set[asyncio.Task[None]] = set()
        self._queue: deque[tuple[NPC, str]] = deque()
        self.warmed = 0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        cache: ResponseCache | None,
        world_for: Callable[[str], World] | None = None,
    ) -> Voices:
        speaker = None
        if settings.speech_model:
            from app.services.portrait_remote import MediaClient
            from config import resolved_media_base_url

            key = settings.openai_api_key
            client = MediaClient(
                resolved_media_base_url(settings),
                key.get_secret_value() if key is not None else None,
                timeout=settings.speech_timeout,
            )
            speaker = RemoteSpeaker(client, settings.speech_model)
        return cls(
            espeak_engine(),
            cache,
            speaker=speaker,
            max_chars=settings.voice_max_chars,
            warm_lines=settings.voice_warm_lines,
            world_for=world_for,
        )

    def accent(self, world: str) -> str:
        if self.world_for is None:
            return DEFAULT_ACCENT
        accent = self._accents.get(world)
        if accent is None:
            accent = self._accents[world] = accent_for(self.world_for(world))
        return accent

    def voice_for(self, npc: NPC) -> Voice:
        return voice_for(npc, api=self.speaker is not None, accent=self.accent(npc.world))

    async def say(self, npc: NPC, text: str | None) -> Speech:
        """The NPC saying ``text``, as Ogg Opus."""
        return await self.say_as(self.voice_for(npc), text)

    async def say_as(self, voice: Voice, text: str | None) -> Speech:
        """``text`` in ``voice``: from the cache, or spoken now (and cached)."""
        line = clean_text(text, self.max_chars)
        if voice.api_voice and self.speaker is not None:
            try:
                return await self._cached(voice, line, remote=True)
            except NPCForgeError as exc:
                log.warning("speech API failed, speaking offline: %s", exc)
        return await self._cached(Voice(voice.espeak), line, remote=False)

    def _key(self, voice: Voice, line: str) -> str:
        who = self.speaker.identity if voice.api_voice and self.speaker else "espeak"
        payload = f"voice|v{VOICE_VERSION}|{who}|{voice.key}|{line}"
        return hashlib.sha256(payload.encode()).hexdigest()

    async def _cached(self, voice: Voice, line: str, *, remote: bool) -> Speech:
        timing: dict[str, float] = {}

        async def compute() -> dict[str, Any]:
            if remote and self.speaker is not None and voice.api_voice:
                audio = await self.speaker.speak(line, voice.api_voice, voice.speed)
                return {"audio": base64.b64encode(audio).decode(), "duration": 0.0}
            pcm = await asyncio.to_thread(self.engine.synthesize, line, voice.espeak)
            audio = await asyncio.to_thread(pcm_to_ogg_opus, pcm.samples, pcm.rate)
            timing["first_audio_s"] = pcm.first_audio_s
            return {"audio": base64.b64encode(audio).decode(), "duration": pcm.duration_s}

        if self.cache is None:
            value, source = await compute(), None
        else:
            value, source = await self.cache.get_or_compute(
                self._key(voice, line), compute, validate=_check_speech
            )
        return Speech(
            base64.b64decode(value["audio"]),
            voice.key,
            float(value["duration"]),
            source,
            remote=remote,
            first_audio_s=timing.get("first_audio_s", 0.0),
        )

    def warm_soon(self, npcs: Sequence[NPC]) -> None:
        """Speak these NPCs' sample lines into the cache, in the background: one
        worker per event loop takes them one line at a time, so casts finishing
        together queue up instead of taking every core (a failure costs that line)."""
        if not self.warm_lines or not npcs or self.cache is None:
            return
        self._queue.extend((npc, line) for npc in npcs for line in npc.sample_lines)
        loop = asyncio.get_running_loop()
        if not any(task.get_loop() is loop for task in self._warming):
            task = loop.create_task(self._warm())
            self._warming.add(task)
            task.add_done_callback(self._warming.discard)

    async def _warm(self) -> None:
        while self._queue:
            npc, line = self._queue.popleft()
            try:
                await self.say(npc, line)
                self.warmed += 1
            except Exception as exc:  # warm-up is a convenience: log and go on
                log.warning("voice warm-up of %s: %s", npc.id, exc)

    async def wait_warm(self) -> None:
        """Wait until the background warm-ups of this loop have finished (tests, CLI)."""
        loop = asyncio.get_running_loop()
        pending = [task for task in self._warming if task.get_loop() is loop]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def aclose(self) -> None:
        self._queue.clear()
        for task in list(self._warming):
            task.cancel()
        await self.wait_warm()
        if self.speaker is not None:
            await self.speaker.client.aclose()


def _check_speech(value: Any) -> None:
    if not isinstance(value, dict) or not isinstance(value.get("audio"), str):
        raise TypeError("a cached line is {'audio': base64, 'duration': seconds}")
