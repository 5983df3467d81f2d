"""The environments of the Blender matrix, made once and cached outside the clone.

- One venv per Blender line with only ``bpy==<line's newest>`` from PyPI, which brings
  what Blender bundles (numpy, requests, Cython, zstandard, ...) and nothing else.
  cp311 lines use this machine's Python 3.11, cp313 lines pyenv's 3.13.0.
- One wheelhouse per ABI made from the pinned lists (``core/system/requirements.py``)
  with ``pip download --only-binary --no-deps`` for Linux x86-64: what the add-on's
  own installer installs from (``--wheelhouse``), offline. torch 2.13.0 is the CPU
  build on this disk for cp311; there is none for cp313 here (PyPI's Linux cp313
  torch is the CUDA build with its NVIDIA libraries, several GB), so the cp313
  wheelhouse holds the libraries only.

The cache is ``$IMG3D_MATRIX_CACHE`` or ``~/.cache/blender_img3d/matrix``; each
folder is rebuilt when what it was made from changes (a stamp holds the inputs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from blender_img3d.core.system.requirements import (
    BLENDER_LINES,
    BLENDER_NUMPY,
    LIBRARY_PINS,
    PLATFORM_TAGS,
    SUPPORTED_PYTHONS,
    TORCH_DEPENDENCIES,
    TORCH_REQUIREMENT,
)
from tests.fixtures.platforms import applicable, environment

STAMP = ".img3d-matrix.json"
PIP_TIMEOUT = 1800


class UnavailableError(Exception):
    """An environment can't be made here (no such Python, no network): skip with this."""


def cache_root() -> Path:
    root = os.environ.get("IMG3D_MATRIX_CACHE") or Path.home() / ".cache/blender_img3d/matrix"
    return Path(root)


def python_version(abi: str) -> tuple[int, int]:
    """(major, minor) of the Python whose wheels carry the ABI tag ``abi``."""
    return next(version for version, tag in SUPPORTED_PYTHONS.items() if tag == abi)


def python_for(abi: str) -> Path:
    """The interpreter a line's venv is made with: 3.11 here, 3.13 from pyenv."""
    if sys.version_info[:2] == python_version(abi):
        return Path(sys.executable).resolve()
    version = "%d.%d" % python_version(abi)
    roots = [Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        roots.insert(
            0, Path(subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip())
        )
    candidates: list = []
    for root in roots:
        candidates += sorted(root.glob(f"versions/{version}.*/bin/python3"), reverse=True)
    candidates.append(shutil.which(f"python{version}"))  # may be a shim that can't run it
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            runs = subprocess.run([str(candidate), "-c", "import venv"], capture_output=True)
            if runs.returncode == 0:
                return Path(candidate)
    raise UnavailableError(
        f"no Python {version} on this machine (pyenv install {version}.0 adds it)"
    )


def _stamped(folder: Path, inputs: dict) -> bool:
    try:
        return json.loads((folder / STAMP).read_text()) == inputs
    except (OSError, ValueError):
        return False


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        env=env,
    )


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def bare_blender(line: str) -> Path:
    """The Python of a venv holding only this line's ``bpy`` (and what it brings)."""
    version, abi = BLENDER_LINES[line]
    venv = cache_root() / f"bpy-{version}"
    # The numpy Blender bundles: bpy 4.2's wheel leaves numpy unpinned, and pip's newest
    # numpy 2 is not what a Blender 4.2 artist has.
    numpy = BLENDER_NUMPY[abi]
    inputs = {"bpy": version, "abi": abi, "numpy": numpy}
    if _stamped(venv, inputs):
        return venv_python(venv)
    base = python_for(abi)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([str(base), "-m", "venv", str(venv)], check=True, timeout=300)
    done = _pip(venv_python(venv), "install", "-q", "--only-binary=:all:", f"bpy=={version}", numpy)
    if done.returncode != 0:
        raise UnavailableError(f"bpy=={version} could not be installed: {done.stderr[-600:]}")
    (venv / STAMP).write_text(json.dumps(inputs))
    return venv_python(venv)


def library_pins(abi: str, platform: str = "linux-x64") -> list[str]:
    """The pinned libraries whose markers hold on ``platform`` (markers dropped)."""
    return applicable(LIBRARY_PINS[abi], environment(platform, python_version(abi)))


def torch_available(abi: str) -> bool:
    """Whether this machine has a CPU torch wheel for ``abi`` (pip's --find-links folders)."""
    return abi == "cp311"


def wheelhouse(abi: str) -> Path:
    """A folder of every wheel the add-on's installer needs for ``abi`` on Linux x86-64."""
    # torch's dependencies are the libraries' too (filelock, fsspec, typing-extensions).
    wanted = [*library_pins(abi), *TORCH_DEPENDENCIES, BLENDER_NUMPY[abi]]
    if torch_available(abi):
        wanted.append(TORCH_REQUIREMENT)
    inputs = {"abi": abi, "wheels": sorted(wanted)}
    key = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:12]
    folder = cache_root() / f"wheelhouse-{abi}-{key}"
    if _stamped(folder, inputs):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    python = "%d.%d" % python_version(abi)
    platforms = [arg for tag in PLATFORM_TAGS["linux-x64"] for arg in ("--platform", tag)]
    done = _pip(
        Path(sys.executable),
        "download", "-q", "--no-deps", "--only-binary=:all:", "--dest", str(folder),
        "--python-version", python, "--implementation", "cp", *platforms, *wanted,
    )  # fmt: skip
    if done.returncode != 0:
        raise UnavailableError(f"the {abi} wheelhouse could not be made: {done.stderr[-800:]}")
    (folder / STAMP).write_text(json.dumps(inputs))
    return folder
