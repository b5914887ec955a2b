"""Who may sign in, with which role, and whether the app may start open.

Accounts come from ``--auth USER:PASS[:ROLE]`` (repeatable, or
``NPC_FORGE_AUTH``, space-separated) and ``--auth-file FILE`` (one
``user:password[:role]`` per line, ``#`` comments). A password may be stored
hashed: ``python main.py hash-password`` prints ``pbkdf2_sha256$...`` to put in
its place. Roles: ``admin`` and ``designer`` (the default).

The app refuses to start reachable from other machines (``--share`` or a
non-loopback address) without accounts, unless told ``--no-auth``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from app.errors import ConfigError
from config import setting_default

if TYPE_CHECKING:
    from config import Settings

Role = Literal["admin", "designer"]
ROLES: tuple[Role, ...] = ("admin", "designer")
HASH_SCHEME = "pbkdf2_sha256"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def hash_password(
    password: str,
    *,
    iterations: int = setting_default("auth_hash_iterations"),
    salt: bytes | None = None,
) -> str:
    """``pbkdf2_sha256$ITERATIONS$SALT$HASH`` (base64), for an auth file."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    encode = base64.b64encode
    return f"{HASH_SCHEME}${iterations}${encode(salt).decode()}${encode(digest).decode()}"


def _matches(stored: str, given: str) -> bool:
    """Constant-time comparison with a plain or a hashed password."""
    if stored.startswith(HASH_SCHEME + "$"):
        try:
            _, iterations, salt, digest = stored.split("$")
            expected = base64.b64decode(digest)
            actual = hashlib.pbkdf2_hmac(
                "sha256", given.encode(), base64.b64decode(salt), int(iterations)
            )
        except ValueError:
            return False
        return hmac.compare_digest(expected, actual)
    return hmac.compare_digest(stored.encode(), given.encode())


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    role: Role
    password: str  # plain or hashed; never shown

    def __repr__(self) -> str:  # a password must not reach a log through repr()
        return f"Account(name={self.name!r}, role={self.role!r})"


def parse_account(entry: str, where: str) -> Account:
    """``user:password[:role]``; the role is the last part only when it names one."""
    name, colon, rest = entry.strip().partition(":")
    if not colon or not name.strip() or not rest:
        raise ConfigError(
            f"{where}: an account is written user:password (optionally :admin or "
            ":designer); this one has no user or no password."
        )
    password, _, role = rest.rpartition(":")
    if role not in ROLES:
        password, role = rest, "designer"
    if not password:
        raise ConfigError(f"{where}: the account {name.strip()!r} has an empty password.")
    return Account(name.strip(), role, password)  # type: ignore[arg-type]


def read_auth_file(path: Path) -> list[Account]:
    """The accounts of an auth file; errors name the line, never the password."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the auth file {path}: {exc.__class__.__name__}.") from None
    accounts = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            accounts.append(parse_account(line, f"{path}, line {number}"))
    return accounts


class Accounts:
    """The accounts the app knows; empty means no sign-in."""

    def __init__(self, accounts: Iterable[Account] = ()) -> None:
        self._by_name: dict[str, Account] = {}
        for account in accounts:
            if account.name in self._by_name:
                raise ConfigError(f"The account {account.name!r} is given twice; keep one.")
            self._by_name[account.name] = account

    @classmethod
    def from_settings(cls, settings: Settings) -> Accounts:
        entries = [parse_account(e, "--auth / NPC_FORGE_AUTH") for e in settings.auth]
        if settings.auth_file is not None:
            entries += read_auth_file(settings.auth_file)
        return cls(entries)

    @property
    def enabled(self) -> bool:
        return bool(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def names(self) -> list[str]:
        """The account names, sorted (who a world's editing may be granted to)."""
        return sorted(self._by_name)

    def check(self, username: str, password: str) -> bool:
        """Gradio's auth callback: right user and password."""
        account = self._by_name.get(username)
        # Compare even for an unknown user, so timing does not tell which names exist.
        stored = account.password if account is not None else "\0" * max(8, len(password))
        return _matches(stored, password) and account is not None

    def role(self, username: str | None) -> Role:
        """A signed-in user's role; without sign-in everyone on loopback is admin."""
        if not self.enabled:
            return "admin"
        account = self._by_name.get(username or "")
        return account.role if account is not None else "designer"

    def passwords(self) -> list[str]:
        """Plain passwords, for the log redactor."""
        return [a.password for a in self._by_name.values() if not a.password.startswith("pbkdf2")]


def is_loopback(host: str | None) -> bool:
    name = (host or "127.0.0.1").strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_exposure(*, host: str | None, share: bool, accounts: Accounts, no_auth: bool) -> None:
    """Refuse to serve other machines without sign-in, unless told so explicitly."""
    if accounts.enabled or no_auth:
        return
    if share or not is_loopback(host):
        how = "--share" if share else f"--host {host}"
        raise ConfigError(
            f"Refusing to start: {how} makes the app reachable by others and no one has to "
            "sign in. Give --auth USER:PASS or --auth-file FILE (or NPC_FORGE_AUTH), or "
            "--no-auth to run it open on purpose."
        )
