#!/usr/bin/env python3
"""Install blender_img3d's dependencies: a development venv, or Blender's runtime folder.

Development (from the repo root, with Python 3.11, the version bpy 5.0 is built for)::

    python3 vendor_install.py --dev

creates or updates ``.venv/`` with pinned runtime, Blender (bpy) and test
packages, plus the Khronos glTF validator (npm) under ``.venv/npm``. A second
run with nothing changed only checks a stamp and returns in well under a second.

Blender (the extension installed and enabled; Blender's own Python runs this)::

    blender -b --python vendor_install.py -- [--cpu | --cuda] [--torch-index-url URL]

installs the runtime packages with ``pip --target`` into the extension's user
folder (``extension_path_user(<package>, "vendor")``), numpy pinned to the
version Blender ships, without touching Blender's site-packages. The
preferences' "Install Dependencies" button runs the same code
(``blender_img3d/core/vendor.py``) in a subprocess.

Both modes read the one requirement list (``core/requirements.py``), so the
add-on in Blender runs on exactly what the tests ran on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
VENV_DIR = REPO_ROOT / ".venv"
NPM_DIR = VENV_DIR / "npm"
STAMP_FILE = VENV_DIR / ".img3d-install.json"
EXTENSION_ID = "blender_img3d"

sys.path.insert(0, str(REPO_ROOT))
from blender_img3d.core.system import vendor  # noqa: E402
from blender_img3d.core.system.requirements import (  # noqa: E402  (the one shared list)
    DEBIAN_DEV_PACKAGES,
    DEV_REQUIREMENTS,
    NPM_REQUIREMENTS,
    NUMPY_REQUIREMENT,
    RUNTIME_REQUIREMENTS,
)
from blender_img3d.core.system.vendor import (  # noqa: E402  (shared with the Blender mode)
    REQUIRED_PYTHON,
    InstallError,
    check_network,
    check_python,
)

__all__ = ["InstallError", "check_network", "check_python"]


def log(message: str) -> None:
    print(f"[vendor_install] {message}", flush=True)


def dev_requirements() -> list[str]:
    """The full pinned list for the development venv."""
    return [*RUNTIME_REQUIREMENTS, NUMPY_REQUIREMENT, *DEV_REQUIREMENTS]


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


def install_debian_tools() -> None:
    """Third-party readers the tests call (assimp), from Debian, when apt-get is there."""
    missing = [pkg for pkg, tool in DEBIAN_DEV_PACKAGES.items() if shutil.which(tool) is None]
    if not missing:
        return
    apt = shutil.which("apt-get")
    if apt is None:
        log(f"apt-get not found: skipping {', '.join(missing)} (tests needing them will skip)")
        return
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    try:
        run([*sudo, apt, "install", "-y", "-q", *missing])
    except InstallError as error:
        log(f"could not install {', '.join(missing)} ({error}); tests needing them will skip")


def dev_install(force: bool = False) -> None:
    """Create or update ``.venv`` with everything development and tests need."""
    check_python()
    install_debian_tools()
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


def installed_extension_package() -> str:
    """The module name of the installed extension (``bl_ext.user_default.blender_img3d``)."""
    import addon_utils
    import bpy

    for name in bpy.context.preferences.addons.keys():
        if name.rsplit(".", 1)[-1] == EXTENSION_ID:
            return name
    for module in addon_utils.modules(refresh=False):
        if module.__name__.rsplit(".", 1)[-1] == EXTENSION_ID:
            return module.__name__
    raise InstallError(
        f"The {EXTENSION_ID} extension is not installed in this Blender: install it first "
        "(Preferences > Get Extensions > Install from Disk), then run this again."
    )


def blender_plan(
    package: str | None = None, variant: str = "cpu", torch_index_url: str | None = None
) -> vendor.InstallPlan:
    """The install plan for the running Blender: its vendor folder and its numpy version."""
    import bpy

    package = package or installed_extension_package()
    try:
        target = bpy.utils.extension_path_user(package, path="vendor", create=True)
    except ValueError as exc:
        raise InstallError(f"{package} is not an extension module: {exc}") from exc
    return vendor.make_plan(
        target,
        numpy_version=vendor.running_numpy_version(),
        variant=variant,
        torch_index_url=torch_index_url,
    )


def blender_install(argv: list[str]) -> None:
    """Blender mode: install the runtime packages into the extension's vendor folder."""
    args = parse_blender_args(argv)
    plan = blender_plan(args.package, args.variant, args.torch_index_url)
    log(f"{plan.variant.upper()} build of torch into {plan.vendor_dir}")
    log(f"numpy pinned to Blender's {plan.constraints[0]}")
    if args.dry_run:
        log("would run: " + " ".join(plan.pip_command(sys.executable, Path("constraints.txt"))))
        return
    installed = vendor.install(plan, force=args.force, output=log)
    log("done" if installed else "already up to date (use --force to reinstall)")


def running_in_blender() -> bool:
    """True when Blender's own Python runs this (``blender --python``), not the bpy wheel."""
    return "bpy" in sys.modules


def parse_blender_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="blender -b --python vendor_install.py --",
        description="Install the runtime packages into the extension's vendor folder.",
    )
    vendor.add_torch_build_options(parser)
    parser.add_argument("--package", help="the add-on module (default: found automatically)")
    parser.add_argument("--force", action="store_true", help="reinstall even if up to date")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, install nothing")
    return parser.parse_args(argv)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", action="store_true", help="create/update the development .venv")
    parser.add_argument("--force", action="store_true", help="reinstall even if up to date")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        if argv is None and running_in_blender():
            # Blender passes its own options first; ours follow "--".
            ours = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
            blender_install(ours)
            return 0
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if args.dev:
            dev_install(force=args.force)
        else:
            raise InstallError(
                "Nothing to do: pass --dev to set up the development environment, or run "
                "'blender -b --python vendor_install.py -- --cpu' to install into Blender."
            )
    except InstallError as exc:
        print(f"vendor_install: error: {exc}", file=sys.stderr)
        return 1
    except vendor.CancelledError as exc:
        print(f"vendor_install: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("vendor_install: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    code = main()
    if not running_in_blender():
        sys.exit(code)
    elif code:
        # Blender carries on after a failed script; leave with the code explicitly.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
