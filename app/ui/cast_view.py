"""A cast being generated, as the UI shows it. No Gradio here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.models import NPC
from app.services.generation import NPCOutcome, NPCSpec
from app.ui.render import cast_grid, failed_card, npc_card, pending_card


def _label(spec: NPCSpec) -> str:
    return spec.name or "New NPC"


@dataclass
class CastView:
    """Positions of one cast: finished NPCs, failures, and what is still running."""

    specs: list[NPCSpec]
    backend: str
    npcs: list[NPC | None] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    elapsed_s: float = 0.0
    saved: int = 0  # NPCs written to the library

    def __post_init__(self) -> None:
        self.npcs = self.npcs or [None] * len(self.specs)
        self.errors = self.errors or [None] * len(self.specs)

    @property
    def total(self) -> int:
        return len(self.specs)

    @property
    def done(self) -> int:
        return sum(1 for npc, error in zip(self.npcs, self.errors, strict=True) if npc or error)

    @property
    def failed_positions(self) -> list[int]:
        return [index for index, error in enumerate(self.errors) if error is not None]

    def apply(self, outcome: NPCOutcome) -> None:
        self.npcs[outcome.index] = outcome.npc
        self.errors[outcome.index] = outcome.error

    def clear_failures(self) -> list[int]:
        """Mark failed positions as pending again; returns them."""
        positions = self.failed_positions
        for index in positions:
            self.errors[index] = None
        return positions

    def html(self) -> str:
        cards = []
        for index, spec in enumerate(self.specs):
            npc, error = self.npcs[index], self.errors[index]
            if npc is not None:
                cards.append(npc_card(npc, index + 1))
            elif error is not None:
                cards.append(failed_card(index + 1, _label(spec), error))
            else:
                cards.append(pending_card(index + 1, _label(spec)))
        return cast_grid(cards)

    def as_json(self) -> dict[str, Any]:
        """Finished NPCs in request order, and the failures with their reasons."""
        return {
            "backend": self.backend,
            "seed": self.specs[0].cast_seed if self.specs else None,
            "world": self.specs[0].world.name if self.specs else None,
            "npcs": [npc.model_dump(mode="json") for npc in self.npcs if npc is not None],
            "failed": [
                {"position": index + 1, "name": self.specs[index].name, "error": error}
                for index, error in enumerate(self.errors)
                if error is not None
            ],
        }

    def status(self) -> str:
        ok = sum(1 for npc in self.npcs if npc is not None)
        failed = len(self.failed_positions)
        running = self.total - ok - failed
        parts = [f"**{ok}/{self.total}** NPCs ready from `{self.backend}`"]
        if failed:
            parts.append(f"{failed} failed (press Retry failed)")
        if running:
            parts.append(f"{running} generating")
        elif self.elapsed_s:
            parts.append(f"{self.elapsed_s:.2f} s")
        if self.saved:
            parts.append(f"{self.saved} saved to the library")
        if self.specs:
            parts.append(f"seed {self.specs[0].cast_seed}")
        return " · ".join(parts)
