"""What the server and its client agree on: routes, job settings, states, archive, errors.

Settings travel as one flat JSON object whose keys are the field names of
``Request`` and its settings sections (``steps``, ``seed``, ``guidance``,
``batch``, ``grid_size``, ``target_faces``, ``border``, ``units``, ...), the
names the CLI's flags and the Python API use. A key that names a section
(``"mesh": {...}``) is accepted too. Both forms end in ``Request.from_dict``
and ``Request.validate``: one validation for every entry point. Values are
type-checked against the dataclass annotations first, because JSON can carry
a string where ``validate`` expects a number.

Two wire-only keys: ``outputs`` (the file names to write, e.g.
``["chair.glb", "chair.step"]``: base names only, the suffix picks the
format; a GLB is always made) and ``save_input`` (``true``: the archive also
holds the image the model saw). The client writes the files it gets back to
its own paths; names are only names on the server, inside the job's folder.

Server-owned settings (the model, device, precision, download policy and the
decoding batch) may be sent but are replaced by the server's: its model wins
over a client's. The image limits (``max_file_bytes``, ``max_pixels``) can be
lowered by a client, never raised past the server's.
"""

from __future__ import annotations

import math
import re
import typing
import unicodedata
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

from .. import errors
from ..errors import ConfigError, Img3DError
from ..settings import GenerationSettings, ImageSettings, MeshSettings, Request

API_PREFIX = "/v1"
HEALTH_PATH = f"{API_PREFIX}/health"
JOBS_PATH = f"{API_PREFIX}/jobs"
OPENAPI_PATH = f"{API_PREFIX}/openapi.json"

QUEUED, RUNNING, FINISHED, FAILED, CANCELLED = (
    "queued",
    "running",
    "finished",
    "failed",
    "cancelled",
)
FINAL_STATES = frozenset({FINISHED, FAILED, CANCELLED})
JOB_STATES = (QUEUED, RUNNING, FINISHED, FAILED, CANCELLED)

JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")

# The result archive (a zip): result document + arrays, latents, report, files.
ARCHIVE_DOCUMENT = "result.json"
ARCHIVE_ARRAYS = "arrays.npz"
ARCHIVE_LATENTS = "latents.npy"
ARCHIVE_REPORT = "report.json"
ARCHIVE_INPUT = "input.png"
BYTES_PREFIX = "bytes:"  # npz keys of bytes payloads (npz holds arrays only)

# Multipart field names of POST /v1/jobs.
IMAGE_FIELD = "image"
SETTINGS_FIELD = "settings"

WIRE_ONLY = ("outputs", "save_input")
MAX_OUTPUTS = 16
MAX_NAME_LENGTH = 100
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {
    f"{port}{digit}" for port in ("COM", "LPT") for digit in "123456789"
}
SERVER_OWNED = frozenset(
    {
        "model",
        "revision",
        "cache_dir",
        "allow_download",
        "device",
        "dtype",
        "query_batch",
    }
)
_SECTIONS: dict[str, type] = {
    "generation": GenerationSettings,
    "image_settings": ImageSettings,
    "mesh": MeshSettings,
}
_TOP_LEVEL = ("name", "preprocess", "units")  # Request fields that are plain settings


def _field_hints() -> dict[str, tuple[Optional[str], Any]]:
    """Flat setting name -> (section or None, annotated type), from the dataclasses."""
    table: dict[str, tuple[Optional[str], Any]] = {}
    for section, cls in _SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            assert f.name not in table, f"setting {f.name} is in two sections"
            table[f.name] = (section, hints[f.name])
    request_hints = typing.get_type_hints(Request)
    for name in _TOP_LEVEL:
        assert name not in table
        table[name] = (None, request_hints[name])
    return table


FIELD_HINTS = _field_hints()
SETTING_NAMES = tuple(sorted(FIELD_HINTS))
CLIENT_SETTING_NAMES = tuple(n for n in SETTING_NAMES if n not in SERVER_OWNED)


def _type_name(hint: Any) -> str:
    return {int: "a whole number", float: "a number", bool: "true or false", str: "text"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def check_value(name: str, value: Any, hint: Any) -> Any:
    """``value`` if it has the annotated type (ints pass for floats), else a ConfigError."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        hint = next(arg for arg in args if arg is not type(None))
    wrong = ConfigError(f"Setting '{name}' must be {_type_name(hint)}, got {value!r}.")
    if hint is bool:
        if not isinstance(value, bool):
            raise wrong
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        if not math.isfinite(value):
            raise ConfigError(f"Setting '{name}' must be a finite number, got {value!r}.")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise wrong
    return value


def request_from_settings(
    settings: Any, *, prompt: Optional[str] = None, image: Any = None
) -> tuple[Request, dict[str, Any]]:
    """A Request from wire settings plus the wire-only options; unknown keys are refused.

    The request is not validated here (the server replaces its own settings
    first, then calls ``validate``).
    """
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise ConfigError(
            f"'settings' must be a JSON object of settings, got {type(settings).__name__}."
        )
    data: dict[str, Any] = {section: {} for section in _SECTIONS}
    options: dict[str, Any] = {"outputs": [], "save_input": False}
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"'{key}' must be a JSON object of settings.")
            for inner, inner_value in value.items():
                if FIELD_HINTS.get(inner, (None,))[0] != key:
                    raise ConfigError(_unknown(f"{key}.{inner}"))
                flat[inner] = inner_value
        elif key in WIRE_ONLY:
            options[key] = value
        elif key in FIELD_HINTS:
            flat[key] = value
        else:
            raise ConfigError(_unknown(key))
    for key, value in flat.items():
        section, hint = FIELD_HINTS[key]
        value = check_value(key, value, hint)
        (data[section] if section else data)[key] = value
    options["outputs"] = _check_outputs(options["outputs"])
    if not isinstance(options["save_input"], bool):
        raise ConfigError("Setting 'save_input' must be true or false.")
    data["prompt"] = prompt
    request = Request.from_dict(data)
    request.image = image
    return request, options


def _unknown(key: str) -> str:
    return (
        f"Unknown setting {key!r}: known ones are {', '.join(CLIENT_SETTING_NAMES)} "
        f"(and {', '.join(WIRE_ONLY)})."
    )


def _check_outputs(names: Any) -> list[str]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError("Setting 'outputs' must be a list of file names, e.g. ['chair.glb'].")
    if len(names) > MAX_OUTPUTS:
        raise ConfigError(f"Setting 'outputs' takes at most {MAX_OUTPUTS} file names.")
    return [safe_filename(name, fallback="result") for name in names]


def safe_filename(raw: Optional[str], fallback: str = "image") -> str:
    """A client's file name as a harmless base name: letters, digits, ``._- ()`` only.

    No folders, no ``..``, no control or path characters, no Windows device
    names; used only as a name inside a job's own folder.
    """
    name = unicodedata.normalize("NFC", raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c if c.isalnum() or c in "._- ()" else "_" for c in name).strip(" .")
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    suffix = suffix[:10]
    stem = stem[: MAX_NAME_LENGTH - len(suffix) - 1].strip(" .")
    if not stem or stem.split(".")[0].upper() in _WINDOWS_DEVICES:
        stem = fallback
    return f"{stem}.{suffix}" if suffix else stem


def settings_from_request(request: Request) -> dict[str, Any]:
    """The flat wire settings of ``request``: everything a client decides, nothing it can't."""
    plain = request.to_dict()
    settings: dict[str, Any] = {}
    for name in CLIENT_SETTING_NAMES:
        section, _hint = FIELD_HINTS[name]
        settings[name] = plain[section][name] if section else plain[name]
    settings["outputs"] = [Path(out).name for out in request.outputs]
    settings["save_input"] = request.save_input is not None
    return settings


# --- errors -------------------------------------------------------------------
def error_body(error: BaseException) -> dict[str, str]:
    """The JSON body of every error response: the one line a user sees, and its type."""
    kind = type(error).__name__ if isinstance(error, Img3DError) else "ServerError"
    return {"error": str(error), "type": kind}


def error_from_body(body: Any, fallback: str) -> Img3DError:
    """The typed error a server's JSON error body describes (ServerError if unknown)."""
    message = body.get("error") if isinstance(body, dict) else None
    kind = body.get("type") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message:
        message = fallback
    cls = getattr(errors, kind, None) if isinstance(kind, str) else None
    if isinstance(cls, type) and issubclass(cls, Img3DError):
        return cls(message)
    return errors.ServerError(message)
