#!/usr/bin/env python3
"""Build the installable extension zip with Blender's own builder, then validate it.

Stages ``blender_img3d/`` plus the top-level ``blender_manifest.toml`` in a
temporary folder (an extension zip wants the manifest beside ``__init__.py``),
runs ``blender_ext.py build`` from the bpy wheel with Blender's list of valid
tags, then ``blender_ext.py validate`` on the zip. Exits non-zero with the
validator's message when either step fails.

    .venv/bin/python tools/build_extension.py [--output-dir dist]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO_ROOT / "blender_img3d"
MANIFEST = REPO_ROOT / "blender_manifest.toml"


class BuildError(Exception):
    """The builder or the validator refused the package."""


def blender_scripts_dir() -> Path:
    """Where the bpy wheel keeps Blender's bundled scripts (found without importing bpy)."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError(
            "The bpy wheel is not installed in this Python: run 'python3 vendor_install.py --dev' "
            "and use .venv/bin/python."
        )
    bpy_dir = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(bpy_dir.glob("*/scripts"))
    if not candidates:
        raise BuildError(f"No Blender scripts folder found under {bpy_dir}.")
    return candidates[-1]


def extension_tool() -> Path:
    return blender_scripts_dir() / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"


def valid_tags_file() -> Path:
    return blender_scripts_dir() / "modules" / "_bpy_internal" / "extensions" / "tags.py"


def manifest_version(manifest: Path = MANIFEST) -> str:
    with manifest.open("rb") as fh:
        return tomllib.load(fh)["version"]


def stage_package(stage: Path) -> Path:
    """Copy the package and the manifest into ``stage/blender_img3d``."""
    target = stage / "blender_img3d"
    shutil.copytree(
        PACKAGE_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    )
    shutil.copy2(MANIFEST, target / "blender_manifest.toml")
    return target


def run_tool(*args: str) -> str:
    command = [sys.executable, str(extension_tool()), *args]
    completed = subprocess.run(command, capture_output=True, text=True)
    output = (completed.stdout + completed.stderr).strip()
    if completed.returncode != 0 or "FATAL_ERROR" in output or output.startswith("Error"):
        raise BuildError(output or f"{command[2]} failed with exit code {completed.returncode}")
    return output


def validate(path: Path) -> str:
    """Run Blender's validator on a package folder or zip; raise BuildError with its message."""
    return run_tool("validate", f"--valid-tags={valid_tags_file()}", str(path))


def build(output_dir: Path) -> Path:
    """Build ``output_dir/blender_img3d-<version>.zip`` and validate it; return its path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    zip_path = output_dir / f"blender_img3d-{manifest_version()}.zip"
    with tempfile.TemporaryDirectory(prefix="img3d-build-") as tmp:
        source = stage_package(Path(tmp))
        validate(source)
        run_tool(
            "build",
            f"--source-dir={source}",
            f"--output-filepath={zip_path}",
            f"--valid-tags={valid_tags_file()}",
        )
    validate(zip_path)
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build and validate the Blender extension zip.")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "dist")
    args = parser.parse_args(argv)
    try:
        zip_path = build(args.output_dir)
    except BuildError as exc:
        print(f"build_extension: error: {exc}", file=sys.stderr)
        return 1
    print(f"built and validated {zip_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
