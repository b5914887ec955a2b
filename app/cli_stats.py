"""``npc-forge stats``: the figures of a running app, from its /stats.json."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any, TextIO

from app.cache.stats import TABLE_COLUMNS
from app.errors import NPCForgeError
from app.services.observability import CONCURRENCY_COLUMNS, LATENCY_COLUMNS
from utils.text_table import format_table


class StatsUnavailableError(NPCForgeError):
    exit_code = 1


def _credentials(login: str) -> str:
    """``user:password``, asking for the password when only the user is given."""
    if ":" in login:
        return login
    import getpass

    return f"{login}:{getpass.getpass(f'Password for {login}: ')}"


def fetch_stats(url: str, timeout: float = 10.0, login: str | None = None) -> dict[str, Any]:
    target = url.rstrip("/") + "/stats.json"
    request = urllib.request.Request(target)
    if login:
        token = base64.b64encode(_credentials(login).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise StatsUnavailableError(
                f"{target} asks to sign in"
                + (" and refused that account" if login else "")
                + ": give an account with --login USER (the password is asked) or USER:PASSWORD."
            ) from None
        raise StatsUnavailableError(f"cannot read {target} (HTTP {exc.code}).") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatsUnavailableError(
            f"cannot read {target} ({reason}). Is the app running? Start it with `python main.py`."
        ) from None


def print_stats(url: str, *, as_json: bool, out: TextIO, login: str | None = None) -> int:
    data = fetch_stats(url, login=login)
    if as_json:
        print(json.dumps(data, indent=2), file=out)
        return 0
    caches = [{**row, "hit_rate": f"{row['hit_rate']:.1%}"} for row in data["caches"]]
    sections = (
        ("Caches", caches, TABLE_COLUMNS, "no caches"),
        ("Backend latency (recent calls)", data["latency"], LATENCY_COLUMNS, "no calls yet"),
        ("Concurrency", data["concurrency"], CONCURRENCY_COLUMNS, "no backend used yet"),
    )
    for title, rows, columns, empty in sections:
        print(f"{title}\n{format_table(rows, columns) if rows else empty}\n", file=out)
    return 0
