"""Portraits of NPCs: procedural (offline, instant) or painted by an images API.

The procedural portrait is drawn from the NPC's own fields with the layered
parts of assets/portraits/ (see ``portrait_features`` for how text becomes
parts) in its world's style, as SVG (cards) and PNG (exports, CLI, API). It is
content-addressed: the SVG is remembered per digest of the fields it is drawn
from, the PNG is stored in the response cache under the digest of the SVG, so
an edit that changes none of those fields redraws nothing. A painted portrait
(``NPC_FORGE_IMAGES_MODEL``) is cached under its prompt, which is built from the
same fields; when the server fails, the procedural portrait is the answer.

For exports: ``await portraits.png(npc)`` gives the PNG bytes (painted when
configured), ``portraits.procedural_png(npc)`` the offline one from a thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from app.cache.memo import Memo
from app.cache.response import ResponseCache, Source
from app.cache.stats import StatsRegistry
from app.errors import NPCForgeError
from app.models import NPC
from app.services.portrait_features import PortraitSpec, SpecBuilder
from app.services.portrait_parts import PartsData
from app.services.portrait_remote import ImagePainter
from app.services.portrait_render import PngRenderer, drawn_shapes, to_svg

if TYPE_CHECKING:
    from app.assets import Assets
    from app.services.worlds import WorldService
    from config import Settings

log = logging.getLogger(__name__)

RENDER_VERSION = 1
SVG_MEMO_SIZE = 1024
STYLE_MEMO_SIZE = 64
Kind = Literal["auto", "procedural", "painted"]
# A world's look: (genre, world key); see WorldStyles in app/wiring.py.
WorldStyle = Callable[[str], tuple[str, str]]


@dataclass(frozen=True)
class Portrait:
    """One NPC's procedural portrait."""

    spec: PortraitSpec
    svg: str
    key: str  # sha256 of the SVG: the content address of the picture

    def data_uri(self) -> str:
        return "data:image/svg+xml;base64," + base64.b64encode(self.svg.encode()).decode()


@dataclass(frozen=True)
class PortraitImage:
    png: bytes
    painted: bool
    source: Source | None  # where the cache found it (None: cache off)
    note: str = ""  # why a painted portrait fell back to the procedural one


def appearance_digest(npc: NPC, world_key: str) -> str:
    """The fields a portrait is drawn from: an edit of anything else keeps it."""
    fields = "|".join(
        [npc.id, npc.name, str(npc.age), npc.gender, npc.occupation, npc.appearance, world_key]
    )
    return hashlib.blake2b(fields.encode(), digest_size=16).hexdigest()


class Portraits:
    def __init__(
        self,
        parts: Callable[[], PartsData],
        world_style: WorldStyle,
        *,
        cache: ResponseCache | None = None,
        painter: ImagePainter | None = None,
        stats: StatsRegistry | None = None,
    ) -> None:
        self._parts = parts
        self._world_style = world_style
        self.cache = cache
        self.painter = painter
        self._svgs: Memo[tuple[int, str], Portrait] = Memo("portraits.svg", SVG_MEMO_SIZE)
        self._styles: Memo[str, tuple[str, str]] = Memo("portraits.world_style", STYLE_MEMO_SIZE)
        self._png = PngRenderer()
        if stats is not None:
            stats.register(self._svgs.name, self._svgs.stats)
            stats.register(self._png.backgrounds.name, self._png.backgrounds.stats)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        assets: Assets,
        worlds: WorldService,
        *,
        cache: ResponseCache | None,
        stats: StatsRegistry | None = None,
    ) -> Portraits:
        """Parts from assets/portraits/, the world's genre as the procedural backend
        sees it, and a painter when an images model is configured."""
        from app.backends.procedural_world import read_world
        from app.services.portrait_parts import PartsSource
        from app.services.portrait_remote import MediaClient
        from config import resolved_media_base_url

        def world_style(name: str) -> tuple[str, str]:
            world = worlds.world_for(name)
            return read_world(assets.tables(), world).genre, world.key()

        painter = None
        if settings.images_model:
            key = settings.openai_api_key
            client = MediaClient(
                resolved_media_base_url(settings),
                key.get_secret_value() if key is not None else None,
                timeout=settings.images_timeout,
            )
            painter = ImagePainter(client, settings.images_model, settings.images_size)
        source = PartsSource(assets.directory / "portraits", assets.files)
        return cls(source.get, world_style, cache=cache, painter=painter, stats=stats)

    async def aclose(self) -> None:
        if self.painter is not None:
            await self.painter.client.aclose()

    def style(self, world: str) -> tuple[str, str]:
        """(genre, world key) of a world, remembered by name."""
        return self._styles.get(world, lambda: self._world_style(world))

    def spec(self, npc: NPC) -> PortraitSpec:
        """Which parts and colours the NPC's portrait uses, and why."""
        genre, world_key = self.style(npc.world)
        return SpecBuilder(self._parts()).spec(npc, genre, world_key)

    def procedural(self, npc: NPC) -> Portrait:
        """The offline portrait (SVG), drawn again only when its fields changed."""
        data = self._parts()
        genre, world_key = self.style(npc.world)
        key = (id(data), appearance_digest(npc, world_key))

        def draw() -> Portrait:
            spec = SpecBuilder(data).spec(npc, genre, world_key)
            svg = to_svg(drawn_shapes(spec, data), title=npc.name)
            return Portrait(spec, svg, hashlib.sha256(svg.encode()).hexdigest())

        return self._svgs.get(key, draw)

    def svg(self, npc: NPC) -> str:
        return self.procedural(npc).svg

    def procedural_png(self, npc: NPC) -> bytes:
        """The offline portrait as PNG bytes (blocking: call it in a thread)."""
        portrait = self.procedural(npc)
        return self._png.png(drawn_shapes(portrait.spec, self._parts()))

    def prompt(self, npc: NPC) -> str:
        """What an images model is asked to paint: the appearance in its world."""
        genre, _ = self.style(npc.world)
        who = f"{npc.age_text(' years old')}, {npc.gender} {npc.occupation}"
        return (
            f"Head-and-shoulders portrait of {npc.name}, {who}, in the world of {npc.world} "
            f"({genre.replace('_', ' ')}). {npc.appearance} "
            "Painted character art, plain background, no text."
        )

    async def png(self, npc: NPC, *, kind: Kind = "auto") -> PortraitImage:
        """The portrait as PNG: painted when an images model is configured (or
        asked for), procedural otherwise or when painting fails. Cached."""
        if kind != "procedural" and self.painter is not None:
            try:
                return await self._painted(npc, self.painter)
            except NPCForgeError as exc:
                log.warning("painted portrait of %s failed, drawing it: %s", npc.id, exc)
                image = await self._procedural_png(npc)
                return PortraitImage(image.png, False, image.source, note=str(exc))
        return await self._procedural_png(npc)

    async def _procedural_png(self, npc: NPC) -> PortraitImage:
        portrait = await asyncio.to_thread(self.procedural, npc)
        key = _digest(f"portrait-png|v{RENDER_VERSION}|{portrait.key}")

        async def render() -> str:
            png = await asyncio.to_thread(self.procedural_png, npc)
            return base64.b64encode(png).decode()

        return await self._cached(key, render, painted=False)

    async def _painted(self, npc: NPC, painter: ImagePainter) -> PortraitImage:
        prompt = self.prompt(npc)
        key = _digest(f"portrait-painted|{painter.identity}|{prompt}")

        async def paint() -> str:
            return base64.b64encode(await painter.paint(prompt)).decode()

        return await self._cached(key, paint, painted=True)

    async def _cached(
        self, key: str, compute: Callable[[], Awaitable[str]], *, painted: bool
    ) -> PortraitImage:
        if self.cache is None:
            return PortraitImage(base64.b64decode(await compute()), painted, None)
        value, source = await self.cache.get_or_compute(key, compute, validate=_check_b64)
        return PortraitImage(base64.b64decode(value), painted, source)


def _digest(text: str) -> str:
    """A response-cache key (the disk tier takes hex digests)."""
    return hashlib.sha256(text.encode()).hexdigest()


def _check_b64(value: object) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError("a cached portrait is a base64 string")
