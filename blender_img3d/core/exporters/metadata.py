"""What every exported file says about where it came from: generator name and settings."""

from __future__ import annotations

import json
import math
from typing import Any

from ..version import __version__


def generator_name() -> str:
    """``"blender_img3d <version>"``, written into every file's generator field."""
    return f"blender_img3d {__version__}"


def json_safe(value: Any) -> Any:
    """``value`` reduced to plain JSON data: NaN/inf become None, unknown objects their str().

    Metadata is meant to be JSON-serialisable already; this keeps one odd value
    (a Path, a numpy scalar) from failing an export that is otherwise fine.
    """
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if callable(getattr(value, "tolist", None)):  # numpy scalars and arrays
        return json_safe(value.tolist())
    return str(value)


def metadata_json(metadata: dict[str, Any]) -> str:
    """One-line JSON of the metadata, for text formats' comments and headers."""
    return json.dumps(json_safe(metadata), ensure_ascii=False, sort_keys=True, allow_nan=False)
