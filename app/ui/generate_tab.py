"""The Generate tab: pick a world, ask for a cast, watch NPCs arrive."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path
from typing import Any

import gradio as gr

from app.clients import Services
from app.errors import InputError, NPCForgeError
from app.models import World
from app.services.generation import (
    CastRequest,
    NPCSpec,
    new_cast_seed,
    parse_name_lines,
    plan_cast,
)
from app.services.worlds import load_world_file, resolve_world, with_setting_notes
from app.ui.cast_view import CastView
from utils.cached_json import shared_cache
from utils.jsonio import atomic_write_bytes, dumps

log = logging.getLogger(__name__)

NO_WORLD = "(none: use the setting text)"
# Stream at most this often: a procedural cast of 100 finishes in milliseconds,
# and re-sending 100 cards per NPC would cost more than generating them.
UPDATE_INTERVAL_S = 0.1
ProgressFn = Callable[..., Any]
Outputs = tuple[str, dict[str, Any], str | None, str, CastView | None]


def _to_int(value: float | int | str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a whole number; got {value!r}.") from None
    if not number.is_integer():
        raise InputError(f"{what} must be a whole number; got {value}.")
    return int(number)


class GenerateHandlers:
    """The tab's event handlers, plain methods that tests call directly."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.export_dir = Path(tempfile.gettempdir()) / "npc-forge-exports"

    def world_choices(self) -> list[str]:
        return [NO_WORLD, *self.services.world_files()]

    def world_dropdown(self, current: str | None) -> dict[str, Any]:
        """Fresh choices (world files may have been added or removed), keeping the pick."""
        choices = self.world_choices()
        return gr.update(choices=choices, value=current if current in choices else NO_WORLD)

    def _world(self, choice: str | None, upload: str | None, setting: str | None) -> World:
        settings = self.services.settings
        if upload:
            world = load_world_file(Path(upload))
            return with_setting_notes(world, setting or "", max_chars=settings.max_setting_chars)
        path = (
            self.services.world_files().get(choice or "") if choice and choice != NO_WORLD else None
        )
        if choice and choice != NO_WORLD and path is None:
            raise InputError(f"The world {choice!r} is not available any more; pick another one.")
        problem = shared_cache().problem(path) if path is not None else None
        if path is not None and problem:
            gr.Warning(
                f"{path.name} has a broken edit ({problem}); using its last good version. "
                "Fix the file and it is picked up at once."
            )
        return resolve_world(
            world_path=path,
            setting=setting,
            worlds_dir=self.services.worlds_dir,
            max_setting_chars=settings.max_setting_chars,
        )

    def plan(
        self,
        world: World,
        count: float | int | None,
        names: str | None,
        traits: list[str] | None,
        temperature: float | None,
        seed: int | None,
        avoid: Collection[str] = (),
    ) -> list[NPCSpec]:
        """Validate the form into one spec per NPC (raises InputError)."""
        named = parse_name_lines(names or "")
        number = _to_int(count, "The number of NPCs")
        request = CastRequest(
            world=world,
            count=number if number is not None else len(named) or 1,
            names=tuple(name for name, _ in named),
            traits=tuple(traits or ()),
            temperature=self.services.settings.default_temperature
            if temperature is None
            else float(temperature),
            seed=seed,
            avoid=tuple(sorted(avoid)),
        )
        return plan_cast(
            request,
            self.services.personalities,
            max_npcs=self.services.settings.max_npcs,
            name_traits=[extra for _, extra in named],
        )

    async def _used_names(self, world: World, cast_seed: int) -> set[str]:
        """Names the library already has in this world (none when not saving)."""
        if not self.services.settings.library_autosave:
            return set()
        try:
            return await self.services.library.used_names(world.name, except_cast_seed=cast_seed)
        except Exception as exc:  # the library being down must not stop generation
            log.warning("cannot read used names from the library: %s", exc)
            return set()

    async def _keep(self, view: CastView, positions: list[int]) -> None:
        """Save this run's finished NPCs to the library (one batched write)."""
        npcs = [npc for index in positions if (npc := view.npcs[index]) is not None]
        if not npcs or not self.services.settings.library_autosave:
            return
        started = time.perf_counter()
        try:
            await self.services.library.save(npcs)
            await asyncio.to_thread(self.services.remember_world, view.specs[0].world)
        except Exception as exc:
            log.warning("cannot save the cast to the library: %s", exc)
            gr.Warning(f"The cast is shown but could not be saved to the library: {exc}")
            return
        view.saved += len(npcs)
        self.services.metrics.store_done(view.backend, time.perf_counter() - started, len(npcs))

    def _export(self, view: CastView) -> str:
        path = self.export_dir / f"npc-cast-{view.specs[0].cast_seed}.json"
        atomic_write_bytes(path, dumps(view.as_json(), pretty=True))
        return str(path)

    def _outputs(self, view: CastView, final: bool) -> Outputs:
        file = self._export(view) if final and any(view.npcs) else None
        return view.html(), view.as_json(), file, view.status(), view

    async def _stream(
        self,
        view: CastView,
        positions: list[int],
        backend: str | None,
        progress: ProgressFn,
        use_cache: bool = True,
    ) -> AsyncIterator[Outputs]:
        generator = self.services.cast_generator(backend)
        specs = [view.specs[index] for index in positions]
        started = time.perf_counter()
        last_update = 0.0
        progress((view.done, view.total), desc="Generating")
        yield self._outputs(view, final=False)
        try:
            async for outcome in generator.run(specs, use_cache=use_cache):
                outcome.index = positions[outcome.index]
                view.apply(outcome)
                progress((view.done, view.total), desc="Generating")
                now = time.perf_counter()
                if now - last_update >= UPDATE_INTERVAL_S:
                    last_update = now
                    yield self._outputs(view, final=False)
        finally:
            # Stopped or not, what finished is kept.
            await asyncio.shield(self._keep(view, positions))
        view.elapsed_s = time.perf_counter() - started
        yield self._outputs(view, final=True)

    async def generate_npcs(
        self,
        world_choice: str | None,
        world_file: str | None,
        setting: str | None,
        count: float | int | None,
        names: str | None,
        traits: list[str] | None,
        backend: str | None,
        temperature: float | None,
        seed: float | int | str | None,
        use_cache: bool = True,
        progress: ProgressFn = lambda *args, **kwargs: None,
    ) -> AsyncIterator[Outputs]:
        """Generate a cast; yields (cards, cast JSON, file, status, state) as NPCs finish.

        ``use_cache`` False regenerates on purpose: cached responses are ignored
        (and replaced). A different seed is a different request anyway.
        """
        try:
            world = self._world(world_choice, world_file, setting)
            cast_seed = _to_int(seed, "The seed")
            cast_seed = new_cast_seed() if cast_seed is None else cast_seed
            avoid = await self._used_names(world, cast_seed)
            specs = self.plan(world, count, names, traits, temperature, cast_seed, avoid)
            name = self.services.backend(backend).name
        except NPCForgeError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        view = CastView(specs=specs, backend=name)
        positions = list(range(len(specs)))
        async for outputs in self._stream(view, positions, backend, progress, bool(use_cache)):
            yield outputs

    async def retry_failed(
        self,
        view: CastView | None,
        backend: str | None,
        progress: ProgressFn = lambda *args, **kwargs: None,
    ) -> AsyncIterator[Outputs]:
        """Generate the failed positions of the last cast again; the rest is kept."""
        if view is None or not view.failed_positions:
            gr.Warning("Nothing to retry: no NPC of the last cast failed.")
            if view is not None:
                yield self._outputs(view, final=True)
            return
        positions = view.clear_failures()
        async for outputs in self._stream(view, positions, backend, progress):
            yield outputs


def build_generate(services: Services) -> None:
    """Lay out the Generate tab inside the current Blocks."""
    handlers = GenerateHandlers(services)
    settings = services.settings
    worlds = handlers.world_choices()
    trait_names = services.personalities.names()
    backend_choices = ["auto", *services.backend_names()]
    default_backend = settings.backend if settings.backend in backend_choices else "auto"

    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            world = gr.Dropdown(
                worlds, value=worlds[1] if len(worlds) > 1 else NO_WORLD, label="World"
            )
            world_file = gr.File(
                label="…or upload a world file (.json)", file_types=[".json"], type="filepath"
            )
            setting = gr.Textbox(
                label="Setting",
                lines=3,
                placeholder="A free-text setting, or notes added to the chosen world",
            )
            count = gr.Slider(1, settings.max_npcs, value=5, step=1, label="How many NPCs")
            names = gr.Textbox(
                label="Names (optional)",
                lines=3,
                placeholder="One per line. 'Name: trait, trait' also gives that NPC traits.",
            )
            traits = gr.Dropdown(
                trait_names,
                multiselect=True,
                allow_custom_value=True,
                label="Personality traits every NPC gets (optional)",
            )
            with gr.Accordion("Advanced", open=False):
                backend = gr.Dropdown(backend_choices, value=default_backend, label="Backend")
                temperature = gr.Slider(
                    0,
                    2,
                    value=settings.default_temperature,
                    step=0.05,
                    label="Creativity (temperature)",
                )
                seed = gr.Number(value=None, precision=0, label="Seed (empty = random)")
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
            cards = gr.HTML(CastView(specs=[], backend="").html())
            download = gr.File(label="Cast (JSON)", interactive=False)
            with gr.Accordion("Cast JSON", open=False):
                cast_json = gr.JSON()
    state = gr.State(None)

    # Gradio injects a progress tracker only into a parameter whose default is gr.Progress().
    async def generate_npcs(
        world: str | None,
        world_file: str | None,
        setting: str | None,
        count: float,
        names: str | None,
        traits: list[str] | None,
        backend: str | None,
        temperature: float,
        seed: float | None,
        use_cache: bool = True,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> AsyncIterator[Outputs]:
        """Generate a cast of NPCs: cards, the cast as JSON, a JSON file, a status line."""
        async for outputs in handlers.generate_npcs(
            world, world_file, setting, count, names, traits, backend, temperature, seed,
            use_cache=use_cache, progress=progress,
        ):  # fmt: skip
            yield outputs

    async def retry_failed(
        view: CastView | None,
        backend: str | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> AsyncIterator[Outputs]:
        """Generate the failed NPCs of the last cast again."""
        async for outputs in handlers.retry_failed(view, backend, progress):
            yield outputs

    outputs = [cards, cast_json, download, status, state]
    form = [world, world_file, setting, count, names, traits, backend, temperature, seed, use_cache]
    event = generate.click(
        generate_npcs,
        inputs=form,
        outputs=outputs,
        api_name="generate_npcs",
        show_progress_on=[status],
        concurrency_limit=4,
    )
    retry_event = retry.click(
        retry_failed,
        inputs=[state, backend],
        outputs=outputs,
        api_name="retry_failed",
        show_progress_on=[status],
    )
    stop.click(None, None, None, cancels=[event, retry_event], api_visibility="private")
    # World files may be added, removed or edited while the app runs.
    world.focus(handlers.world_dropdown, inputs=[world], outputs=[world], api_visibility="private")
