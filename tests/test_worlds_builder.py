"""User worlds: saved, renamed and deleted beside the read-only shipped ones, and
free-text settings each in a world of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import InputError
from app.models import World
from app.services.world_names import setting_name, time_period_in
from app.services.worlds import WorldService
from tests.conftest import WORLDS_DIR
from utils.cached_json import JSONFileCache


def _service(tmp_path: Path) -> WorldService:
    return WorldService(WORLDS_DIR, tmp_path / "saved", JSONFileCache(), max_setting_chars=1000)


def _world(name: str = "Kelp Hollow", detail: str = "A fishing hamlet.") -> World:
    return World(name=name, era="Age of sail", time_period="1720", detail=detail)


def test_a_saved_world_is_listed_after_the_shipped_ones_and_drives_a_cast(tmp_path: Path) -> None:
    service = _service(tmp_path)
    path = service.save(_world())
    assert path.parent == tmp_path / "saved" and path.name == "kelp_hollow.json"
    assert service.names()[-1] == "Kelp Hollow"
    assert service.names()[: len(service.shipped())] == list(service.shipped())
    assert service.resolve("Kelp Hollow", None).world == _world()
    assert service.get("kelp_hollow") == _world()  # by file stem too
    assert service.world_for("Kelp Hollow") == _world()


def test_shipped_worlds_stay_read_only(tmp_path: Path) -> None:
    service = _service(tmp_path)
    shipped = next(iter(service.shipped()))
    before = service.shipped()[shipped].read_bytes()
    for action in (
        lambda: service.save(_world(shipped)),
        lambda: service.delete(shipped),
        lambda: service.rename(shipped, "Mine now"),
    ):
        with pytest.raises(InputError, match="shipped world and stays read-only"):
            action()
    assert service.shipped()[shipped].read_bytes() == before
    assert service.user_worlds() == {}


def test_a_taken_name_is_refused_unless_saving_over_it(tmp_path: Path) -> None:
    service = _service(tmp_path)
    service.save(_world())
    with pytest.raises(InputError, match="already exists"):
        service.save(_world(detail="Another hamlet."))
    service.save(_world(detail="Another hamlet."), replace=True)
    assert service.get("Kelp Hollow").detail == "Another hamlet."
    assert len(service.user_worlds()) == 1


def test_names_that_make_one_file_name_get_two_files(tmp_path: Path) -> None:
    service = _service(tmp_path)
    first, second = service.save(_world("Kelp Hollow!")), service.save(_world("Kelp Hollow?"))
    assert first != second
    assert set(service.user_worlds()) == {"Kelp Hollow!", "Kelp Hollow?"}


def test_rename_moves_the_file_and_delete_removes_it(tmp_path: Path) -> None:
    service = _service(tmp_path)
    service.save(_world())
    service.save(_world("Gull Rock"))
    with pytest.raises(InputError, match="already exists"):
        service.rename("Kelp Hollow", "Gull Rock")
    renamed = service.rename("Kelp Hollow", "Kelp Haven")
    assert renamed.name == "Kelp Haven" and renamed.detail == "A fishing hamlet."
    assert set(service.user_worlds()) == {"Gull Rock", "Kelp Haven"}
    assert not (tmp_path / "saved" / "kelp_hollow.json").exists()
    service.delete("Kelp Haven")
    assert set(service.user_worlds()) == {"Gull Rock"}
    with pytest.raises(InputError, match="no saved world called 'Kelp Haven'"):
        service.delete("Kelp Haven")


def test_remembering_a_cast_never_overwrites_a_user_world(tmp_path: Path) -> None:
    service = _service(tmp_path)
    service.save(_world())
    noted = _world(detail={"overview": "A fishing hamlet.", "designer_notes": "Fog."})  # type: ignore[arg-type]
    service.remember(noted)
    assert service.get("Kelp Hollow") == _world()


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("lighthouse island, Outer Hebrides 1890", "Lighthouse Island, Outer Hebrides 1890"),
        ("Silk Road caravan town, 1250. Dusty and loud.", "Silk Road Caravan Town, 1250"),
        ("a mining colony on an asteroid in the 25th century", "Mining Colony on an Asteroid"),
        ("The harbour of Saltmere: fog and smugglers", "Harbour of Saltmere"),
        ("!!!", "Custom setting"),
    ],
)
def test_setting_names_come_from_the_first_clause(text: str, name: str) -> None:
    assert setting_name(text) == name


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("lighthouse island, Outer Hebrides 1890", "1890"),
        ("Rome under Trajan, 110 AD", "110 AD"),
        ("a starport in the 25th century", "the 25th century"),
        ("Gaul, 52 BC, Caesar's war", "52 BC"),
        ("a camp of 500 soldiers", None),
    ],
)
def test_the_time_period_is_read_from_the_setting(text: str, period: str | None) -> None:
    assert time_period_in(text) == period


def test_each_free_text_setting_gets_its_own_stable_world(tmp_path: Path) -> None:
    service = _service(tmp_path)
    text = "lighthouse island, Outer Hebrides 1890"
    world = service.resolve(None, text).world
    assert world.name == "Lighthouse Island, Outer Hebrides 1890"
    assert world.time_period == "1890" and world.detail == text
    assert service.resolve(None, text).world == world  # same text, same world
    service.remember(world)  # its cast was saved
    assert service.resolve(None, text).world == world  # it finds its own world again
    other = service.resolve(None, "lighthouse island, Outer Hebrides 1890. Gannets.").world
    assert other.name == "Lighthouse Island, Outer Hebrides 1890 (2)"
    assert service.world_for(world.name) == world


def test_a_setting_never_takes_a_shipped_name(tmp_path: Path) -> None:
    service = _service(tmp_path)
    shipped = next(iter(service.shipped()))
    world = service.resolve(None, f"{shipped.lower()}. But quieter.").world
    assert world.name == f"{shipped} (2)"


def test_the_builder_reads_worlds_by_name_never_by_path(tmp_path: Path) -> None:
    service = _service(tmp_path)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(_world().model_dump_json())
    assert service.resolve(str(elsewhere), None).world == _world()  # generate --world FILE
    with pytest.raises(InputError, match="does not exist"):
        service.get(str(elsewhere))
