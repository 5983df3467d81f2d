"""Install the runtime packages into a private folder, and put that folder on ``sys.path``.

Blender ships its own Python and numpy, and an extension must not change
Blender's site-packages. So pip installs with ``--target`` into the
extension's user folder (``extension_path_user(<package>, "vendor")``), with
numpy constrained to the version Blender imports: the compiled wheels (scipy,
scikit-image, torch) are then built against the numpy that actually runs.
The folder is *appended* to ``sys.path`` only when a job or the system check
needs the libraries (:func:`activate`), so Blender's own packages win.

This module never imports bpy: the Blender side passes in the folder and
Blender's numpy version. It also runs as a script in a subprocess of Blender's
Python (``python -m blender_img3d.core.system.vendor --target ...``), which is how the
preferences button gets live output without freezing the interface:
:func:`subprocess_command` builds that command line.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import site
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..errors import CancelledError, DependencyError
from .requirements import NUMPY_REQUIREMENT, RUNTIME_REQUIREMENTS

logger = logging.getLogger(__name__)

REQUIRED_PYTHON = (3, 11)
STAMP_NAME = ".img3d-vendor.json"
PYPI_PROBE_URL = "https://pypi.org/simple/pip/"

VARIANTS = ("cpu", "cuda")
# Free space to ask for before installing: the CUDA build of torch brings ~4 GB
# of NVIDIA libraries; the CPU build and the rest fit in about 1 GB.
REQUIRED_FREE_BYTES = {"cpu": int(1.5 * 1024**3), "cuda": 6 * 1024**3}
# Optional PyTorch indexes. PyPI's torch is the CUDA build on Linux and the CPU
# build on Windows/macOS; these pick the build explicitly (torch==X matches X+cpu
# and X+cu128, so the pin stays the same). Not needed where PyPI's default fits.
PYTORCH_INDEX_URLS = {
    "cpu": "https://download.pytorch.org/whl/cpu",
    "cuda": "https://download.pytorch.org/whl/cu128",
}

# The marker lines a script run prints so the caller can show a clean message.
ERROR_PREFIX = "vendor: error: "
DONE_LINE = "vendor: done"
UP_TO_DATE_LINE = "vendor: up to date"

OutputCallback = Callable[[str], None]


class InstallError(DependencyError):
    """The install can't go on until the user fixes something (network, disk, Python)."""


@dataclass(frozen=True)
class InstallPlan:
    """Everything one install does: what goes where, with which pins.

    ``constraints`` pin versions without requesting the package (numpy is only
    installed because other packages need it). ``torch_index_url``, when set,
    is passed to pip as an extra index so a specific torch build can be chosen.
    """

    vendor_dir: Path
    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    variant: str = "cpu"
    torch_index_url: Optional[str] = None
    required_free_bytes: int = REQUIRED_FREE_BYTES["cpu"]
    python_version: tuple[int, int] = REQUIRED_PYTHON
    extra_pip_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def stamp_file(self) -> Path:
        return self.vendor_dir / STAMP_NAME

    def fingerprint(self) -> str:
        """Changes whenever anything that decides the installed files changes."""
        payload = {
            "requirements": list(self.requirements),
            "constraints": list(self.constraints),
            "variant": self.variant,
            "torch_index_url": self.torch_index_url,
            "python": list(self.python_version),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def pip_command(self, python: str, constraints_file: Path) -> list[str]:
        """The pip command line that installs the plan with the interpreter ``python``."""
        command = [
            python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            "--no-warn-script-location",
            # pip --target ignores what is installed elsewhere; --upgrade lets a
            # second run replace what an earlier version put in the folder.
            "--upgrade",
            "--target",
            str(self.vendor_dir),
            "--constraint",
            str(constraints_file),
        ]
        if self.torch_index_url:
            command += ["--extra-index-url", self.torch_index_url]
        return [*command, *self.extra_pip_args, *self.requirements]

    def to_json(self) -> str:
        data = asdict(self)
        data["vendor_dir"] = str(self.vendor_dir)
        return json.dumps(data)


def version_of(requirement: str) -> Optional[str]:
    """The pinned version of ``name==version``, or None."""
    match = re.match(r"^\s*[A-Za-z0-9_.\-\[\]]+\s*==\s*([^\s;,]+)", requirement)
    return match.group(1) if match else None


def running_numpy_version() -> str:
    """numpy's version in this interpreter (Blender's own numpy when run inside Blender).

    Falls back to the project's pinned numpy when this Python has none.
    """
    try:
        import numpy
    except ImportError:
        return version_of(NUMPY_REQUIREMENT) or "1.26.4"
    return numpy.__version__


def make_plan(
    vendor_dir: str | Path,
    *,
    numpy_version: Optional[str] = None,
    variant: str = "cpu",
    requirements: tuple[str, ...] = RUNTIME_REQUIREMENTS,
    torch_index_url: Optional[str] = None,
    required_free_bytes: Optional[int] = None,
) -> InstallPlan:
    """The plan for installing ``requirements`` into ``vendor_dir`` for the chosen torch build.

    ``numpy_version`` is the version Blender ships (default: this Python's numpy).
    """
    variant = variant.lower()
    if variant not in VARIANTS:
        raise InstallError(f"Unknown torch build {variant!r}: choose one of {', '.join(VARIANTS)}.")
    numpy_version = numpy_version or running_numpy_version()
    if required_free_bytes is None:
        required_free_bytes = REQUIRED_FREE_BYTES[variant]
    return InstallPlan(
        vendor_dir=Path(vendor_dir).expanduser().resolve(),
        requirements=tuple(requirements),
        constraints=(f"numpy=={numpy_version}",),
        variant=variant,
        torch_index_url=torch_index_url or None,
        required_free_bytes=int(required_free_bytes),
    )


# --- checks -------------------------------------------------------------------


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> None:
    """Raise :class:`InstallError` unless this is the Python the wheels are pinned for."""
    if tuple(version[:2]) != REQUIRED_PYTHON:
        want = ".".join(map(str, REQUIRED_PYTHON))
        got = ".".join(map(str, version[:3]))
        raise InstallError(
            f"Python {want} is required (bpy 5.0 is built for it), but this is Python {got}. "
            f"Run the script with python{want}, e.g. 'python{want} vendor_install.py --dev', "
            f"or use a Blender release that ships Python {want}."
        )


def check_network(url: str = PYPI_PROBE_URL, timeout: float = 15.0) -> None:
    """Raise :class:`InstallError` when the package index can't be reached."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read(1)
    except (urllib.error.URLError, OSError) as exc:
        raise InstallError(
            f"Can't reach the Python package index ({url}): {exc}. "
            "Connect to the network (or configure pip's index/proxy) and run again."
        ) from exc


def _existing_ancestor(folder: Path) -> Path:
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_disk_space(folder: Path, required_bytes: int) -> None:
    """Raise :class:`InstallError` when ``folder``'s disk has less than ``required_bytes`` free."""
    free = shutil.disk_usage(_existing_ancestor(folder)).free
    if free < required_bytes:
        raise InstallError(
            f"Not enough disk space in {folder}: {free / 1024**3:.1f} GB free, the packages need "
            f"about {required_bytes / 1024**3:.1f} GB. Free some space (or choose the CPU build, "
            "which is smaller) and run again."
        )


def check_pip(python: str = sys.executable) -> None:
    """Raise :class:`InstallError` when ``python`` has no pip module."""
    completed = subprocess.run(
        [python, "-m", "pip", "--version"], capture_output=True, text=True, timeout=60
    )
    if completed.returncode != 0:
        raise InstallError(
            f"pip is not available in {python}: {completed.stderr.strip()[-200:]}. "
            "Use a Blender build that bundles pip, or run 'python -m ensurepip' once."
        )


# --- install ------------------------------------------------------------------


def stamp_matches(plan: InstallPlan) -> bool:
    """True when ``plan`` was installed completely into its folder before."""
    try:
        return json.loads(plan.stamp_file.read_text())["fingerprint"] == plan.fingerprint()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def install(
    plan: InstallPlan,
    *,
    force: bool = False,
    output: Optional[OutputCallback] = None,
    cancel: Optional[threading.Event] = None,
    python: str = sys.executable,
    check_index: bool = True,
) -> bool:
    """Install ``plan`` with pip; return False when the stamp says it is already there.

    Every pip output line goes to ``output`` as it arrives. Raises
    :class:`InstallError` for the wrong Python, no network, too little disk or
    a failed pip run, and :class:`CancelledError` when ``cancel`` is set (pip is
    stopped; the stamp is not written, so the next run starts over).
    """
    emit = output or logger.info
    check_python()
    if not force and stamp_matches(plan):
        emit(f"{plan.vendor_dir} is up to date")
        return False
    plan.vendor_dir.mkdir(parents=True, exist_ok=True)
    check_disk_space(plan.vendor_dir, plan.required_free_bytes)
    if check_index:
        check_network()
    check_pip(python)
    plan.stamp_file.unlink(missing_ok=True)
    constraints_file = plan.vendor_dir / ".img3d-constraints.txt"
    constraints_file.write_text("\n".join(plan.constraints) + "\n")
    command = plan.pip_command(python, constraints_file)
    emit("$ " + " ".join(command))
    code = _run_streaming(command, emit, cancel)
    if code != 0:
        raise InstallError(
            f"pip failed (exit code {code}) while installing into {plan.vendor_dir}; "
            "the lines above say which package. Check the network and disk space, then run again."
        )
    payload = {"fingerprint": plan.fingerprint(), "plan": json.loads(plan.to_json())}
    plan.stamp_file.write_text(json.dumps(payload, indent=1))
    emit(f"installed {len(plan.requirements)} packages into {plan.vendor_dir}")
    return True


def _run_streaming(
    command: list[str], emit: OutputCallback, cancel: Optional[threading.Event]
) -> int:
    env = dict(os.environ, PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        env=env,
    )
    watcher = None
    if cancel is not None:
        # pip can sit in one download for minutes: stop it from outside.
        def stop_when_cancelled() -> None:
            while process.poll() is None:
                if cancel.wait(0.2):
                    process.terminate()
                    return

        watcher = threading.Thread(target=stop_when_cancelled, daemon=True)
        watcher.start()
    assert process.stdout is not None
    for line in process.stdout:
        emit(line.rstrip())
    code = process.wait()
    if watcher is not None:
        watcher.join()
    if cancel is not None and cancel.is_set():
        raise CancelledError("Dependency install cancelled; run it again to finish.")
    return code


def activate(vendor_dir: str | Path) -> bool:
    """Append ``vendor_dir`` to ``sys.path`` (once); return whether it is on the path now.

    Appended, not prepended, so Blender's bundled packages (numpy above all)
    keep precedence; ``site.addsitedir`` also honours any ``.pth`` files there.
    """
    folder = Path(vendor_dir).expanduser()
    if not folder.is_dir():
        return False
    text = str(folder.resolve())
    if text not in sys.path:
        site.addsitedir(text)
        importlib.invalidate_caches()
        logger.info("Added %s to sys.path", text)
    return text in sys.path


# --- progress of a running install ---------------------------------------------


class PipProgress:
    """Estimate how far a pip install is from its output lines.

    pip prints ``Collecting X`` per package while resolving, then one
    ``Installing collected packages: ...`` line, then ``Successfully
    installed``. Resolving is counted as the first 70 % (against the expected
    number of distributions), installing as the rest.
    """

    def __init__(self, expected_packages: int) -> None:
        self.expected = max(1, expected_packages)
        self.collected = 0
        self.phase = "starting"
        self.fraction = 0.0
        self.error: Optional[str] = None

    def feed(self, line: str) -> float:
        text = line.strip()
        if text.startswith("Collecting "):
            self.collected += 1
            self.phase = "collecting " + text.split()[1]
            self.fraction = max(self.fraction, 0.7 * min(1.0, self.collected / self.expected))
        elif text.startswith("Installing collected packages"):
            self.phase = "installing"
            self.fraction = max(self.fraction, 0.75)
        elif text.startswith("Successfully installed") or text in (DONE_LINE, UP_TO_DATE_LINE):
            self.phase = "done"
            self.fraction = 1.0
        elif text.startswith(ERROR_PREFIX):
            self.error = text[len(ERROR_PREFIX) :]
        return self.fraction


# A full install pulls in about this many distributions (torch's and diffusers'
# dependencies included); only used to scale the progress bar.
EXPECTED_DISTRIBUTIONS = 60


# --- running as a script ---------------------------------------------------------


def subprocess_command(
    plan: InstallPlan, *, python: str = sys.executable, force: bool = False
) -> tuple[list[str], dict[str, str]]:
    """Command and environment that run ``plan`` through this module in a child Python.

    The package's parent folder goes on ``PYTHONPATH`` so ``-m
    blender_img3d.core.system.vendor`` works from the installed extension too (where
    the package is ``bl_ext.<repo>.blender_img3d`` inside Blender).
    """
    package_dir = Path(__file__).resolve().parents[2]  # .../blender_img3d
    command = [
        python,
        "-u",
        "-s",
        "-m",
        f"{package_dir.name}.core.system.vendor",
        "--target",
        str(plan.vendor_dir),
        "--numpy-version",
        version_of(plan.constraints[0]) or "",
        f"--{plan.variant}",
        "--required-free-bytes",
        str(plan.required_free_bytes),
    ]
    if plan.torch_index_url:
        command += ["--torch-index-url", plan.torch_index_url]
    if force:
        command.append("--force")
    if plan.requirements != RUNTIME_REQUIREMENTS:
        command += ["--packages", *plan.requirements]
    env = dict(os.environ, PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(package_dir.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return command, env


def add_torch_build_options(parser: argparse.ArgumentParser) -> None:
    """``--cpu``/``--cuda`` and ``--torch-index-url``: shared by every installer front end."""
    build = parser.add_mutually_exclusive_group()
    build.add_argument("--cpu", dest="variant", action="store_const", const="cpu")
    build.add_argument("--cuda", dest="variant", action="store_const", const="cuda")
    parser.set_defaults(variant="cpu")
    parser.add_argument(
        "--torch-index-url",
        help="extra index for torch builds, e.g. "
        + " or ".join(PYTORCH_INDEX_URLS.values())
        + " (default: PyPI)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vendor",
        description="Install blender_img3d's runtime packages into a folder (pip --target).",
    )
    parser.add_argument("--target", type=Path, required=True, help="the vendor folder")
    parser.add_argument(
        "--numpy-version", help="pin numpy to this version (default: this Python's numpy)"
    )
    add_torch_build_options(parser)
    parser.add_argument("--required-free-bytes", type=int, help="free space to insist on")
    parser.add_argument("--packages", nargs="+", help="install these instead of the runtime list")
    parser.add_argument("--force", action="store_true", help="reinstall even if up to date")
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """Install as the parsed ``args`` say; print progress lines; return an exit code."""
    try:
        plan = make_plan(
            args.target,
            numpy_version=args.numpy_version,
            variant=args.variant,
            requirements=tuple(args.packages or RUNTIME_REQUIREMENTS),
            torch_index_url=args.torch_index_url,
            required_free_bytes=args.required_free_bytes,
        )
        installed = install(plan, force=args.force, output=lambda line: print(line, flush=True))
    except (InstallError, CancelledError) as exc:
        print(f"{ERROR_PREFIX}{exc}", flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"{ERROR_PREFIX}interrupted", flush=True)
        return 130
    print(DONE_LINE if installed else UP_TO_DATE_LINE, flush=True)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    return run_cli(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
