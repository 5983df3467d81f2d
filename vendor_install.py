#!/usr/bin/env python3
"""Install blender_img3d's dependencies: a development venv, or Blender's runtime folder.

Development (from the repo root, with Python 3.11, the version bpy 5.0 is built for)::

    python3 vendor_install.py --dev

creates or updates ``.venv/`` with pinned runtime, Blender (bpy) and test
packages, plus the Khronos glTF validator (npm) under ``.venv/npm``. A second
run with nothing changed only checks a stamp and returns in well under a second.

Both modes read the one requirement list below (``RUNTIME_REQUIREMENTS``), so
the add-on in Blender runs on exactly what the tests ran on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
VENV_DIR = REPO_ROOT / ".venv"
NPM_DIR = VENV_DIR / "npm"
STAMP_FILE = VENV_DIR / ".img3d-install.json"
REQUIRED_PYTHON = (3, 11)

sys.path.insert(0, str(REPO_ROOT))
from blender_img3d.core.requirements import (  # noqa: E402  (the one shared list)
    DEV_REQUIREMENTS,
    NPM_REQUIREMENTS,
    NUMPY_REQUIREMENT,
    RUNTIME_REQUIREMENTS,
)

PYPI_PROBE_URL = "https://pypi.org/simple/pip/"


class InstallError(Exception):
    """Something the user has to fix before the install can go on."""


def log(message: str) -> None:
    print(f"[vendor_install] {message}", flush=True)


def dev_requirements() -> list[str]:
    """The full pinned list for the development venv."""
    return [*RUNTIME_REQUIREMENTS, NUMPY_REQUIREMENT, *DEV_REQUIREMENTS]


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:2])) -> None:
    if tuple(version[:2]) != REQUIRED_PYTHON:
        want = ".".join(map(str, REQUIRED_PYTHON))
        got = ".".join(map(str, version[:3]))
        raise InstallError(
            f"Python {want} is required (bpy 5.0 is built for it), but this is Python {got}. "
            f"Run the script with python{want}, e.g. 'python{want} vendor_install.py --dev'."
        )


def check_network(url: str = PYPI_PROBE_URL, timeout: float = 15.0) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read(1)
    except (urllib.error.URLError, OSError) as exc:
        raise InstallError(
            f"Can't reach the Python package index ({url}): {exc}. "
            "Connect to the network (or configure pip's index/proxy) and run again."
        ) from exc


def venv_python(venv: Path = VENV_DIR) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def install_fingerprint(requirements: list[str], npm: tuple[str, ...]) -> str:
    payload = json.dumps({"pip": requirements, "npm": list(npm), "python": REQUIRED_PYTHON})
    return hashlib.sha256(payload.encode()).hexdigest()


def stamp_matches(fingerprint: str) -> bool:
    try:
        return json.loads(STAMP_FILE.read_text())["fingerprint"] == fingerprint
    except (OSError, ValueError, KeyError):
        return False


def run(command: list[str]) -> None:
    log("$ " + " ".join(str(part) for part in command))
    completed = subprocess.run(command)
    if completed.returncode != 0:
        raise InstallError(
            f"Command failed with exit code {completed.returncode}: {command[0]} ..."
        )


def create_venv() -> None:
    if venv_python().exists():
        log(f"using the existing virtual environment {VENV_DIR}")
        return
    log(f"creating the virtual environment {VENV_DIR}")
    run([sys.executable, "-m", "venv", str(VENV_DIR)])


def install_npm_tools() -> None:
    npm = shutil.which("npm")
    if npm is None:
        log("npm not found: skipping the glTF validator (its tests will be skipped)")
        return
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(NPM_DIR), *NPM_REQUIREMENTS])


def dev_install(force: bool = False) -> None:
    """Create or update ``.venv`` with everything development and tests need."""
    check_python()
    requirements = dev_requirements()
    fingerprint = install_fingerprint(requirements, NPM_REQUIREMENTS)
    if not force and venv_python().exists() and stamp_matches(fingerprint):
        log(f"{VENV_DIR} is up to date (use --force to reinstall)")
        return
    check_network()
    create_venv()
    python = str(venv_python())
    run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--upgrade", "pip"])
    log(f"installing {len(requirements)} pinned packages")
    run([python, "-m", "pip", "install", "--disable-pip-version-check", *requirements])
    install_npm_tools()
    STAMP_FILE.write_text(json.dumps({"fingerprint": fingerprint, "requirements": requirements}))
    log("done: use .venv/bin/python")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", action="store_true", help="create/update the development .venv")
    parser.add_argument("--force", action="store_true", help="reinstall even if up to date")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.dev:
            dev_install(force=args.force)
        else:
            raise InstallError("Nothing to do: pass --dev to set up the development environment.")
    except InstallError as exc:
        print(f"vendor_install: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vendor_install: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
