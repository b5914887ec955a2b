"""The Personalities tab: browse and filter traits and archetypes."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.clients import Services
from app.services.personalities import (
    ARCHETYPE_COLUMNS,
    POLARITIES,
    TRAIT_COLUMNS,
    filter_archetypes,
    filter_traits,
)


class PersonalityHandlers:
    def __init__(self, services: Services) -> None:
        self.services = services

    def browse(self, query: str | None, polarity: str | None) -> tuple[Any, Any, str]:
        """Traits and archetypes matching the filter, read through the cache."""
        data = self.services.personalities
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


def build_personalities(services: Services) -> None:
    handlers = PersonalityHandlers(services)
    with gr.Row():
        query = gr.Textbox(label="Filter", placeholder="e.g. brave, loyal, trickster", scale=3)
        polarity = gr.Radio(list(POLARITIES), value="all", label="Polarity", scale=2)
    # Callable values are evaluated on every page load, so edits to the data show up.
    summary = gr.Markdown(lambda: handlers.browse("", "all")[2])
    traits = gr.Dataframe(
        lambda: filter_traits(services.personalities),
        headers=TRAIT_COLUMNS,
        interactive=False,
        wrap=True,
        label="Traits",
    )
    archetypes = gr.Dataframe(
        lambda: filter_archetypes(services.personalities),
        headers=ARCHETYPE_COLUMNS,
        interactive=False,
        wrap=True,
        label="Archetypes",
    )
    outputs = [traits, archetypes, summary]
    query.change(handlers.browse, [query, polarity], outputs, api_name="personalities")
    polarity.change(handlers.browse, [query, polarity], outputs, api_visibility="private")
