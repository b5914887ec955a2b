"""The Stats tab's plots: what they are given before and after the first calls."""

from __future__ import annotations

from app.ui.stats_tab import BUCKET_LABELS, StatsHandlers
from app.wiring import Services
from tests import casts


async def test_plots_get_none_until_there_is_data_then_their_rows(services: Services) -> None:
    """Gradio never draws a plot with a colour column once it was given an empty
    frame (the latency and per-stage plots stayed blank after 76 calls), so an
    empty plot gets None; the histogram keeps its buckets in their own order."""
    handlers = StatsHandlers(services.observability)
    *_, over_time, histogram, breakdown = handlers.refresh()
    assert over_time is None and breakdown is None
    assert list(histogram["bucket"]) == list(BUCKET_LABELS) and histogram["calls"].sum() == 0
    world = services.worlds.resolve("saltmere", None).world
    await casts.outcomes(services, world, 3, seed=1, backend="procedural")
    *_, over_time, histogram, breakdown = handlers.refresh()
    assert len(over_time) == 3 and histogram["calls"].sum() == 3
    assert set(breakdown["npc"]) and set(breakdown["stage"]) >= {"queue", "backend"}
    assert BUCKET_LABELS[:2] == ("<= 0.005 s", "<= 0.01 s") and BUCKET_LABELS[-1] == "> 120 s"
