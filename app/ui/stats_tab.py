"""The Stats tab: cache hit rates, latency percentiles, TTFT, plots, concurrency."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr
import pandas as pd

from app.cache.stats import TABLE_COLUMNS
from app.metrics import LATENCY_BUCKETS
from app.services.observability import (
    CONCURRENCY_COLUMNS,
    LATENCY_COLUMNS,
    ObservabilityService,
)
from app.services.quotas import ROW_COLUMNS as QUOTA_COLUMNS
from app.ui.errors import user_errors

STAGES = ["queue", "backend", "parse", "repair"]
REFRESH_SECONDS = 5.0


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(
        [{column: row.get(column) for column in columns} for row in rows], columns=columns
    )


BUCKET_LABELS = tuple(
    [f"<= {edge:g} s" for edge in LATENCY_BUCKETS] + [f"> {LATENCY_BUCKETS[-1]:g} s"]
)


def _drawable(frame: pd.DataFrame) -> pd.DataFrame | None:
    """None for no data yet: Gradio (6.31) never draws a plot with a ``color``
    column once it has been given an empty frame, whatever data comes later."""
    return None if frame.empty else frame


class StatsHandlers:
    def __init__(self, observability: ObservabilityService) -> None:
        self.observability = observability

    def caches(self) -> pd.DataFrame:
        rows = self.observability.cache_rows()
        for row in rows:
            row["hit_rate"] = f"{row['hit_rate']:.1%}"
        return _table(rows, TABLE_COLUMNS)

    def latency(self) -> pd.DataFrame:
        return _table(self.observability.latency_rows(), LATENCY_COLUMNS)

    def concurrency(self) -> pd.DataFrame:
        return _table(self.observability.concurrency_rows(), CONCURRENCY_COLUMNS)

    def quotas(self) -> pd.DataFrame:
        return _table(self.observability.quota_rows(), QUOTA_COLUMNS)

    def latency_over_time(self) -> pd.DataFrame:
        rows = self.observability.latency_series()
        frame = pd.DataFrame(rows, columns=["time", "latency_ms", "series"])
        # Explicit dtypes: an empty or object column would make the axis categorical.
        frame["time"] = pd.to_datetime(frame["time"].astype(float), unit="s", utc=True)
        frame["latency_ms"] = frame["latency_ms"].astype(float)
        frame["series"] = frame["series"].astype(str)
        return frame

    def histogram(self) -> pd.DataFrame:
        """Recent call latencies counted into the Prometheus buckets."""
        edges = [*LATENCY_BUCKETS, float("inf")]
        counts = dict.fromkeys(edges, 0)
        for row in self.observability.latency_series():
            seconds = row["latency_ms"] / 1000
            counts[next(edge for edge in edges if seconds <= edge)] += 1
        return pd.DataFrame({"bucket": BUCKET_LABELS, "calls": list(counts.values())})

    def breakdown(self) -> pd.DataFrame:
        """The last cast: one stacked bar per NPC, by stage."""
        rows = [
            {"npc": row["npc"], "stage": stage, "ms": row[stage]}
            for row in self.observability.last_batch
            for stage in STAGES
        ]
        frame = pd.DataFrame(rows, columns=["npc", "stage", "ms"])
        frame["ms"] = frame["ms"].astype(float)
        return frame

    def refresh(self) -> tuple[Any, ...]:
        return (
            self.caches(),
            self.latency(),
            self.concurrency(),
            self.quotas(),
            _drawable(self.latency_over_time()),
            self.histogram(),
            _drawable(self.breakdown()),
        )


def build_stats(observability: ObservabilityService, tab: gr.Tab | None = None) -> None:
    """The tab's components; ``tab`` (when given) refreshes them when selected."""
    handlers = StatsHandlers(observability)
    with gr.Row():
        refresh = gr.Button("Refresh", scale=0)
        gr.Markdown(f"Refreshes every {REFRESH_SECONDS:g} s. Prometheus: `/metrics`.")
    # Filled by the refresh events below, not by callables: those would become
    # auto-named API endpoints.
    caches = gr.Dataframe(label="Caches", interactive=False)
    latency = gr.Dataframe(label="Backend latency (recent calls)", interactive=False)
    concurrency = gr.Dataframe(label="Concurrency", interactive=False)
    quotas = gr.Dataframe(label="Quotas per user (current windows)", interactive=False)
    with gr.Row():
        over_time = gr.LinePlot(
            _drawable(handlers.latency_over_time()), x="time", y="latency_ms", color="series",
            title="Latency over time", height=280,
        )  # fmt: skip
        # The buckets in their own order (as text they sorted <= 1 s, <= 10 s, <= 120 s...).
        histogram = gr.BarPlot(
            handlers.histogram(), x="bucket", y="calls", title="Latency histogram", height=280,
            sort=list(BUCKET_LABELS), x_label_angle=-40,
        )  # fmt: skip
    breakdown = gr.BarPlot(
        _drawable(handlers.breakdown()), x="npc", y="ms", color="stage",
        title="Last cast: time per NPC by stage", height=320, sort=None,
    )  # fmt: skip
    outputs = [caches, latency, concurrency, quotas, over_time, histogram, breakdown]
    refresh_all = user_errors(handlers.refresh)
    timer = gr.Timer(REFRESH_SECONDS)
    timer.tick(refresh_all, None, outputs, api_visibility="private", show_progress="hidden")
    refresh.click(refresh_all, None, outputs, api_visibility="private")
    if tab is not None:
        tab.select(refresh_all, None, outputs, api_visibility="private")

    def stats() -> dict[str, Any]:
        """Every cache, latency, concurrency and quota figure as JSON (what the tab shows)."""
        return observability.snapshot()

    gr.api(stats, api_name="stats")
