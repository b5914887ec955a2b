"""A cast being generated, as the Generate tab shows it. No Gradio here.

The cards' HTML only ever grows while a run streams: each finished NPC is
appended (a CSS ``order`` puts it in its place), so Gradio sends each update
as a small "append" diff instead of the whole cast again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.models import NPC
from app.services.cast import CastPlan, CastRun, SaveReport
from app.services.generation import NPCOutcome
from app.ui.media_routes import CardMedia
from app.ui.render import failed_card, npc_card

# The status line names at most this many NPCs still being generated.
PENDING_NAMES_SHOWN = 3


@dataclass
class CastView:
    """Positions of one cast: finished NPCs, failures, and what is still running."""

    plan: CastPlan
    npcs: list[NPC | None] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    shown: list[int] = field(default_factory=list)  # positions, in the order they finished
    running: set[int] = field(default_factory=set)
    elapsed_s: float = 0.0
    stopped: bool = False
    saving: bool = False
    saved: int = 0
    save_error: str | None = None
    run: CastRun | None = field(default=None, repr=False)
    media: CardMedia | None = field(default=None, repr=False)  # portraits and voices
    # Rendered once per outcome: a stream re-sends the cast after every NPC.
    _cards: dict[int, str] = field(default_factory=dict, repr=False)
    _dumps: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.npcs = self.npcs or [None] * self.total
        self.errors = self.errors or [None] * self.total

    def __deepcopy__(self, memo: dict[int, Any]) -> CastView:
        # Gradio deep-copies state values it is given at build time; a live run
        # (with its event loop objects) is shared, never copied.
        return self

    @property
    def total(self) -> int:
        return len(self.plan.specs)

    @property
    def failed_positions(self) -> list[int]:
        return [index for index, error in enumerate(self.errors) if error is not None]

    def start(self, run: CastRun) -> None:
        self.run = run
        self.running = set(run.positions)
        self.stopped = self.saving = False
        self.elapsed_s = 0.0

    def apply(self, outcome: NPCOutcome) -> None:
        index = outcome.index
        self.npcs[index] = outcome.npc
        self.errors[index] = outcome.error
        self.running.discard(index)
        self.shown.append(index)
        self._cards[index] = self._card(index)
        if outcome.npc is not None:
            self._dumps[index] = outcome.npc.model_dump(mode="json")

    def finish(self, elapsed_s: float, *, stopped: bool, saving: bool) -> None:
        self.elapsed_s = elapsed_s
        self.stopped = stopped
        self.saving = saving
        self.run = None
        if self.media is not None:
            self.media.cast_finished([npc for npc in self.npcs if npc is not None])

    def record_save(self, report: SaveReport | None) -> None:
        self.saving = False
        if report is not None:
            self.saved += report.saved
            self.save_error = report.error

    def clear_failures(self) -> list[int]:
        """Take the failed positions off the board; returns them for a retry."""
        positions = self.failed_positions
        for index in positions:
            self.errors[index] = None
        self.shown = [index for index in self.shown if index not in positions]
        return positions

    def _card(self, index: int) -> str:
        npc, error = self.npcs[index], self.errors[index]
        if npc is not None:
            return npc_card(npc, index + 1, self.media)
        return failed_card(index + 1, self.plan.specs[index].label, error or "")

    def html(self) -> str:
        """The cards so far; a later call only ever appends to an earlier one's text."""
        return "".join(self._cards[index] for index in self.shown)

    def as_json(self) -> dict[str, Any]:
        """Finished NPCs in request order, and the failures with their reasons."""
        return {
            "backend": self.plan.backend,
            "seed": self.plan.cast_seed,
            "world": self.plan.world.name,
            "npcs": [self._dumps[i] for i, npc in enumerate(self.npcs) if npc is not None],
            "failed": [
                {"position": index + 1, "name": self.plan.specs[index].name, "error": error}
                for index, error in enumerate(self.errors)
                if error is not None
            ],
        }

    @property
    def produced(self) -> int:
        """How many NPCs of the cast are ready."""
        return sum(1 for npc in self.npcs if npc is not None)

    def status(self) -> str:
        ok = self.produced
        failed = len(self.failed_positions)
        lead = "Stopped: " if self.stopped else ""
        parts = [f"{lead}**{ok}/{self.total}** NPCs ready from `{self.plan.backend}`"]
        if failed:
            parts.append(f"{failed} failed (press Retry failed)")
        if self.running and not self.stopped:
            labels = [self.plan.specs[i].label for i in sorted(self.running)]
            named = [label for label in labels if label != "New NPC"][:PENDING_NAMES_SHOWN]
            who = f": {', '.join(named)}{' and more' if len(labels) > len(named) else ''}"
            parts.append(f"{len(self.running)} generating{who if named else ''}")
        elif self.elapsed_s:
            parts.append(f"{self.elapsed_s:.2f} s")
        if self.saving:
            parts.append("saving to the library…")
        elif self.saved:
            parts.append(f"{self.saved} saved to the library")
        if self.save_error:
            parts.append(f"not saved to the library ({self.save_error})")
        parts.append(f"seed {self.plan.cast_seed}")
        return " · ".join(parts)
