"""The matrix covers the newest Blender: PyPI's newest ``bpy`` line is in ``BLENDER_LINES``.

Blender releases a line every few months; the manifest sets no maximum version, so
the add-on installs in a line as soon as it exists. This fails the day PyPI has a
``bpy`` line (or a newer patch of the newest line) the matrix doesn't run.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from blender_img3d.core.system.requirements import BLENDER_LINES, SUPPORTED_PYTHONS

PYPI_JSON = "https://pypi.org/pypi/bpy/json"

pytestmark = pytest.mark.network


def released_versions() -> list[tuple[int, ...]]:
    try:
        with urllib.request.urlopen(PYPI_JSON, timeout=15) as response:
            releases = json.load(response)["releases"]
    except OSError as exc:
        pytest.skip(f"PyPI ({PYPI_JSON}) is unreachable ({exc}): run again online")
    versions = []
    for text, files in releases.items():
        if files and text.replace(".", "").isdigit() and not all(f.get("yanked") for f in files):
            versions.append(tuple(int(part) for part in text.split(".")))
    return sorted(versions)


def test_the_newest_bpy_on_pypi_is_a_line_of_the_matrix():
    newest = released_versions()[-1]
    line = f"{newest[0]}.{newest[1]}"
    assert line in BLENDER_LINES, (
        f"bpy {'.'.join(map(str, newest))} is on PyPI but Blender {line} is not in "
        "BLENDER_LINES (core/system/requirements.py): add it and run pytest -m blender_matrix"
    )
    pinned = tuple(int(part) for part in BLENDER_LINES[line][0].split("."))
    assert pinned == newest, f"the matrix runs {line} as {pinned}, PyPI's newest is {newest}"


def test_every_line_runs_a_supported_python():
    assert {abi for _, abi in BLENDER_LINES.values()} == set(SUPPORTED_PYTHONS.values())
