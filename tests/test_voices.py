"""Offline voices: one per NPC, spoken with eSpeak NG into Ogg Opus, cached by (voice, text)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import soundfile

from app.errors import InputError
from app.models import NPC, World
from app.services.voice_accents import accent_for
from app.services.voices import clean_text, parse_voice_key, voice_for
from app.wiring import Services
from tests.conftest import MakeServices, make_settings
from tests.npc_fixtures import valid_profile


def npc(**fields: Any) -> NPC:
    values: dict[str, Any] = {
        **valid_profile("Maud Fenn"),
        "id": "npc-00aa11bb22cc33dd",
        "world": "Saltmere",
        "backend": "test",
        "seed": 1,
    }
    values.update(fields)
    return NPC(**values)


class CountingEngine:
    """The real engine, with its syntheses counted."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.calls = 0

    def synthesize(self, text: str, voice: Any) -> Any:
        self.calls += 1
        return self.engine.synthesize(text, voice)


def test_voices_follow_gender_age_and_speech_style() -> None:
    woman = voice_for(npc(gender="female", age=30, speech_style="plain"))
    man = voice_for(npc(gender="male", age=30, speech_style="plain"))
    assert woman.espeak.variant.startswith("f") and man.espeak.variant.startswith("m")
    assert woman.espeak.pitch > man.espeak.pitch
    assert voice_for(npc(gender="male", age=80, speech_style="plain")).espeak.variant == "grandpa"
    fast = voice_for(npc(speech_style="rapid and breathless, always mid-task"))
    slow = voice_for(npc(speech_style="slow, drawling and full of long silences"))
    assert fast.espeak.rate > slow.espeak.rate + 50
    assert voice_for(npc(speech_style="soft and whispering")).espeak.variant == "whisper"
    assert voice_for(npc()) == voice_for(npc())  # deterministic
    others = {voice_for(npc(id=f"npc-{i}", name=f"N{i}")).key for i in range(8)}
    assert len(others) > 4  # NPCs of one kind do not all sound alike


def test_voice_keys_round_trip_and_bad_ones_are_refused() -> None:
    voice = voice_for(npc())
    assert parse_voice_key(voice.key) == voice
    for bad in ("espeak:en+zz9:p40:r50:s160", "rm -rf /", "espeak:en+m3:p400:r50:s160"):
        with pytest.raises(InputError, match="Unknown voice"):
            parse_voice_key(bad)


@pytest.mark.parametrize(
    ("name", "era", "detail", "accent"),
    [
        ("Gull Rock", "Victorian Hebrides", "", "en-gb-scotland"),  # the place, not the era
        ("Port Sable", "Caribbean pirate port", "A Scottish bosun drinks here.", "en-029"),
        ("Dust Creek", "Wild West", "", "en-us"),
        ("Fogwell", "Victorian London", "", "en-gb-x-rp"),
        ("Lanternfall", "An age of lamps and canals", "Mill town smoke over Lancashire.",
         "en-gb-x-gbclan"),
        ("Saltmere", "Medieval, low magic", "", "en"),  # names no place: default English
    ],
)  # fmt: skip
def test_the_world_gives_the_accent(name: str, era: str, detail: str, accent: str) -> None:
    world = World(name=name, era=era, time_period="1890", detail=detail)
    assert accent_for(world) == accent
    voice = voice_for(npc(world=name), accent=accent)
    assert voice.key.startswith(f"espeak:{accent}+") and parse_voice_key(voice.key) == voice


async def test_npcs_speak_with_their_worlds_accent(services: Services) -> None:
    assert services.voices.voice_for(npc(world="Cinder Gulch")).espeak.language == "en-us"
    hebrides = "a lighthouse island in the Outer Hebrides, 1890"  # a free-text world
    assert services.voices.voice_for(npc(world=hebrides)).espeak.language == "en-gb-scotland"
    assert services.voices.voice_for(npc(world="Saltmere")).espeak.language == "en"
    with pytest.raises(InputError, match="Unknown voice"):
        parse_voice_key("espeak:xx-evil+m3:p40:r50:s160")


def test_text_is_cleaned_and_cut_at_a_word() -> None:
    assert clean_text("  Hello,\n\x00 there  ", 100) == "Hello, there"
    assert clean_text("one two three four", 12) == "one two"
    with pytest.raises(InputError, match="text to speak"):
        clean_text(" \n ", 100)


async def test_a_line_is_ogg_opus_and_spoken_once(services: Services) -> None:
    engine = CountingEngine(services.voices.engine)
    services.voices.engine = engine  # type: ignore[assignment]
    first = await services.voices.say(npc(), "The cellar? Nothing down there but turnips.")
    again = await services.voices.say(npc(), "The cellar? Nothing down there but turnips.")
    assert engine.calls == 1
    assert (first.source, again.source) == ("computed", "memory")
    assert first.audio == again.audio
    info = soundfile.info(io.BytesIO(first.audio))
    assert (info.format, info.subtype, info.samplerate) == ("OGG", "OPUS", 16_000)
    assert 1.0 < info.duration < 6.0
    assert len(first.audio) / info.duration < 8_000  # compact: well under 64 kbit/s


@pytest.fixture
def warming(tmp_path: Path, make_services: MakeServices) -> Services:
    return make_services(make_settings(tmp_path, voice_warm_lines=True))


async def test_warm_up_speaks_the_sample_lines_in_the_background(warming: Services) -> None:
    services = warming
    engine = CountingEngine(services.voices.engine)
    services.voices.engine = engine  # type: ignore[assignment]
    cast = [npc(), npc(id="npc-second", name="Second One")]
    services.voices.warm_soon(cast)
    await services.voices.wait_warm()
    lines = sum(len(one.sample_lines) for one in cast)
    assert engine.calls == lines == services.voices.warmed
    for one in cast:
        for line in one.sample_lines:
            assert (await services.voices.say(one, line)).source == "memory"
    assert engine.calls == lines


async def test_casts_finishing_together_share_one_warm_up_worker(warming: Services) -> None:
    services = warming
    engine = CountingEngine(services.voices.engine)
    services.voices.engine = engine  # type: ignore[assignment]
    services.voices.warm_soon([npc()])
    services.voices.warm_soon([npc(id="npc-other", name="Other One")])
    assert len(services.voices._warming) == 1
    await services.voices.wait_warm()
    assert engine.calls == 4 == services.voices.warmed


async def test_warm_up_can_be_switched_off(services: Services) -> None:
    services.voices.warm_soon([npc()])  # the tests' settings switch it off
    assert services.voices._warming == set() and services.voices.warmed == 0
