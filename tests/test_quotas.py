"""The quota book's file: written off the caller's time, coalesced, flushed on close."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest

from app.services import quotas as quotas_module
from app.services.quotas import QuotaExceededError, QuotaLimits, Quotas
from tests.conftest import MakeServices, make_settings
from tests.doubles import FakeClock
from utils.latest_writer import LatestWriter


async def test_charges_survive_a_restart_after_the_app_closes(
    tmp_path: Path, make_services: MakeServices
) -> None:
    settings = make_settings(tmp_path, quota_chat_per_minute=5, quota_npcs_per_hour=50)
    first = make_services(settings)
    ann = first.admission.caller(None, "10.0.0.9")
    for _ in range(3):
        first.admission.chat_message(ann)
    first.quotas.charge("npcs", ann.name, 7)
    await first.aclose()

    again = make_services(settings)
    assert again.quotas.used("chat", "10.0.0.9") == 3
    assert again.quotas.used("npcs", "10.0.0.9") == 7


async def test_a_burst_of_charges_is_one_or_two_writes_and_never_waits_for_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writing, release = threading.Event(), threading.Event()
    written: list[bytes] = []
    real_write = quotas_module.atomic_write_bytes

    def slow_write(path: Path, data: bytes, *, durable: bool = True) -> None:
        writing.set()
        assert release.wait(10), "the test never released the write"
        written.append(data)
        real_write(path, data, durable=durable)

    monkeypatch.setattr(quotas_module, "atomic_write_bytes", slow_write)
    path = tmp_path / "quotas.json"
    quotas = Quotas(QuotaLimits(0, 1000, 1, 1), path, FakeClock())
    quotas.charge("chat", "ann")
    assert writing.wait(10)  # the first write is in flight and stuck on the "disk"...
    for _ in range(99):  # ...and charges go on without waiting for it
        quotas.charge("chat", "ann")
    assert written == []
    release.set()
    await quotas.aclose()
    # The stuck write, then one for the 99 that came meanwhile: the latest state.
    assert quotas.writes == len(written) == 2
    assert sum(n for _, n in orjson.loads(path.read_bytes())["chat"]["ann"]) == 100
    assert Quotas(QuotaLimits(0, 1000, 1, 1), path, FakeClock()).used("chat", "ann") == 100


async def test_a_charge_after_close_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "quotas.json"
    quotas = Quotas(QuotaLimits(10, 0, 1, 1), path, FakeClock())
    await quotas.aclose()
    quotas.charge("npcs", "ann", 4)  # e.g. a cast finishing while the app shuts down
    assert Quotas(QuotaLimits(10, 0, 1, 1), path, FakeClock()).used("npcs", "ann") == 4


async def test_without_a_file_nothing_is_written() -> None:
    quotas = Quotas(QuotaLimits(10, 10, 1, 1), None, FakeClock())
    quotas.charge("npcs", "ann", 3)
    quotas.refund("npcs", "ann", 1)
    await quotas.aclose()
    assert quotas.writes == 0 and quotas.used("npcs", "ann") == 2


def test_a_failed_write_is_retried_by_the_next_change() -> None:
    calls: list[int] = []

    def write() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")

    writer = LatestWriter(write)
    writer.changed()
    writer.flush_now()
    writer.changed()
    writer.close()
    assert writer.writes == len(calls) == 2


async def test_a_ticket_charged_late_gives_back_what_was_not_produced(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services = make_services(make_settings(tmp_path, quota_lines_per_hour=5))
    admission = services.admission
    ann = admission.caller(None, "10.0.0.3")
    made: list[int] = []
    async with admission.dialogue(ann, "procedural") as ticket:
        assert services.quotas.used("lines", ann.name) == 0  # nothing until it knows
        ticket.count = lambda: len(made)
        ticket.charge(4)
        with pytest.raises(QuotaExceededError, match=r"\(4 used, 1 left\)"):
            ticket.charge(2)  # refused whole: nothing more charged
        made += [1, 2, 3]
    assert ticket.charged == 4 and ticket.produced == 3
    assert services.quotas.used("lines", ann.name) == 3
