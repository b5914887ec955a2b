"""The Generate tab: pick a world, ask for a cast, watch NPCs arrive one by one."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from app.services.admission import Admission, Caller
from app.services.cast import CastService
from app.services.planning import CastRequest, parse_name_lines, parse_whole_number
from app.services.worlds import WorldService
from app.ui.cast_view import CastView
from app.ui.downloads import offer
from app.ui.errors import user_errors, warn
from app.ui.identity import admitted, caller_of
from app.ui.media_routes import CardMedia
from app.ui.render import EMPTY_CAST
from utils.jsonio import dumps

NO_WORLD = "(none: use the setting text)"
Outputs = tuple[str, dict[str, Any], str | None, str, CastView]


class GenerateHandlers:
    """The tab's event handlers, plain methods that tests call directly."""

    def __init__(
        self,
        cast: CastService,
        worlds: WorldService,
        export_dir: Path,
        admission: Admission | None = None,
        *,
        media: CardMedia | None = None,
    ) -> None:
        self.cast = cast
        self.worlds = worlds
        self.export_dir = export_dir
        self.admission = admission  # None: every caller is trusted (direct calls)
        self.media = media  # portraits and play buttons on the cards

    def world_choices(self) -> list[str]:
        return [NO_WORLD, *self.worlds.names()]

    def world_dropdown(self, current: str | None) -> dict[str, Any]:
        """Fresh choices (world files may have been added or removed), keeping the pick."""
        choices = self.world_choices()
        return gr.update(choices=choices, value=current if current in choices else NO_WORLD)

    def request(
        self,
        world_choice: str | None,
        world_file: str | None,
        setting: str | None,
        count: object,
        names: str | None,
        traits: Sequence[str] | None,
        temperature: object,
        seed: object,
    ) -> CastRequest:
        """The form as a request (blocking file reads: call it in a thread)."""
        choice = None if world_choice in (None, "", NO_WORLD) else world_choice
        resolved = self.worlds.resolve(world_file or choice, setting)
        warn(resolved.warning)
        named = parse_name_lines(names or "")
        number = parse_whole_number(count, "The number of NPCs")
        creativity = self.cast.limits.default_temperature if temperature is None else temperature
        try:
            creativity = float(creativity)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            creativity = float("nan")  # plan_cast says what is allowed
        return CastRequest(
            world=resolved.world,
            count=number if number is not None else len(named) or 1,
            temperature=creativity,
            named=named,
            traits=tuple(traits or ()),
            seed=parse_whole_number(seed, "The seed"),
        )

    async def _export(self, view: CastView) -> str | None:
        if not any(view.npcs):
            return None
        name = f"npc-cast-{view.plan.cast_seed}.json"
        return await offer(self.export_dir, "cast-", name, dumps(view.as_json(), pretty=True))

    @staticmethod
    def _outputs(view: CastView, file: str | None = None) -> Outputs:
        return view.html(), view.as_json(), file, view.status(), view

    async def _stream(
        self, view: CastView, positions: Sequence[int], use_cache: bool
    ) -> AsyncIterator[Outputs]:
        run = self.cast.run(view.plan, positions, use_cache=use_cache)
        view.start(run)
        started = time.perf_counter()
        yield self._outputs(view)
        async with run:  # leaving it (Stop, a closed tab) cancels what still runs
            async for outcome in run.outcomes():
                view.apply(outcome)
                yield self._outputs(view)
        view.finish(time.perf_counter() - started, stopped=run.stopped, saving=view.plan.save)
        file = await self._export(view)
        yield self._outputs(view, file)
        if view.plan.save:  # the cards are all out; now say how the library write went
            view.record_save(await run.saved())
            yield self._outputs(view, file)

    async def generate_npcs(
        self,
        world_choice: str | None,
        world_file: str | None,
        setting: str | None,
        count: float | int | str | None,
        names: str | None,
        traits: list[str] | None,
        backend: str | None,
        temperature: float | None,
        seed: float | int | str | None,
        use_cache: bool = True,
        caller: Caller | None = None,
    ) -> AsyncIterator[Outputs]:
        """Generate a cast; yields (cards, cast JSON, file, status, state) as NPCs finish.

        ``use_cache`` False regenerates on purpose: cached responses are ignored
        (and replaced). A different seed is a different request anyway.
        """
        request = await asyncio.to_thread(
            self.request, world_choice, world_file, setting, count, names, traits, temperature, seed
        )
        async with admitted(self.admission, caller, request.count, backend) as ticket:
            owner = self.admission.owner(ticket.caller) if self.admission else None
            plan = await self.cast.plan(request, backend=ticket.backend, owner=owner)
            view = CastView(plan, media=self.media)
            ticket.count = lambda: view.produced
            async for outputs in self._stream(view, range(view.total), bool(use_cache)):
                yield outputs

    async def retry_failed(
        self, view: CastView | None, backend: str | None, caller: Caller | None = None
    ) -> AsyncIterator[Outputs]:
        """Generate the failed positions of the last cast again; the rest is kept."""
        if view is None or not view.failed_positions:
            gr.Warning("Nothing to retry: no NPC of the last cast failed.")
            if view is not None:
                yield self._outputs(view)
            return
        async with admitted(self.admission, caller, len(view.failed_positions), backend) as ticket:
            backend = ticket.backend
            if backend and self.cast.backends.get(backend).name != view.plan.backend:
                guarded = self.cast.backends.get(backend)
                view.plan = dataclasses.replace(
                    view.plan, backend=guarded.name, requested_backend=backend
                )
            before = view.produced
            ticket.count = lambda: view.produced - before
            positions = view.clear_failures()
            async for outputs in self._stream(view, positions, use_cache=True):
                yield outputs

    @staticmethod
    def stop(view: CastView | None) -> None:
        """Stop the running cast after the NPCs that already finished."""
        if view is not None and view.run is not None:
            view.run.stop()


def build_generate(
    cast: CastService,
    worlds: WorldService,
    export_dir: Path,
    admission: Admission,
    *,
    media: CardMedia | None = None,
) -> None:
    """Lay out the Generate tab inside the current Blocks."""
    handlers = GenerateHandlers(cast, worlds, export_dir, admission, media=media)
    limits = cast.limits
    choices = handlers.world_choices()
    backend_choices = ["auto", *cast.backends.names()]

    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            # Custom values: the API may name a world saved after this page was built
            # (the handler checks every name it is given).
            world = gr.Dropdown(
                choices,
                value=choices[1] if len(choices) > 1 else NO_WORLD,
                label="World",
                allow_custom_value=True,
            )
            world_file = gr.File(
                label="…or upload a world file (.json)", file_types=[".json"], type="filepath"
            )
            setting = gr.Textbox(
                label="Setting",
                lines=3,
                placeholder="A free-text setting, or notes added to the chosen world",
            )
            count = gr.Slider(1, limits.max_npcs, value=5, step=1, label="How many NPCs")
            names = gr.Textbox(
                label="Names (optional)",
                lines=3,
                placeholder="One per line. 'Name: trait, trait' also gives that NPC traits.",
            )
            traits = gr.Dropdown(
                cast.personalities().names(),
                multiselect=True,
                allow_custom_value=True,
                label="Personality traits every NPC gets (optional)",
            )
            with gr.Accordion("Advanced", open=False):
                backend = gr.Dropdown(backend_choices, value="auto", label="Backend")
                temperature = gr.Slider(
                    0, 2, value=limits.default_temperature, step=0.05,
                    label="Creativity (temperature)",
                )  # fmt: skip
                # A text box: a number box shows 0 when empty, and 0 is a seed.
                seed = gr.Textbox(label="Seed", placeholder="empty = random", max_lines=1)
                use_cache = gr.Checkbox(
                    value=True,
                    label="Use cached results (untick to regenerate with the same seed)",
                )
            with gr.Row():
                generate = gr.Button("Generate", variant="primary")
                stop = gr.Button("Stop", variant="stop")
                retry = gr.Button("Retry failed")
        with gr.Column(scale=2):
            status = gr.Markdown("Choose a world and press **Generate**.")
            cards = gr.HTML(EMPTY_CAST, elem_id="npc-cards")
            download = gr.File(label="Cast (JSON)", interactive=False)
            with gr.Accordion("Cast JSON", open=False):
                cast_json = gr.JSON()
    state = gr.State(None)

    @user_errors
    async def generate_npcs(
        world: str | None,
        world_file: str | None,
        setting: str | None,
        count: float,
        names: str | None,
        traits: list[str] | None,
        backend: str | None,
        temperature: float,
        seed: str | None,
        use_cache: bool = True,
        request: gr.Request | None = None,
    ) -> AsyncIterator[Outputs]:
        """Generate a cast of NPCs: cards, the cast as JSON, a JSON file, a status line."""
        async for outputs in handlers.generate_npcs(
            world, world_file, setting, count, names, traits, backend, temperature, seed,
            use_cache=use_cache, caller=caller_of(admission, request),
        ):  # fmt: skip
            yield outputs

    @user_errors
    async def retry_failed(
        view: CastView | None, backend: str | None, request: gr.Request | None = None
    ) -> AsyncIterator[Outputs]:
        """Generate the failed NPCs of the last cast again."""
        async for outputs in handlers.retry_failed(view, backend, caller_of(admission, request)):
            yield outputs

    outputs = [cards, cast_json, download, status, state]
    form = [world, world_file, setting, count, names, traits, backend, temperature, seed, use_cache]
    generate.click(
        generate_npcs,
        inputs=form,
        outputs=outputs,
        api_name="generate_npcs",
        show_progress_on=[status],
        concurrency_limit=4,
    )
    retry.click(
        retry_failed,
        inputs=[state, backend],
        outputs=outputs,
        api_name="retry_failed",
        show_progress_on=[status],
    )
    # Not Gradio's cancels=: that would kill the run before it shows what finished.
    stop.click(
        user_errors(handlers.stop),
        [state],
        None,
        api_visibility="private",
        concurrency_limit=None,
        queue=False,
    )
    # World files may be added, removed or edited while the app runs.
    world.focus(user_errors(handlers.world_dropdown), [world], [world], api_visibility="private")
