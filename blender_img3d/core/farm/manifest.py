"""Reading a batch manifest: what to make, one entry per item, every problem found up front.

A manifest is one of:

- a folder of images (``.png .jpg .jpeg .webp .bmp .tif .tiff``), one item per
  file, in name order, named after the file;
- a text file of prompts, one per line (blank lines and ``#`` comments skipped);
- a CSV file with a header row, or a JSONL file with one JSON object per line:
  per item an ``image`` (path, relative to the manifest's folder) or a
  ``prompt``, optionally a ``name``, and any setting override (``seed``,
  ``batch``, ``steps``, ``target_faces``, ``mesh.smooth_iterations``, ...: the
  field names of ``core.settings``, see :data:`OVERRIDES`). In a CSV an empty
  cell means "the batch's value".

A batch of 10,000 must not die at item 7,000 on a typo, so reading collects
every unknown column and bad row (with its line number) and raises them all
at once as a :class:`ManifestError`, before any model is loaded.
"""

from __future__ import annotations

import csv
import json
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from .. import settings as defaults
from ..errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt",)
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")

# Settings that belong to the machine running the batch, not to an item: they
# come from the command line (or the Ray worker's set-up) only.
MACHINE_SETTINGS = frozenset(
    {
        "device",
        "dtype",
        "cache_dir",
        "allow_download",
        "allow_rembg",
        "max_file_bytes",
        "max_pixels",
    }
)
SOURCE_COLUMNS = ("image", "prompt")
NAME_COLUMN = "name"
MAX_NAME_LENGTH = 100
# Names an item may not take: they are files of the batch itself.
RESERVED_NAMES = frozenset({"batch.json", "batch.lock"})
_SECTION_PREFIXES = {"generation": "generation", "mesh": "mesh", "image": "image_settings"}
_REQUEST_OVERRIDES = {"preprocess": bool, "units": str}
_BAD_NAME_CHARS = re.compile(r'[\x00-\x1f<>:"/\\|?*]')


def _override_table() -> dict[str, tuple[str, str, Any]]:
    """Column name -> (Request section, field, type), derived from the settings dataclasses."""
    table: dict[str, tuple[str, str, Any]] = {}
    for prefix, section in _SECTION_PREFIXES.items():
        cls = {f.name: f for f in fields(defaults.Request)}[section].default_factory
        hints = typing.get_type_hints(cls)
        for item in fields(cls):
            if item.name in MACHINE_SETTINGS:
                continue
            entry = (section, item.name, hints[item.name])
            table[f"{prefix}.{item.name}"] = entry
            table.setdefault(item.name, entry)
    for name, kind in _REQUEST_OVERRIDES.items():
        table[name] = ("request", name, kind)
    return table


OVERRIDES: dict[str, tuple[str, str, Any]] = _override_table()
KNOWN_COLUMNS = (*SOURCE_COLUMNS, NAME_COLUMN, *OVERRIDES)


@dataclass
class Entry:
    """One manifest item before planning: its source, optional name and setting overrides."""

    where: str  # "line 4", or the file name for a folder of images
    image: Optional[Path] = None
    prompt: Optional[str] = None
    name: Optional[str] = None
    # Request section ("generation", "mesh", "image_settings", "request") -> {field: value}
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


class ManifestError(ConfigError):
    """Unknown columns or bad rows; ``problems`` lists every one as ``(where, message)``."""

    SHOWN = 5

    def __init__(self, source: Path, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        shown = "; ".join(f"{where}: {message}" for where, message in problems[: self.SHOWN])
        more = len(problems) - self.SHOWN
        tail = f"; and {more} more" if more > 0 else ""
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{source}: {count}, nothing was run. {shown}{tail}.")


def read_manifest(path: str | Path) -> list[Entry]:
    """Every entry of the manifest at ``path``; :class:`ManifestError` lists all problems."""
    source = Path(path).expanduser()
    if source.is_dir():
        return _read_folder(source)
    if not source.is_file():
        raise ConfigError(
            f"No manifest at {source}: give a folder of images, a .txt of prompts, "
            "a .csv or a .jsonl."
        )
    suffix = source.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        entries, problems = _read_prompts(source)
    elif suffix in CSV_SUFFIXES:
        entries, problems = _read_csv(source)
    elif suffix in JSONL_SUFFIXES:
        entries, problems = _read_jsonl(source)
    else:
        raise ConfigError(
            f"Can't read {source} as a manifest: use a folder of images, .txt (prompts), "
            ".csv or .jsonl."
        )
    if not entries and not problems:
        problems.append(("file", "no items"))
    if problems:
        raise ManifestError(source, problems)
    return entries


def _read_text(source: Path) -> str:
    try:
        return source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{source} is not UTF-8 text ({error.reason}): save it as UTF-8."
        ) from None
    except OSError as error:
        raise ConfigError(f"Can't read {source}: {error.strerror}.") from None


def _read_folder(folder: Path) -> list[Entry]:
    images = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise ConfigError(f"No images in {folder}: it needs {', '.join(IMAGE_SUFFIXES)} files.")
    stems: dict[str, int] = {}
    for image in images:
        stems[image.stem.lower()] = stems.get(image.stem.lower(), 0) + 1
    entries = []
    for image in images:
        # chair.png and chair.jpg both become items: the clash is settled by the suffix.
        clash = stems[image.stem.lower()] > 1
        name = f"{image.stem}-{image.suffix.lstrip('.').lower()}" if clash else image.stem
        entries.append(Entry(where=image.name, image=image, name=derived_name(name)))
    return entries


def _read_prompts(source: Path) -> tuple[list[Entry], list[tuple[str, str]]]:
    entries = []
    for number, line in enumerate(_read_text(source).splitlines(), start=1):
        prompt = line.strip()
        if prompt and not prompt.startswith("#"):
            entries.append(Entry(where=f"line {number}", prompt=prompt))
    return entries, []


def _read_csv(source: Path) -> tuple[list[Entry], list[tuple[str, str]]]:
    reader = csv.reader(_read_text(source).splitlines())
    try:
        header = [column.strip() for column in next(reader)]
    except StopIteration:
        return [], [("line 1", "the file is empty; it needs a header row (image or prompt, ...)")]
    problems: list[tuple[str, str]] = []
    header_problem = _check_columns(header)
    if header_problem:
        return [], [("line 1", header_problem)]
    entries = []
    for cells in reader:
        where = f"line {reader.line_num}"
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            problems.append((where, f"{len(cells)} cells for {len(header)} columns"))
            continue
        row = {col: cell.strip() for col, cell in zip(header, cells) if cell.strip() != ""}
        _add_entry(where, row, entries, problems, from_text=True, base=source.parent)
    return entries, problems


def _read_jsonl(source: Path) -> tuple[list[Entry], list[tuple[str, str]]]:
    entries: list[Entry] = []
    problems: list[tuple[str, str]] = []
    for number, line in enumerate(_read_text(source).splitlines(), start=1):
        where = f"line {number}"
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append((where, f"not JSON ({error.msg} at column {error.colno})"))
            continue
        if not isinstance(row, dict):
            problems.append((where, "not a JSON object"))
            continue
        unknown = _check_columns(list(row))
        if unknown:
            problems.append((where, unknown))
            continue
        row = {key: value for key, value in row.items() if value is not None}
        _add_entry(where, row, entries, problems, from_text=False, base=source.parent)
    return entries, problems


def _check_columns(columns: list[str]) -> Optional[str]:
    """A message naming unknown, machine-only, duplicate or missing columns, or None."""
    machine = [c for c in columns if c.split(".")[-1] in MACHINE_SETTINGS]
    if machine:
        return f"{', '.join(machine)} can't be set per item; give it on the command line instead"
    unknown = [c for c in columns if c not in KNOWN_COLUMNS]
    if unknown:
        return (
            f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"known ones are image, prompt, name and the settings {', '.join(_short_overrides())}"
        )
    duplicate = sorted({c for c in columns if columns.count(c) > 1})
    if duplicate:
        return f"column {', '.join(duplicate)} given twice"
    if not any(c in columns for c in SOURCE_COLUMNS):
        return "needs an 'image' or a 'prompt' column"
    return None


def _short_overrides() -> list[str]:
    return [name for name in OVERRIDES if "." not in name]


def _add_entry(
    where: str,
    row: dict[str, Any],
    entries: list[Entry],
    problems: list[tuple[str, str]],
    *,
    from_text: bool,
    base: Path,
) -> None:
    image, prompt = row.get("image"), row.get("prompt")
    if (image is None) == (prompt is None):
        problems.append((where, "give exactly one of image or prompt"))
        return
    entry = Entry(where=where)
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            problems.append((where, "image must be a file path"))
            return
        path = Path(image).expanduser()
        entry.image = path if path.is_absolute() else base / path
        if not entry.image.is_file():
            problems.append((where, f"no image file at {entry.image}"))
            return
    else:
        if not isinstance(prompt, str) or not prompt.strip():
            problems.append((where, "the prompt is empty"))
            return
        entry.prompt = prompt.strip()
    if NAME_COLUMN in row:
        name = row[NAME_COLUMN]
        problem = name_problem(name) if isinstance(name, str) else "name must be text"
        if problem:
            problems.append((where, problem))
            return
        entry.name = name
    for column, value in row.items():
        if column in (*SOURCE_COLUMNS, NAME_COLUMN):
            continue
        section, name, kind = OVERRIDES[column]
        try:
            converted = _convert(value, kind, from_text)
        except ValueError as error:
            problems.append((where, f"{column}: {error}"))
            return
        entry.overrides.setdefault(section, {})[name] = converted
    entries.append(entry)


def _convert(value: Any, kind: Any, from_text: bool) -> Any:
    """``value`` as the setting's type; CSV text is parsed, JSON values are checked."""
    if typing.get_origin(kind) is typing.Union:  # Optional[X]: an empty cell already means unset
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if kind is bool:
        if from_text:
            lowered = str(value).lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        elif isinstance(value, bool):
            return value
        raise ValueError(f"{value!r} is not true or false")
    if kind is int:
        if from_text:
            try:
                return int(str(value))
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{value!r} is not a whole number")
    if kind is float:
        if from_text:
            try:
                return float(str(value))
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{value!r} is not a number")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{value!r} is not text")
    raise ValueError(f"can't be set from a manifest ({kind})")


def name_problem(name: str) -> Optional[str]:
    """Why ``name`` can't be an item's folder name, or None when it can."""
    if not name.strip():
        return "the name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"the name is longer than {MAX_NAME_LENGTH} characters"
    if name != name.strip() or name.startswith(".") or name.endswith("."):
        return f"the name {name!r} starts or ends with a space or a dot"
    if _BAD_NAME_CHARS.search(name):
        return f"the name {name!r} has a character folders can't hold (/ \\ : * ? \" < > |)"
    if name.lower() in RESERVED_NAMES:
        return f"the name {name!r} is taken by the batch's own files"
    return None


def derived_name(text: str) -> str:
    """A folder name made from a prompt or file stem: words joined by '-', at most 60 characters."""
    words = re.sub(r"[^\w]+", "-", text, flags=re.UNICODE).strip("-_")
    name = words[:60].rstrip("-_") or "item"
    return name if name_problem(name) is None else "item"
