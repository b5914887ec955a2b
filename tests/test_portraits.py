"""Procedural portraits follow the NPC's own fields, and are the same bytes every time."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.errors import ConfigError
from app.models import NPC
from app.services.portrait_parts import parse_path
from app.wiring import Services
from config import PROJECT_DIR
from tests.casts import outcomes
from tests.conftest import MakeServices, make_settings
from tests.npc_fixtures import valid_profile

SMITH = (
    "Thick-armed and short-legged, like a good anvil, 62 years old, with close-cropped grey "
    "hair and a bristling grey beard and small bright eyes. Bram has a burn scar across the "
    "left hand and wears a smith's scorched leather apron."
)


def npc(**fields: Any) -> NPC:
    values: dict[str, Any] = {
        **valid_profile("Bram Holt"),
        "age": 62,
        "occupation": "blacksmith",
        "appearance": SMITH,
        "id": "npc-0123456789abcdef",
        "world": "Ashmere Vale",
        "backend": "test",
        "seed": 1,
    }
    values.update(fields)
    return NPC(**values)


def test_a_grey_bearded_old_smith_looks_like_one(services: Services) -> None:
    spec = services.portraits.spec(npc())
    assert spec.part("facial_hair") == "beard"
    assert spec.part("hair") == "crop"
    assert spec.part("body") == "apron"
    assert spec.part("age") == "old"
    assert spec.colours["hair"] == spec.colours["beard"] == "#9a9a96"  # the text's grey
    assert spec.because["facial_hair"] == "'beard'"


def test_facial_hair_only_when_the_appearance_says_so(services: Services) -> None:
    shaven = "Heavy-set, 62 years old, with close-cropped hair and small bright eyes."
    for seed_id in ("npc-a", "npc-b", "npc-c", "npc-d", "npc-e", "npc-f"):
        assert (
            services.portraits.spec(npc(id=seed_id, appearance=shaven)).part("facial_hair") is None
        )
    for words, part in (
        ("a drooping moustache", "drooping_moustache"),
        ("a goatee", "goatee"),
        ("a beard braided into seven forks", "long_beard"),
        ("three days of stubble", "stubble"),
    ):
        spec = services.portraits.spec(npc(appearance=f"Wiry, 30 years old, with {words}."))
        assert spec.part("facial_hair") == part, words


@pytest.mark.parametrize(("age", "hair"), [(80, "#e6e4df"), (66, "#a3a3a0"), (25, None)])
def test_hair_greys_with_age_when_the_text_gives_no_colour(
    services: Services, age: int, hair: str | None
) -> None:
    plain = f"Slight, {age} years old, with short hair and sharp eyes."
    spec = services.portraits.spec(npc(age=age, appearance=plain))
    if hair is None:
        assert spec.colours["hair"] not in ("#e6e4df", "#a3a3a0")
        assert spec.part("age") == "young"
    else:
        assert spec.colours["hair"] == hair
        assert spec.because["colour.hair"] == f"age {age}"


def test_the_text_wins_over_age_and_negations_are_read(services: Services) -> None:
    text = "Wiry, 70 years old, with a shock of red hair that no hat can tame."
    spec = services.portraits.spec(npc(age=70, appearance=text))
    assert spec.colours["hair"] == "#b5552c"
    assert spec.part("hair") == "wild"
    assert spec.part("headwear") is None


def test_features_scars_eyes_and_headwear_come_from_the_words(services: Services) -> None:
    text = (
        "Lean, 40 years old, with a shaved head and one clouded eye and one sharp brown one. "
        "She has a thin white scar running through one eyebrow, a gap-toothed grin and wears "
        "a red cloak and a broad hat."
    )
    spec = services.portraits.spec(npc(gender="female", age=40, appearance=text))
    assert spec.part("hair") == "shaved"
    assert spec.part("eyes") == "clouded_one"
    assert spec.parts["scars"] == ("brow_scar",)
    assert spec.part("mouth") == "gap"
    assert spec.part("body") == "cloak"
    assert spec.part("headwear") == "broad_hat"
    assert spec.colours["cloth"] == "#9b2d2a"
    assert spec.part("brows") == "arched"  # her gender's default


def test_a_wimple_hides_the_hair(services: Services) -> None:
    text = "Round-faced, 50 years old, with hair hidden entirely under a starched white wimple."
    spec = services.portraits.spec(npc(gender="female", appearance=text))
    assert spec.part("headwear") == "wimple"
    assert {"hair_front", "hair_back"} <= spec.hidden
    assert spec.part("face") == "round"


def test_same_npc_same_bytes_and_unrelated_edits_keep_the_picture(
    services: Services, make_services: MakeServices, tmp_path: Path
) -> None:
    first = services.portraits.procedural_png(npc())
    again = make_services(make_settings(tmp_path / "other")).portraits.procedural_png(npc())
    assert first == again
    edited = npc(backstory="Another story.", motivation="Another aim.", secret="Another.")
    assert services.portraits.procedural(edited).key == services.portraits.procedural(npc()).key
    older = npc(appearance=SMITH.replace("grey beard", "black beard"))
    assert services.portraits.procedural(older).key != services.portraits.procedural(npc()).key


def test_png_and_svg_are_512_square(services: Services) -> None:
    png = services.portraits.procedural_png(npc())
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (512, 512)
    svg = services.portraits.svg(npc())
    assert svg.startswith("<svg") and 'viewBox="0 0 512 512"' in svg
    assert "<title>Bram Holt</title>" in svg


def test_one_world_one_style(services: Services) -> None:
    world = services.worlds.world_for("Neon Harbor")
    cast = [npc(id=f"npc-{i}", world="Neon Harbor", name=f"N{i}") for i in range(3)] + [
        npc(id="npc-x", world="Roman Empire")
    ]
    backgrounds = [services.portraits.spec(one).colours["bg"] for one in cast]
    assert len(set(backgrounds[:3])) == 1
    assert backgrounds[3] != backgrounds[0]
    assert services.portraits.spec(cast[0]).genre == "cyberpunk", world.era


async def test_png_is_cached_by_content(services: Services) -> None:
    first = await services.portraits.png(npc())
    second = await services.portraits.png(npc(backstory="Edited backstory."))
    assert first.source == "computed" and second.source == "memory"
    assert first.png == second.png and not first.painted


async def test_every_procedural_npc_gets_a_portrait(services: Services) -> None:
    world = services.worlds.world_for("Harrow Bay")
    for outcome in await outcomes(services, world, 12):
        assert outcome.npc is not None
        assert services.portraits.svg(outcome.npc).count("<path") > 10


def test_bad_part_data_is_a_clear_error(tmp_path: Path, make_services: MakeServices) -> None:
    assets = tmp_path / "assets"
    shutil.copytree(PROJECT_DIR / "assets", assets)
    parts = assets / "portraits" / "parts.json"
    data = json.loads(parts.read_text())
    data["slots"]["nose"]["parts"][0]["shapes"]["nose"][0]["d"] = "m 1 2"
    parts.write_text(json.dumps(data))
    services = make_services(make_settings(tmp_path, assets_dir=assets))
    with pytest.raises(ConfigError, match="nose/crooked: use absolute"):
        services.portraits.spec(npc())


def test_paths_parse_h_and_v_into_lines() -> None:
    assert parse_path("M0 0 H10 V5 Z", "t") == (
        ("M", (0.0, 0.0)), ("L", (10.0, 0.0)), ("L", (10.0, 5.0)), ("Z", ()),
    )  # fmt: skip


def test_free_text_as_a_model_writes_it(services: Services) -> None:
    girl = services.portraits.spec(
        npc(
            gender="female",
            age=10,
            appearance="A freckled girl of ten with two copper pigtails, a gap in her front "
            "teeth and a patched woollen dress.",
        )
    )
    assert (girl.part("hair"), girl.colours["hair"]) == ("braids", "#b5552c")
    assert girl.part("mouth") == "gap" and girl.part("body") == "dress"
    assert girl.part("facial_hair") is None and girl.part("age") == "child"
    dwarf = services.portraits.spec(
        npc(age=140, appearance="A stout dwarf with a long braided white beard and chainmail.")
    )
    assert dwarf.part("facial_hair") == "long_beard" and dwarf.colours["beard"] == "#ecebe6"
    assert dwarf.part("body") == "armour"
    crone = services.portraits.spec(
        npc(
            gender="female",
            age=81,
            appearance="Stooped, wild white hair under a deep hood pulled low, a green shawl.",
        )
    )
    assert crone.part("headwear") == "hood_up"
    assert crone.colours["cloth"] == "#4f6b3a"  # the shawl's green, not the hair's white


def test_an_npc_without_an_age_is_drawn_and_voiced_as_an_adult(services: Services) -> None:
    unknown = npc(age=None, appearance="Wiry, with short hair.")
    assert services.portraits.spec(unknown).part("age") == "young"
    assert services.voices.voice_for(unknown).espeak.variant != "grandpa"
    assert "age unknown" in services.portraits.prompt(unknown)
