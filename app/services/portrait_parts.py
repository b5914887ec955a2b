"""The layered part data of procedural portraits (assets/portraits/), parsed and checked.

Artists add parts by editing ``parts.json`` and ``palette.json``; this module
turns them into ready-to-draw shapes (paths parsed once) and says which part
or pattern is wrong when an edit cannot be used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.cache.derived import DerivedCache
from app.errors import ConfigError
from utils.cached_json import JSONFileCache

CANVAS = 512
PARTS_FILE = "parts.json"
PALETTE_FILE = "palette.json"
_TOKEN = re.compile(r"[MLHVCQZ]|-?\d*\.?\d+(?:e-?\d+)?", re.IGNORECASE)
_ARITY = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "Q": 4, "Z": 0}

Point = tuple[float, float]
# One path segment: "M"/"L" (x, y), "C" (x1, y1, x2, y2, x, y), "Q" (x1, y1, x, y), "Z" ().
Segment = tuple[str, tuple[float, ...]]


@dataclass(frozen=True, slots=True)
class Shape:
    """One drawable element of a part: a path or an ellipse, coloured by role."""

    segments: tuple[Segment, ...] = ()
    ellipse: tuple[float, float, float, float] | None = None
    fill: str = "none"
    stroke: str = "none"
    width: float = 0.0
    opacity: float = 1.0
    mirror: bool = False


@dataclass(frozen=True, slots=True)
class Criteria:
    """When a default part fits an NPC that the text says nothing about."""

    genders: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    builds: tuple[str, ...] = ()
    min_age: int = 0
    max_age: int = 1_000_000
    weight: float = 1.0

    def fits(self, gender: str, genre: str, build: str, age: int) -> bool:
        return (
            (not self.genders or gender in self.genders)
            and (not self.genres or genre in self.genres)
            and (not self.builds or build in self.builds)
            and self.min_age <= age <= self.max_age
        )


@dataclass(frozen=True, slots=True)
class Part:
    id: str
    when: tuple[re.Pattern[str], ...]
    occupations: tuple[re.Pattern[str], ...]
    default: Criteria | None
    hides: tuple[str, ...]
    shapes: dict[str, tuple[Shape, ...]]


@dataclass(frozen=True, slots=True)
class Slot:
    name: str
    reads: str  # which text the patterns are matched against (see portrait_features)
    many: bool
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class ColourWord:
    when: tuple[re.Pattern[str], ...]
    colour: str


@dataclass(frozen=True, slots=True)
class Style:
    bg: str
    bg_light: str
    line: str
    cloth: tuple[str, ...]
    metal: str


@dataclass(frozen=True)
class PartsData:
    """Everything the portrait renderer reads from assets/portraits/."""

    version: int
    layers: tuple[str, ...]
    head_layers: frozenset[str]
    body_layers: frozenset[str]
    slots: dict[str, Slot]
    skin_tones: tuple[str, ...]
    natural_hair: tuple[str, ...]
    natural_eyes: tuple[str, ...]
    grey_hair: str
    white_hair: str
    words: dict[str, tuple[ColourWord, ...]]
    styles: dict[str, Style]
    fixed: dict[str, str]
    part_index: dict[str, Part] = field(default_factory=dict)


def parse_path(d: str, where: str) -> tuple[Segment, ...]:
    """Absolute SVG path commands (M L H V C Q Z) as segments; H and V become L."""
    tokens = _TOKEN.findall(d)
    segments: list[Segment] = []
    command = ""
    x = y = 0.0
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.isalpha():
            if token.islower():
                raise ConfigError(f"{where}: use absolute (upper case) commands, not {token!r}")
            command = token.upper()
            index += 1
            if command == "Z":
                segments.append(("Z", ()))
                continue
        elif not command or command == "Z":
            raise ConfigError(f"{where}: a number without a command in {d[:40]!r}")
        arity = _ARITY[command]
        numbers = tokens[index : index + arity]
        if len(numbers) < arity or any(n.isalpha() for n in numbers):
            raise ConfigError(f"{where}: {command} needs {arity} numbers in {d[:40]!r}")
        values = tuple(float(n) for n in numbers)
        index += arity
        if command == "H":
            command_out, values = "L", (values[0], y)
        elif command == "V":
            command_out, values = "L", (x, values[0])
        else:
            command_out = command
        x, y = values[-2], values[-1]
        segments.append((command_out, values))
        if command == "M":
            command = "L"  # further pairs after M are lines, as in SVG
    if not segments or segments[0][0] != "M":
        raise ConfigError(f"{where}: a path must start with M")
    return tuple(segments)


def _patterns(raw: Any, where: str) -> tuple[re.Pattern[str], ...]:
    patterns = []
    for text in raw or ():
        try:
            # Matched at the start of a word (checked by the caller: a leading
            # look-behind would cost the regex engine its fast literal scan).
            patterns.append(re.compile(text, re.IGNORECASE))
        except re.error as exc:
            raise ConfigError(f"{where}: bad pattern {text!r} ({exc})") from None
    return tuple(patterns)


def _shape(raw: dict[str, Any], where: str) -> Shape:
    ellipse = raw.get("e")
    if ellipse is not None and len(ellipse) != 4:
        raise ConfigError(f"{where}: 'e' needs [cx, cy, rx, ry]")
    if ellipse is None and "d" not in raw:
        raise ConfigError(f"{where}: a shape needs 'd' (a path) or 'e' (an ellipse)")
    return Shape(
        segments=parse_path(raw["d"], where) if "d" in raw else (),
        ellipse=tuple(float(v) for v in ellipse) if ellipse is not None else None,  # type: ignore[arg-type]
        fill=str(raw.get("fill", "none")),
        stroke=str(raw.get("stroke", "none")),
        width=float(raw.get("w", 0)),
        opacity=float(raw.get("o", 1)),
        mirror=bool(raw.get("mirror", False)),
    )


def _part(raw: dict[str, Any], slot: str, layers: set[str]) -> Part:
    where = f"portrait part {slot}/{raw.get('id', '?')}"
    default = raw.get("default")
    shapes: dict[str, tuple[Shape, ...]] = {}
    for layer, items in (raw.get("shapes") or {}).items():
        if layer not in layers:
            raise ConfigError(f"{where}: unknown layer {layer!r}; layers are {sorted(layers)}")
        shapes[layer] = tuple(_shape(item, where) for item in items)
    return Part(
        id=str(raw["id"]),
        when=_patterns(raw.get("when"), where),
        occupations=_patterns(raw.get("occupations"), where),
        default=None
        if default is None
        else Criteria(
            genders=tuple(default.get("genders", ())),
            genres=tuple(default.get("genres", ())),
            builds=tuple(default.get("builds", ())),
            min_age=int(default.get("min_age", 0)),
            max_age=int(default.get("max_age", 1_000_000)),
            weight=float(default.get("weight", 1.0)),
        ),
        hides=tuple(raw.get("hides", ())),
        shapes=shapes,
    )


def _words(raw: Any, where: str) -> tuple[ColourWord, ...]:
    return tuple(ColourWord(_patterns(item["when"], where), item["colour"]) for item in raw)


def build_parts(parts: Any, palette: Any) -> PartsData:
    """Check and compile the two files; a ConfigError names what is wrong."""
    try:
        layers = tuple(parts["layers"])
        layer_set = set(layers)
        slots = {
            name: Slot(
                name=name,
                reads=str(raw.get("reads", "appearance")),
                many=bool(raw.get("many", False)),
                parts=tuple(_part(item, name, layer_set) for item in raw["parts"]),
            )
            for name, raw in parts["slots"].items()
        }
        styles = {
            genre: Style(s["bg"], s["bg_light"], s["line"], tuple(s["cloth"]), s["metal"])
            for genre, s in palette["styles"].items()
        }
        data = PartsData(
            version=int(parts.get("version", 1)),
            layers=layers,
            head_layers=frozenset(parts.get("head_layers", ())),
            body_layers=frozenset(parts.get("body_layers", ())),
            slots=slots,
            skin_tones=tuple(palette["skin_tones"]),
            natural_hair=tuple(palette["natural_hair"]),
            natural_eyes=tuple(palette["natural_eyes"]),
            grey_hair=palette["grey_hair"],
            white_hair=palette["white_hair"],
            words={
                kind: _words(palette[f"{kind}_words"], f"palette {kind}_words")
                for kind in ("skin", "hair", "eye", "cloth")
            },
            styles=styles,
            fixed=dict(palette["fixed"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"assets/portraits: cannot read the part data ({exc!r})") from None
    if "generic" not in styles:
        raise ConfigError("assets/portraits/palette.json: styles need a 'generic' entry")
    for slot in slots.values():
        for part in slot.parts:
            data.part_index[f"{slot.name}/{part.id}"] = part
    return data


class PartsSource:
    """The part data of one assets folder, compiled again only when a file changed
    (the JSON file cache hands back the same objects until then)."""

    def __init__(self, directory: Path, files: JSONFileCache) -> None:
        self.directory = directory
        self.files = files
        self._compiled: DerivedCache[PartsData] = DerivedCache("portrait_parts", maxsize=2)

    def get(self) -> PartsData:
        parts = self.files.read(self.directory / PARTS_FILE)
        palette = self.files.read(self.directory / PALETTE_FILE)
        return self._compiled.get(
            self.directory, (parts, palette), lambda: build_parts(parts, palette)
        )
