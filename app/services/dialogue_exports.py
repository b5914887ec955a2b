"""Dialogue lines as files games read: JSON, a localisation CSV, Yarn Spinner, Ink.

Only delivered lines are exported (a failed one has no text). Every format
carries the line's stable key (``DialogueLine.key``): the CSV's ``key`` column,
Yarn's ``#line:`` tag, Ink's tag. CSV cells that a spreadsheet would run as a
formula (starting with = + - @, a tab or a carriage return) get a leading
apostrophe. Yarn and Ink escape their own special characters, so a line never
turns into a command, a choice or a comment.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Sequence

import orjson

from app.errors import InputError
from app.services.dialogue import DialogueLine

CSV_COLUMNS = ("key", "npc_id", "npc_name", "situation", "variant", "line")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]+")
_TAG = re.compile(r"[^A-Za-z0-9_.\-]+")
# Characters that mean something in a line of Yarn Spinner 2 ({expressions},
# [markup], <<commands>>, #tags, // comments) or Ink (also | ~ and diverts).
_YARN_SPECIAL = re.compile(r"([\\{}\[\]<>#/])")
_INK_SPECIAL = re.compile(r"([\\{}\[\]<>#/|~])")


def _delivered(lines: Iterable[DialogueLine]) -> list[DialogueLine]:
    return [line for line in lines if line.line is not None]


def safe_cell(value: str) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def to_json(lines: Iterable[DialogueLine]) -> bytes:
    rows = [{column: getattr(line, column) for column in CSV_COLUMNS} for line in _delivered(lines)]
    return orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n"


def to_csv(lines: Iterable[DialogueLine]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for line in _delivered(lines):
        writer.writerow(
            [
                line.key,
                line.npc_id,
                safe_cell(line.npc_name),
                safe_cell(line.situation),
                line.variant,
                safe_cell(line.line or ""),
            ]
        )
    return out.getvalue().encode("utf-8")


def identifier(text: str, prefix: str = "n") -> str:
    """Letters, digits and underscores, starting with a letter (node, knot names)."""
    name = _IDENTIFIER.sub("_", text).strip("_") or prefix
    return name if name[0].isalpha() else f"{prefix}_{name}"


def _grouped(lines: Sequence[DialogueLine]) -> dict[tuple[str, str], list[DialogueLine]]:
    """Lines per (NPC, situation), in the order they were asked for."""
    groups: dict[tuple[str, str], list[DialogueLine]] = {}
    for line in lines:
        groups.setdefault((line.npc_id, line.situation), []).append(line)
    return groups


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate.lower() in taken:
        candidate, number = f"{name}_{number}", number + 1
    taken.add(candidate.lower())
    return candidate


def to_yarn(lines: Iterable[DialogueLine]) -> bytes:
    """One node per NPC and situation; its variants are a line group (one is picked)."""
    taken: set[str] = set()
    nodes = []
    for (npc_id, situation), group in _grouped(_delivered(lines)).items():
        speaker = group[0].npc_name.replace(":", " ").strip() or npc_id
        title = _unique(identifier(f"{speaker}_{situation}"), taken)
        body = [
            f"=> {_yarn_text(speaker)}: {_yarn_text(line.line or '')} #line:{_tag(line.key)}"
            for line in group
        ]
        nodes.append(
            "\n".join(
                [
                    f"title: {title}",
                    f"tags: bark {_tag(npc_id)}",
                    "---",
                    *body,
                    "===",
                ]
            )
        )
    return ("\n\n".join(nodes) + "\n").encode("utf-8")


def _tag(text: str) -> str:
    return _TAG.sub("_", text)


def _yarn_text(text: str) -> str:
    return _YARN_SPECIAL.sub(r"\\\1", text)


def _ink_text(text: str) -> str:
    text = _INK_SPECIAL.sub(r"\\\1", text).replace("->", "-\\>")
    return "\\" + text if text[:1] in "*+-=" else text


def to_ink(lines: Iterable[DialogueLine]) -> bytes:
    """One knot per NPC, one stitch per situation; its variants are a shuffle."""
    by_npc: dict[str, dict[str, list[DialogueLine]]] = {}
    for (npc_id, situation), group in _grouped(_delivered(lines)).items():
        by_npc.setdefault(npc_id, {})[situation] = group
    out = [
        "// Barks written by NPC Forge: divert to KNOT.STITCH to play one, e.g. -> Knot.stitch",
        "-> DONE",
    ]
    taken: set[str] = set()
    for npc_id, situations in by_npc.items():
        first = next(iter(situations.values()))[0]
        knot = _unique(identifier(first.npc_name or npc_id), taken)
        out += ["", f"=== {knot} ==="]
        stitches: set[str] = set()
        for situation, group in situations.items():
            out.append(f"= {_unique(identifier(situation, 's'), stitches)}")
            out.append("{shuffle:")
            out += [f"- {_ink_text(line.line or '')} #{_tag(line.key)}" for line in group]
            out += ["}", "-> DONE"]
    return ("\n".join(out) + "\n").encode("utf-8")


EXPORTS: dict[str, tuple[str, Callable[[Iterable[DialogueLine]], bytes]]] = {
    "json": ("dialogue.json", to_json),
    "csv": ("dialogue.csv", to_csv),
    "yarn": ("dialogue.yarn", to_yarn),
    "ink": ("dialogue.ink", to_ink),
}
EXPORT_LABELS = {
    "JSON": "json",
    "CSV (localisation table)": "csv",
    "Yarn Spinner": "yarn",
    "Ink": "ink",
}


def export_format(name: str) -> str:
    """A format by its name, file suffix or label; InputError lists the known ones."""
    text = name.strip().lower().lstrip(".")
    for label, fmt in EXPORT_LABELS.items():
        if text in (fmt, label.lower()):
            return fmt
    raise InputError(
        f"Unknown dialogue export format {name!r}: use one of {', '.join(EXPORTS)} "
        "(or a file ending in .json, .csv, .yarn or .ink)."
    )


def export_lines(lines: Iterable[DialogueLine], fmt: str) -> tuple[str, bytes]:
    """``(file name, content)`` of the lines in a format (see ``export_format``)."""
    filename, write = EXPORTS[export_format(fmt)]
    return filename, write(lines)
