"""Planning a batch: one :class:`Item` per manifest entry, its folder, files and settings hash.

Every item lives in ``DIR/<name>/``: ``<name>.<format>`` per requested format
(``<name>_<i>.<format>`` for variant ``i`` when its batch is > 1), the latents
(``latents.npy`` + sidecar) and, written last by the driver, ``report.json``.
The report is the item's completion record: an item is *done* when its report
carries the same settings hash and every file it lists is there with the size
it lists. That is what makes reruns resumable and idempotent.

The settings hash covers what decides an item's outputs: source (for images
the file's content, so an edited picture is redone), settings, formats and
units. It leaves out how the work is computed (device, dtype, cache folder,
query batch), so a batch started on one machine can be finished on another.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .. import settings as defaults
from ..errors import ConfigError
from .manifest import MACHINE_SETTINGS, Entry, ManifestError, derived_name

log = logging.getLogger(__name__)

ITEM_REPORT = "report.json"
LATENTS_FILE = "latents.npy"
SUMMARY_FILE = "batch.json"
LOCK_FILE = "batch.lock"
# Not part of the hash: how the work is computed, not what it makes.
UNHASHED_SETTINGS = MACHINE_SETTINGS | {"query_batch"}

DONE, STALE, TODO = "done", "stale", "todo"


@dataclass
class Item:
    """One unit of batch work; plain data, so it travels to a Ray worker as it is."""

    name: str
    where: str  # the manifest row it came from, for messages
    request: defaults.Request
    settings_hash: str
    folder: Path

    @property
    def report_path(self) -> Path:
        return self.folder / ITEM_REPORT


def plan_items(
    entries: list[Entry],
    base: defaults.Request,
    out_dir: Path,
    formats: list[str],
    source: Path,
) -> list[Item]:
    """Items for ``entries`` over the batch's ``base`` request; every bad row at once.

    Raises :class:`ManifestError` (naming ``source`` and each row) for settings
    that don't validate and for names that clash.
    """
    out_dir = Path(out_dir).expanduser().absolute()
    items: list[Item] = []
    problems: list[tuple[str, str]] = []
    taken: dict[str, str] = {}  # lower-cased name -> where it was first used
    explicit = {entry.name.lower() for entry in entries if entry.name is not None}
    for entry in entries:
        name = entry.name or _unique(_default_name(entry), taken, explicit)
        if name.lower() in taken:
            problems.append(
                (entry.where, f"the name {name!r} is used by {taken[name.lower()]} too")
            )
            continue
        taken[name.lower()] = entry.where
        folder = out_dir / name
        request = _item_request(entry, base, folder, name, formats)
        try:
            request.validate()
        except ConfigError as error:
            problems.append((entry.where, str(error).rstrip(".")))
            continue
        items.append(Item(name, entry.where, request, settings_hash(request), folder))
    if problems:
        raise ManifestError(source, problems)
    return items


def _default_name(entry: Entry) -> str:
    if entry.image is not None:
        return derived_name(entry.image.stem)
    return derived_name(entry.prompt or "")


def _unique(name: str, taken: dict[str, str], explicit: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``... if an earlier item (or any explicit name) has it."""
    candidate, number = name, 1
    while candidate.lower() in taken or candidate.lower() in explicit:
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def _item_request(
    entry: Entry, base: defaults.Request, folder: Path, name: str, formats: list[str]
) -> defaults.Request:
    request = copy.deepcopy(base)
    request.image, request.prompt = entry.image, entry.prompt
    # An explicit name also names the object in the files; otherwise it stays the
    # image's stem or the prompt, as in a single generate.
    request.name = entry.name
    for section, values in entry.overrides.items():
        target = request if section == "request" else getattr(request, section)
        for key, value in values.items():
            setattr(target, key, value)
    request.outputs = [folder / f"{name}.{fmt}" for fmt in formats]
    request.latents_out = folder / LATENTS_FILE
    request.save_input = None
    request.report_path = None  # the driver writes the report: it records completion
    return request


def settings_hash(request: defaults.Request) -> str:
    """SHA-256 of what decides the item's outputs (see the module docstring)."""
    settings = request.settings_dict()
    for section in ("generation", "image_settings", "mesh"):
        settings[section] = {
            k: v for k, v in settings[section].items() if k not in UNHASHED_SETTINGS
        }
    document = {
        "settings": settings,
        "name": request.name,
        "preprocess": request.preprocess,
        "units": request.units,
        "outputs": [Path(path).name for path in request.outputs],
        "image_sha256": _file_digest(request.image) if request.image is not None else None,
    }
    text = json.dumps(document, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_digest(path: Any) -> Optional[str]:
    try:
        with open(path, "rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError:
        return None  # reading fails again at run time, where it becomes the item's failure


def read_item_report(item: Item) -> Optional[dict[str, Any]]:
    """The item's report if it parses and has a farm record, else None."""
    try:
        document = json.loads(item.report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("farm"), dict):
        return None
    return document


def item_state(item: Item) -> str:
    """``DONE`` (report with this hash, every listed file whole), ``STALE`` (finished with
    other settings) or ``TODO``."""
    document = read_item_report(item)
    if document is None:
        return TODO
    farm = document["farm"]
    if farm.get("settings_hash") != item.settings_hash:
        return STALE
    files = farm.get("files")
    if not isinstance(files, dict) or not files:
        return TODO
    for relative, size in files.items():
        try:
            if (item.folder / relative).stat().st_size != size:
                return TODO
        except OSError:
            return TODO
    return DONE
