"""What a caller may do: which backend, how much, how many jobs at once.

The UI asks this service before a cast, a run of dialogue lines or a chat
message; the CLI runs as the machine's owner and does not. Without sign-in
everyone is an admin on their own machine (the app refuses to be shared
without sign-in), and quotas count per client address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from app.backends.pool import BackendPool
from app.errors import InputError
from app.services.accounts import Accounts, Role
from app.services.library import Viewer
from app.services.quotas import Kind, Quotas

AUTO = ("", "auto")


@dataclass(frozen=True, slots=True)
class Caller:
    name: str  # the signed-in user, or the client's address without sign-in
    role: Role


def _nothing() -> int:
    return 0


def _free(amount: int) -> None:
    """A trusted run's charge: nothing is counted."""


@dataclass(slots=True)
class Ticket:
    """A run admitted (a cast, a run of dialogue lines): what it ``produced``
    stays charged, the rest is given back when it ends.

    The handler sets ``count`` once, to a function of its own results (the NPCs
    its view holds, the lines delivered); ``produced`` reads it, so it cannot go
    stale however the run ends (finished, stopped, the client gone). A run that
    learns its size late (dialogue: how many lines are not cached) calls
    ``charge`` then, which refuses over the quota.
    """

    caller: Caller
    charged: int
    backend: str | None
    count: Callable[[], int] = field(default=_nothing)
    charger: Callable[[int], None] = field(default=_free, repr=False)

    @property
    def produced(self) -> int:
        return max(0, min(self.charged, self.count()))

    def charge(self, amount: int) -> None:
        """Charge ``amount`` more, or refuse it all (QuotaExceededError)."""
        self.charger(amount)
        self.charged += amount


class Admission:
    def __init__(
        self,
        accounts: Accounts,
        quotas: Quotas,
        backends: BackendPool,
        designer_backends: tuple[str, ...],
    ) -> None:
        self.accounts = accounts
        self.quotas = quotas
        self.backends = backends
        self.designer_backends = designer_backends

    def caller(self, username: str | None, address: str | None) -> Caller:
        if self.accounts.enabled and username:
            return Caller(username, self.accounts.role(username))
        return Caller(address or "local", self.accounts.role(None))

    def backend_for(self, caller: Caller, requested: str | None) -> str | None:
        """The backend this caller's request runs on: what was asked for when the
        role allows it; for "auto", the first allowed one when auto's pick is not."""
        if caller.role == "admin" or not self.designer_backends:
            return requested
        allowed = self.designer_backends
        if (requested or "").strip().lower() in AUTO:
            return requested if self.backends.resolve(requested) in allowed else allowed[0]
        if self.backends.resolve(requested) not in allowed:
            raise InputError(
                f"Your account may use the backends {', '.join(allowed)}; pick one of them "
                "under Advanced > Backend (an admin can allow more with "
                "NPC_FORGE_DESIGNER_BACKENDS)."
            )
        return requested

    def cast(
        self, caller: Caller, count: int, backend: str | None
    ) -> AbstractAsyncContextManager[Ticket]:
        """Admit a cast of ``count`` NPCs (see ``_run``)."""
        return self._run(caller, "npcs", count, backend)

    def dialogue(self, caller: Caller, backend: str | None) -> AbstractAsyncContextManager[Ticket]:
        """Admit a run of dialogue lines (see ``_run``) with nothing charged yet: the
        run charges the lines that are not in the cache once it knows them
        (``Ticket.charge``), and counts as produced only the lines newly written,
        so failed ones and those a Stop left unwritten are given back."""
        return self._run(caller, "lines", 0, backend)

    @asynccontextmanager
    async def _run(
        self, caller: Caller, kind: Kind, count: int, backend: str | None
    ) -> AsyncIterator[Ticket]:
        """The backend checked, a job slot held (waiting in the caller's short
        line), ``count`` charged; on leaving, what was not produced is given back."""
        chosen = self.backend_for(caller, backend)
        async with self.quotas.job(caller.name):

            def charger(amount: int) -> None:
                self.quotas.charge(kind, caller.name, amount)

            ticket = Ticket(caller, 0, chosen, charger=charger)
            ticket.charge(count)
            try:
                yield ticket
            finally:
                self.quotas.refund(kind, caller.name, ticket.charged - ticket.produced)

    def owner(self, caller: Caller) -> str | None:
        """Whose the NPCs this caller makes are: theirs when people sign in."""
        return caller.name if self.accounts.enabled else None

    def viewer(self, caller: Caller) -> Viewer:
        """How this caller sees the library: everything for an admin (and for
        everyone when nobody signs in), their own and the team's for a designer."""
        return Viewer(caller.name, sees_all=caller.role == "admin")

    def chat_message(self, caller: Caller) -> None:
        """Count one chat message, or refuse it with when to try again."""
        self.quotas.charge("chat", caller.name)
