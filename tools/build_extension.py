#!/usr/bin/env python3
"""Build the installable extension zips with Blender's own builder, then validate them.

Stages ``blender_img3d/`` plus the top-level ``blender_manifest.toml`` in a
temporary folder (an extension zip wants the manifest beside ``__init__.py``),
adds the wheels the exporters and mesh tools need (``BUNDLED_WHEELS`` in
``core/system/requirements.py``: compiled ones per Python and platform, pure
ones once) under ``wheels/`` and lists them in the staged manifest's
``wheels = [...]``, then runs ``blender_ext.py build --split-platforms`` from
the bpy wheel: one zip per platform, each holding only its own wheels, so OBJ,
DXF, STEP and GLB export work right after "Install from Disk", with no
Install Dependencies. Every zip is checked with ``blender_ext.py validate``.

Wheels are downloaded once into ``build/wheels`` (``pip download
--only-binary=:all: --no-deps`` for each target); later builds reuse them
without any network.

    .venv/bin/python tools/build_extension.py [--output-dir dist] [--platform linux-x64 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO_ROOT / "blender_img3d"
MANIFEST = REPO_ROOT / "blender_manifest.toml"
WHEEL_CACHE = REPO_ROOT / "build" / "wheels"

sys.path.insert(0, str(REPO_ROOT))
from blender_img3d.core.system.requirements import (  # noqa: E402  (the one list)
    BINARY_BUNDLED_WHEELS,
    BUNDLED_WHEELS,
    PLATFORM_TAGS,
    SUPPORTED_PYTHONS,
    name_of,
)

PYPI = "https://pypi.org/simple"


class BuildError(Exception):
    """The builder or the validator refused the package, or a wheel is unavailable."""


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


def manifest_data(manifest: Path = MANIFEST) -> dict:
    with manifest.open("rb") as fh:
        return tomllib.load(fh)


def manifest_version(manifest: Path = MANIFEST) -> str:
    return manifest_data(manifest)["version"]


def this_platform() -> str:
    """Blender's name for the platform this build runs on (``linux-x64``...)."""
    tag = sysconfig.get_platform()
    if tag.startswith("win"):
        return "windows-x64"
    if tag.startswith("macosx"):
        return "macos-arm64" if tag.endswith("arm64") else "macos-x64"
    return "linux-" + ("x64" if tag.endswith("x86_64") else tag.rsplit("-", 1)[-1])


# --- wheels ------------------------------------------------------------------------


def _pip_download(dest: Path, requirements: list[str], target_args: list[str]) -> list[str]:
    """Download ``requirements`` for the target into ``dest``; return the new file names."""
    before = set(os.listdir(dest))
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "-q",
        "--only-binary=:all:",
        "--no-deps",
        "--dest",
        str(dest),
        *target_args,
        *requirements,
    ]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise BuildError(
            f"Couldn't download the bundled wheels {' '.join(requirements)} for "
            f"{' '.join(target_args)}: {completed.stderr.strip()[-400:]} (needs PyPI once; later "
            f"builds reuse {dest})."
        )
    new = sorted(set(os.listdir(dest)) - before)
    # pip names what it reused ("File was already downloaded") nowhere; match by name.
    wanted = {name_of(req).replace("-", "_") for req in requirements}
    return new or sorted(
        name
        for name in os.listdir(dest)
        if name.endswith(".whl") and name.split("-")[0].lower() in wanted
    )


def wheel_targets(platforms: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """``(key, requirements, pip target options)`` for every download the platforms need."""
    binary = [req for req in BUNDLED_WHEELS if name_of(req) in BINARY_BUNDLED_WHEELS]
    pure = [req for req in BUNDLED_WHEELS if name_of(req) not in BINARY_BUNDLED_WHEELS]
    targets = [
        (
            "pure",
            pure,
            ["--platform", "any", "--implementation", "py", "--abi", "none"]
            + ["--python-version", "3.11"],
        )
    ]
    for platform in platforms:
        for (major, minor), abi in SUPPORTED_PYTHONS.items():
            options = ["--python-version", f"{major}.{minor}", "--implementation", "cp"]
            for tag in PLATFORM_TAGS[platform]:
                options += ["--platform", tag]
            targets.append((f"{abi}-{platform}", binary, options))
    return targets


def bundled_wheels(platforms: list[str], cache: Path = WHEEL_CACHE) -> list[Path]:
    """The wheel files for ``platforms``, downloaded into ``cache`` unless already there."""
    cache.mkdir(parents=True, exist_ok=True)
    index_file = cache / "index.json"
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}
    files: list[Path] = []
    for key, requirements, options in wheel_targets(platforms):
        entry = index.get(key, {})
        names = entry.get("files", [])
        if entry.get("requirements") != requirements or not all(
            (cache / name).is_file() for name in names
        ):
            names = _pip_download(cache, requirements, ["--index-url", PYPI, *options])
            if len(names) != len(requirements):
                raise BuildError(f"Expected {len(requirements)} wheels for {key}, got {names}.")
            index[key] = {"requirements": requirements, "files": names}
            index_file.write_text(json.dumps(index, indent=1))
        files += [cache / name for name in names]
    return files


# --- staging and building -----------------------------------------------------------


def staged_manifest_text(text: str, wheels: list[str], platforms: list[str]) -> str:
    """The manifest with ``wheels`` listed and ``platforms`` narrowed to those being built."""
    listed = ", ".join(f'"{platform}"' for platform in platforms)
    text, count = re.subn(r"(?m)^platforms\s*=\s*\[[^\]]*\]", f"platforms = [{listed}]", text)
    if count != 1:
        raise BuildError("blender_manifest.toml needs one 'platforms = [...]' line.")
    if wheels:
        lines = "".join(f'  "./wheels/{name}",\n' for name in wheels)
        text = text.replace("\n[permissions]", f"\nwheels = [\n{lines}]\n\n[permissions]", 1)
    return text


def stage_package(stage: Path, wheels: list[Path] = (), platforms: list[str] = ()) -> Path:
    """Copy the package, the wheels and the (completed) manifest into ``stage/blender_img3d``."""
    target = stage / "blender_img3d"
    shutil.copytree(
        PACKAGE_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    )
    if wheels:
        (target / "wheels").mkdir()
        for wheel in wheels:
            shutil.copy2(wheel, target / "wheels" / wheel.name)
    text = MANIFEST.read_text()
    platforms = list(platforms) or list(manifest_data()["platforms"])
    (target / "blender_manifest.toml").write_text(
        staged_manifest_text(text, [w.name for w in wheels], platforms)
    )
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


def build(
    output_dir: Path, platforms: list[str] | None = None, *, with_wheels: bool = True
) -> list[Path]:
    """Build ``blender_img3d-<version>-<platform>.zip`` per platform, validated; return them."""
    supported = list(manifest_data()["platforms"])
    platforms = list(platforms or supported)
    unknown = sorted(set(platforms) - set(supported))
    if unknown:
        raise BuildError(f"Unsupported platform(s) {unknown}: the manifest lists {supported}.")
    output_dir.mkdir(parents=True, exist_ok=True)
    wheels = bundled_wheels(platforms) if with_wheels else []
    version = manifest_version()
    with tempfile.TemporaryDirectory(prefix="img3d-build-") as tmp:
        source = stage_package(Path(tmp), wheels, platforms)
        validate(source)
        run_tool(
            "build",
            f"--source-dir={source}",
            f"--output-dir={output_dir}",
            f"--valid-tags={valid_tags_file()}",
            "--split-platforms",
        )
    zips = []
    for platform in platforms:
        path = output_dir / f"blender_img3d-{version}-{platform.replace('-', '_')}.zip"
        if not path.is_file():
            found = sorted(p.name for p in output_dir.glob("*.zip"))
            raise BuildError(f"The builder wrote no zip for {platform} (found {found}).")
        validate(path)
        zips.append(path)
    return zips


def build_for_this_platform(output_dir: Path) -> Path:
    """The one zip Blender on this machine installs (what the Blender tests use)."""
    return build(output_dir, [this_platform()])[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build and validate the Blender extension zips.")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "dist")
    parser.add_argument(
        "--platform",
        action="append",
        help="build only this platform (repeatable; default: every one in the manifest)",
    )
    args = parser.parse_args(argv)
    try:
        zips = build(args.output_dir, args.platform)
    except BuildError as exc:
        print(f"build_extension: error: {exc}", file=sys.stderr)
        return 1
    for path in zips:
        print(f"built and validated {path} ({path.stat().st_size / 1024**2:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
