"""The Personalities tab: browse and filter traits and archetypes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from app.personality import PersonalityData
from app.services.personalities import (
    ARCHETYPE_COLUMNS,
    POLARITIES,
    TRAIT_COLUMNS,
    filter_archetypes,
    filter_traits,
)
from app.ui.errors import user_errors


class PersonalityHandlers:
    def __init__(self, personalities: Callable[[], PersonalityData]) -> None:
        self.personalities = personalities

    def browse(self, query: str | None, polarity: str | None) -> tuple[Any, Any, str]:
        """Traits and archetypes matching the filter, read through the cache."""
        data = self.personalities()
        traits = filter_traits(data, query or "", polarity or "all")
        archetypes = filter_archetypes(data, query or "")
        summary = (
            f"{len(traits)} of {len(data.traits)} traits · "
            f"{len(archetypes)} of {len(data.archetypes)} archetypes"
        )
        return (
            gr.update(value=traits, headers=TRAIT_COLUMNS),
            gr.update(value=archetypes, headers=ARCHETYPE_COLUMNS),
            summary,
        )


def build_personalities(
    personalities: Callable[[], PersonalityData], tab: gr.Tab | None = None
) -> None:
    handlers = PersonalityHandlers(personalities)
    with gr.Row():
        query = gr.Textbox(label="Filter", placeholder="e.g. brave, loyal, trickster", scale=3)
        polarity = gr.Radio(list(POLARITIES), value="all", label="Polarity", scale=2)
    data = personalities()
    summary = gr.Markdown(handlers.browse("", "all")[2])
    traits = gr.Dataframe(
        filter_traits(data), headers=TRAIT_COLUMNS, interactive=False, wrap=True, label="Traits"
    )
    archetypes = gr.Dataframe(
        filter_archetypes(data),
        headers=ARCHETYPE_COLUMNS,
        interactive=False,
        wrap=True,
        label="Archetypes",
    )
    outputs = [traits, archetypes, summary]
    browse = user_errors(handlers.browse)
    query.change(browse, [query, polarity], outputs, api_name="personalities")
    polarity.change(browse, [query, polarity], outputs, api_visibility="private")
    if tab is not None:  # edits to the data file show when the tab is opened
        tab.select(browse, [query, polarity], outputs, api_visibility="private")
