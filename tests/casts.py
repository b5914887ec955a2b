"""Helpers that run casts the way the UI and the CLI do: through the cast service."""

from __future__ import annotations

from collections.abc import Sequence

from app.models import NPCSpec, World
from app.services.generation import NPCOutcome, collect
from app.services.planning import CastRequest, NamedNPC, plan_cast
from app.wiring import Services
from config import Settings

TEMPERATURE = 0.9


def request(
    world: World, count: int, *, names: Sequence[str] = (), seed: int | None = 11, **kwargs: object
) -> CastRequest:
    return CastRequest(
        world=world,
        count=count,
        temperature=float(kwargs.pop("temperature", TEMPERATURE)),  # type: ignore[arg-type]
        named=tuple(NamedNPC(name) for name in names),
        seed=seed,
        **kwargs,  # type: ignore[arg-type]
    )


def specs(services: Services, world: World, count: int, **kwargs: object) -> list[NPCSpec]:
    return plan_cast(
        request(world, count, **kwargs), services.assets.personalities(), max_npcs=max(count, 1)
    )  # type: ignore[arg-type]


def specs_for(settings: Settings, world: World, count: int, **kwargs: object) -> list[NPCSpec]:
    """Specs without an app (for tests of one backend on its own)."""
    from app.assets import Assets

    personalities = Assets(settings.assets_dir).personalities()
    return plan_cast(request(world, count, **kwargs), personalities, max_npcs=max(count, 1))  # type: ignore[arg-type]


async def outcomes(
    services: Services,
    world: World,
    count: int,
    *,
    backend: str | None = None,
    use_cache: bool = True,
    **kwargs: object,
) -> list[NPCOutcome]:
    """A whole cast in request order (not saved to the library)."""
    plan = await services.cast.plan(request(world, count, **kwargs), backend=backend, save=False)  # type: ignore[arg-type]
    async with services.cast.run(plan, use_cache=use_cache) as run:
        return await collect(run.outcomes(), count)
