"""Install the runtime packages into a private folder, and put that folder on ``sys.path``.

Blender ships its own Python and numpy, and an extension must not change
Blender's site-packages. So pip installs with ``--target`` into the
extension's user folder, one sub-folder per CPython ABI and platform
(``vendor/cp311-win_amd64``), so Blender 4.2 (Python 3.11) and 5.1 (Python
3.13) side by side never load each other's binaries. The folder is *appended*
to ``sys.path`` only when needed (:func:`activate`), so Blender's own packages
(numpy above all) win.

An install is a plan of two pip runs, shown to the user before it starts
(:meth:`InstallPlan.describe`): torch alone from the PyTorch index that
:mod:`.hardware` picked for the machine (``--index-url``), then every other
library, fully pinned (:mod:`.requirements`), with ``--no-deps`` from PyPI.
A wheelhouse folder replaces both indexes (``--find-links DIR --no-index``)
for studios without internet. Byte progress comes from pip's ``--progress-bar
raw`` (pip 24.1+) through :class:`PipProgress`, in the same ``(phase, step,
total)`` form the model download reports. After the install a child process
imports torch and multiplies two matrices on the device (:func:`check_install`),
so a broken DLL shows up in the preferences, not at Generate.

This module never imports bpy: the Blender side passes in the folder, the
online-access state and Blender's numpy version. It also runs as a script in a
child of Blender's Python (``python -m <package>.core.system.vendor ...``), which
is how the preferences button gets live output without freezing the interface.
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
import sysconfig
import threading
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import CancelledError, DependencyError
from ..progress import Phase, ProgressCallback, report
from . import hardware
from .requirements import (
    BLENDER_NUMPY,
    BLENDER_RELEASES,
    LIBRARY_PINS,
    SUPPORTED_PYTHONS,
    TORCH_DEPENDENCIES,
    TORCH_REQUIREMENT,
    name_of,
)

logger = logging.getLogger(__name__)

STAMP_NAME = ".img3d-vendor.json"
CHECK_NAME = ".img3d-check.json"
CONSTRAINTS_NAME = ".img3d-constraints.txt"
PYPI_PROBE_URL = "https://pypi.org/simple/pip/"
# pip's machine-readable download progress ("Progress 1234 of 5678") appeared in 24.1.
RAW_PROGRESS_PIP = (24, 1)
# Windows' classic path limit, and the longest path inside the installed packages
# (measured over torch 2.13 and the pinned libraries: a licence file under
# torch-2.13.0+cpu.dist-info is 171 characters; a few more for +cu130 builds).
WINDOWS_MAX_PATH = 260
LONGEST_PACKAGE_PATH = 180
SHORT_FOLDER_HINT = r"C:\Img3D"

# The marker lines a script run prints so the caller can show a clean message.
ERROR_PREFIX = "vendor: error: "
DONE_LINE = "vendor: done"
UP_TO_DATE_LINE = "vendor: up to date"
CHECK_PREFIX = "vendor: check: "
PLAN_PREFIX = "vendor: plan: "

OutputCallback = Callable[[str], None]


class InstallError(DependencyError):
    """The install can't go on until the user fixes something (network, disk, Python)."""


class OfflineError(InstallError):
    """Blender's online access is off, and the action needs the network."""


# --- where: ABI and platform ------------------------------------------------------------


def abi_tag(version: Sequence[int] = tuple(sys.version_info[:2])) -> str:
    """``cp311`` for CPython 3.11: the tag of the wheels this Python loads."""
    return f"cp{version[0]}{version[1]}"


def platform_key(platform_name: Optional[str] = None) -> str:
    """The platform part of the vendor folder's name (``win_amd64``, ``macosx_arm64``...)."""
    text = (platform_name or sysconfig.get_platform()).replace("-", "_").replace(".", "_")
    if text.startswith("macosx"):
        return "macosx_" + text.rsplit("_", 1)[-1]  # the macOS version doesn't change the ABI
    return text


def vendor_key(version: Sequence[int] = tuple(sys.version_info[:2]), platform_name=None) -> str:
    """``cp311-win_amd64``: one folder per ABI and platform, never shared between them."""
    return f"{abi_tag(version)}-{platform_key(platform_name)}"


def vendor_dir_for(root: str | Path, key: Optional[str] = None) -> Path:
    """The install folder under ``root`` (the extension's ``vendor`` folder, or a custom one)."""
    return Path(root).expanduser().resolve() / (key or vendor_key())


# --- what: the plan --------------------------------------------------------------------


@dataclass(frozen=True)
class PipRun:
    """One pip invocation of a plan: these requirements, from this index."""

    label: str
    requirements: tuple[str, ...]
    index_url: Optional[str] = None  # None: pip's own default (PyPI or its config)
    no_deps: bool = False
    download_bytes: int = 0
    # Where the run's dependencies may also come from. torch's run lists PyPI here:
    # the PyTorch indexes mirror only some versions of filelock, sympy & co., and the
    # constraints pin those. torch itself still comes from its index: its local
    # version (2.13.0+cu128) sorts above PyPI's plain 2.13.0.
    extra_index_url: Optional[str] = None


@dataclass(frozen=True)
class InstallPlan:
    """Everything one install does: what goes where, from which index, with which pins.

    ``constraints`` pin versions without requesting the package (numpy to
    Blender's own, torch's dependencies to the tested versions). ``wheelhouse``
    replaces every index with a local folder (``--find-links --no-index``).
    """

    vendor_dir: Path
    runs: tuple[PipRun, ...]
    constraints: tuple[str, ...]
    build: Optional[hardware.TorchBuild] = None
    wheelhouse: Optional[Path] = None
    required_free_bytes: int = hardware.REQUIRED_FREE_BYTES["cpu"]
    python_version: tuple[int, int] = tuple(sys.version_info[:2])  # type: ignore[assignment]
    extra_pip_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def stamp_file(self) -> Path:
        return self.vendor_dir / STAMP_NAME

    @property
    def requirements(self) -> tuple[str, ...]:
        return tuple(req for run in self.runs for req in run.requirements)

    @property
    def download_bytes(self) -> int:
        return 0 if self.wheelhouse else sum(run.download_bytes for run in self.runs)

    @property
    def check_device(self) -> str:
        """The torch device the after-install check runs on (ROCm builds use the cuda API)."""
        name = self.build.name if self.build else "cpu"
        return {"cuda": "cuda", "rocm": "cuda", "mps": "mps"}.get(name, "cpu")

    def fingerprint(self) -> str:
        """Changes whenever anything that decides the installed files changes."""
        payload = {
            "runs": [[list(r.requirements), r.index_url, r.no_deps] for r in self.runs],
            "constraints": list(self.constraints),
            "python": list(self.python_version),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def describe(self) -> list[str]:
        """What will be installed, from where, how big, and where to: shown before starting."""
        from .model_store import format_size

        lines = []
        if self.build is not None:
            lines.append(f"PyTorch build: {self.build.label}. {self.build.reason}")
            lines += list(self.build.notes)
        for run in self.runs:
            source = (
                f"the wheelhouse {self.wheelhouse}"
                if self.wheelhouse
                else (run.index_url or hardware.PYPI_INDEX_URL)
            )
            size = f", about {format_size(run.download_bytes)}" if run.download_bytes else ""
            lines.append(f"{run.label} from {source}{size}")
        lines.append(
            f"Into {self.vendor_dir} (needs about {format_size(self.required_free_bytes)} "
            "free; Blender's own Python is not changed)"
        )
        return lines

    def pip_commands(
        self, python: str, constraints_file: Path, *, raw_progress: bool = True
    ) -> list[list[str]]:
        """One pip command line per run, for the interpreter ``python``."""
        commands = []
        for run in self.runs:
            command = [
                python,
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "raw" if raw_progress else "off",
                "--no-warn-script-location",
                "--only-binary=:all:",
                # pip --target ignores what is installed elsewhere; --upgrade lets a
                # second run replace what an earlier version put in the folder.
                "--upgrade",
                "--target",
                str(self.vendor_dir),
                "--constraint",
                str(constraints_file),
            ]
            if self.wheelhouse is not None:
                command += ["--no-index", "--find-links", str(self.wheelhouse)]
            elif run.index_url:
                command += ["--index-url", run.index_url]
                if run.extra_index_url and run.extra_index_url != run.index_url:
                    command += ["--extra-index-url", run.extra_index_url]
            if run.no_deps:
                command.append("--no-deps")
            commands.append([*command, *self.extra_pip_args, *run.requirements])
        return commands

    def to_json(self) -> str:
        data = asdict(self)
        data["vendor_dir"] = str(self.vendor_dir)
        data["wheelhouse"] = str(self.wheelhouse) if self.wheelhouse else None
        return json.dumps(data)


def version_of(requirement: str) -> Optional[str]:
    """The pinned version of ``name==version``, or None."""
    match = re.match(r"^\s*[A-Za-z0-9_.\-\[\]]+\s*==\s*([^\s;,]+)", requirement)
    return match.group(1) if match else None


def running_numpy_version() -> str:
    """numpy's version in this interpreter (Blender's own numpy when run inside Blender).

    Falls back to the pinned numpy for this Python when there is none.
    """
    try:
        import numpy
    except ImportError:
        fallback = BLENDER_NUMPY.get(abi_tag(), BLENDER_NUMPY["cp311"])
        return version_of(fallback) or "1.26.4"
    return numpy.__version__


def library_requirements(abi: str = abi_tag(), skip: Sequence[str] = ()) -> tuple[str, ...]:
    """The pinned libraries (everything but torch) for ``abi``, minus the ``skip`` names."""
    skipped = {name_of(name) for name in skip}
    return tuple(req for req in LIBRARY_PINS[abi] if name_of(req) not in skipped)


def available_at_pin(requirements: Sequence[str]) -> tuple[str, ...]:
    """Those of ``requirements`` this Python already has at exactly the pinned version.

    Inside Blender these are the wheels bundled with the extension (Blender put
    them on the path at install): the vendor plan leaves them out, so they are
    neither downloaded twice nor shadowed by a second copy.
    """
    import importlib.metadata

    found = []
    for requirement in requirements:
        try:
            if importlib.metadata.version(name_of(requirement)) == version_of(requirement):
                found.append(requirement)
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(found)


def make_plan(
    vendor_dir: str | Path,
    *,
    build: Optional[hardware.TorchBuild] = None,
    numpy_version: Optional[str] = None,
    packages: Optional[Sequence[str]] = None,
    skip: Sequence[str] = (),
    wheelhouse: Optional[str | Path] = None,
    required_free_bytes: Optional[int] = None,
    python_version: Sequence[int] = tuple(sys.version_info[:2]),
) -> InstallPlan:
    """The plan for installing into ``vendor_dir``.

    ``build`` is the torch build (default: detected for this machine). The
    default package set is torch, then the pinned libraries for this Python
    minus ``skip`` (the extension's bundled wheels, which Blender already put
    on the path). ``packages`` replaces all of that with one ordinary pip run
    (tests, advanced use). ``numpy_version`` is the numpy Blender ships
    (default: this Python's).
    """
    version = (int(python_version[0]), int(python_version[1]))
    check_python(version)
    numpy_version = numpy_version or running_numpy_version()
    constraints = (f"numpy=={numpy_version}",)
    house = Path(wheelhouse).expanduser().resolve() if wheelhouse else None
    if house is not None and not house.is_dir():
        raise InstallError(f"The wheelhouse folder {house} doesn't exist: check the path.")
    if packages:
        runs = (PipRun(f"{len(packages)} package(s): {' '.join(packages)}", tuple(packages)),)
        free = 200 * 1024**2 if required_free_bytes is None else required_free_bytes
        return InstallPlan(
            Path(vendor_dir).expanduser().resolve(),
            runs,
            constraints,
            None,
            house,
            int(free),
            version,
        )
    if build is None:
        build = hardware.choose_build(hardware.probe_machine())
    libraries = library_requirements(abi_tag(version), skip)
    runs = (
        PipRun(
            f"torch {version_of(TORCH_REQUIREMENT)} ({build.label})",
            (TORCH_REQUIREMENT,),
            build.index_url,
            download_bytes=build.download_bytes,
            extra_index_url=hardware.PYPI_INDEX_URL,
        ),
        PipRun(
            f"{len(libraries)} pinned libraries (diffusers, transformers, ...)",
            libraries,
            hardware.PYPI_INDEX_URL,
            no_deps=True,
            download_bytes=hardware.LIBRARIES_DOWNLOAD_BYTES,
        ),
    )
    free = build.required_free_bytes if required_free_bytes is None else required_free_bytes
    return InstallPlan(
        vendor_dir=Path(vendor_dir).expanduser().resolve(),
        runs=runs,
        constraints=constraints + TORCH_DEPENDENCIES,
        build=build,
        wheelhouse=house,
        required_free_bytes=int(free),
        python_version=version,
    )


# --- checks -------------------------------------------------------------------


def check_python(version: Sequence[int] = tuple(sys.version_info[:3])) -> None:
    """Raise :class:`InstallError` unless the pinned sets cover this Python."""
    key = (int(version[0]), int(version[1]))
    if key not in SUPPORTED_PYTHONS:
        got = ".".join(map(str, version[:3]))
        wanted = " or ".join(
            f"{major}.{minor} (Blender {BLENDER_RELEASES[tag]})"
            for (major, minor), tag in SUPPORTED_PYTHONS.items()
        )
        raise InstallError(
            f"Python {wanted} is required, but this is Python {got}. Use a supported Blender, "
            "or for development run the script with python3.11, e.g. "
            "'python3.11 vendor_install.py --dev'."
        )


def require_online(online: bool, *, headless: bool = False) -> None:
    """Raise :class:`OfflineError` naming Blender's setting when online access is off.

    Every network path calls this first: the preferences' buttons, the panel,
    headless ``vendor_install.py`` and the model download.
    """
    if online:
        return
    how = (
        "run Blender with --online-mode (e.g. 'blender -b --online-mode --python "
        "vendor_install.py'), or turn on Allow Online Access in its preferences"
        if headless
        else "turn on Edit > Preferences > System > Network > Allow Online Access"
    )
    raise OfflineError(
        f"Blender's online access is off, so nothing is downloaded: {how}. "
        "Without a network, install from a wheelhouse folder instead."
    )


def check_network(url: str = PYPI_PROBE_URL, timeout: float = 15.0) -> None:
    """Raise :class:`InstallError` when the package index can't be reached."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read(1)
    except (urllib.error.URLError, OSError) as exc:
        raise InstallError(
            f"Can't reach the Python package index ({url}): {exc}. "
            "Connect to the network (or configure pip's index/proxy, or use a wheelhouse "
            "folder) and run again."
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


def windows_long_paths_enabled() -> bool:
    """Whether Windows' LongPathsEnabled policy is on (False off Windows or when unreadable)."""
    try:
        import winreg
    except ImportError:
        return False
    try:
        with winreg.OpenKey(
            winreg.HKEY_LOCAL_MACHINE, r"SYSTEM\CurrentControlSet\Control\FileSystem"
        ) as key:
            return winreg.QueryValueEx(key, "LongPathsEnabled")[0] == 1
    except OSError:
        return False


def longest_install_path(vendor_dir: Path) -> int:
    """The length of the longest file path the install will create under ``vendor_dir``."""
    return len(str(vendor_dir)) + 1 + LONGEST_PACKAGE_PATH


def check_path_lengths(
    vendor_dir: Path,
    *,
    windows: bool = os.name == "nt",
    long_paths: Optional[Callable[[], bool]] = None,
) -> None:
    """On Windows, refuse a folder whose package paths would pass 260 characters.

    Unless long paths are enabled, pip fails half-way on such paths (and torch
    then can't load). The message offers a short custom folder.
    """
    if not windows:
        return
    longest = longest_install_path(vendor_dir)
    if longest <= WINDOWS_MAX_PATH:
        return
    if (long_paths or windows_long_paths_enabled)():
        return
    raise InstallError(
        f"The install folder {vendor_dir} is too deep for Windows: its package files would "
        f"reach {longest} characters, past Windows' {WINDOWS_MAX_PATH}. Choose a short "
        f"Install Folder in the add-on's preferences (e.g. {SHORT_FOLDER_HINT}), or enable "
        "Windows long paths (LongPathsEnabled), then install again."
    )


def pip_version(python: str = sys.executable) -> tuple[int, ...]:
    """The version of ``python``'s pip; raise :class:`InstallError` when it has none."""
    completed = subprocess.run(
        [python, "-m", "pip", "--version"], capture_output=True, text=True, timeout=60
    )
    if completed.returncode != 0:
        raise InstallError(
            f"pip is not available in {python}: {completed.stderr.strip()[-200:]}. "
            "Use a Blender build that bundles pip, or run 'python -m ensurepip' once."
        )
    match = re.search(r"pip (\d+)\.(\d+)", completed.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def check_pip(python: str = sys.executable) -> None:
    """Raise :class:`InstallError` when ``python`` has no pip module."""
    pip_version(python)


# --- install ------------------------------------------------------------------


def stamp_matches(plan: InstallPlan) -> bool:
    """True when ``plan`` was installed completely into its folder before."""
    try:
        return json.loads(plan.stamp_file.read_text())["fingerprint"] == plan.fingerprint()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def preflight(plan: InstallPlan, *, online: bool = True, headless: bool = False) -> None:
    """Every check that can refuse before pip starts: network permission, paths, disk."""
    if plan.wheelhouse is None:
        require_online(online, headless=headless)
    check_path_lengths(plan.vendor_dir)
    check_disk_space(plan.vendor_dir, plan.required_free_bytes)


def install(
    plan: InstallPlan,
    *,
    force: bool = False,
    output: Optional[OutputCallback] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
    python: str = sys.executable,
    check_index: bool = True,
    online: bool = True,
    headless: bool = False,
) -> bool:
    """Install ``plan`` with pip; return False when the stamp says it is already there.

    Every pip output line goes to ``output`` as it arrives, byte progress to
    ``progress``. Raises :class:`InstallError` for a refused network, no
    network, too little disk, too long paths or a failed pip run, and
    :class:`CancelledError` when ``cancel`` is set (pip is stopped; the stamp
    is not written, so the next run starts over). No index is probed when the
    plan installs from a wheelhouse.
    """
    emit = output or logger.info
    check_python(plan.python_version)
    if not force and stamp_matches(plan):
        emit(f"{plan.vendor_dir} is up to date")
        return False
    preflight(plan, online=online, headless=headless)
    for line in plan.describe():
        emit(PLAN_PREFIX + line)
    plan.vendor_dir.mkdir(parents=True, exist_ok=True)
    if check_index and plan.wheelhouse is None:
        check_network()
    raw = pip_version(python) >= RAW_PROGRESS_PIP
    plan.stamp_file.unlink(missing_ok=True)
    constraints_file = plan.vendor_dir / CONSTRAINTS_NAME
    constraints_file.write_text("\n".join(plan.constraints) + "\n")
    tracker = PipProgress(plan.download_bytes, progress)
    for command in plan.pip_commands(python, constraints_file, raw_progress=raw):
        emit("$ " + " ".join(command))

        def take(line: str) -> None:
            tracker.feed(line)
            if not line.startswith("Progress "):  # the raw byte counts would flood the log
                emit(line)

        code = _run_streaming(command, take, cancel)
        if code != 0:
            raise InstallError(
                f"pip failed (exit code {code}) while installing into {plan.vendor_dir}; "
                "the lines above say which package. Check the network and disk space, then run "
                "again (or Repair)."
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


def deactivate(vendor_dir: str | Path) -> None:
    """Take ``vendor_dir`` (and anything under it) off ``sys.path``."""
    text = str(Path(vendor_dir).expanduser().resolve())
    sys.path[:] = [entry for entry in sys.path if not entry.startswith(text)]
    importlib.invalidate_caches()


def uninstall(vendor_dir: str | Path) -> bool:
    """Delete the install folder ``vendor_dir``; return whether there was one.

    Refuses a folder that is not one of ours (no stamp, no constraints file,
    not named like ``cp311-linux_x86_64``), so a mistyped custom folder can't
    delete someone's files. Modules already imported stay loaded until Blender
    restarts (Python can't unload compiled libraries).
    """
    folder = Path(vendor_dir).expanduser().resolve()
    if not folder.exists():
        deactivate(folder)
        return False
    ours = (
        (folder / STAMP_NAME).exists()
        or (folder / CONSTRAINTS_NAME).exists()
        or re.fullmatch(r"cp3\d+-[a-z0-9_]+", folder.name) is not None
    )
    if not ours:
        raise InstallError(
            f"{folder} doesn't look like an Img3D dependency folder; not deleting it. "
            "Remove it by hand if you are sure."
        )
    deactivate(folder)
    shutil.rmtree(folder)
    logger.info("Removed %s", folder)
    return True


# --- progress of a running install ---------------------------------------------


class PipProgress:
    """Turn pip's output lines into byte progress, the way the model download reports it.

    With ``--progress-bar raw`` pip prints ``Progress <done> of <total>`` per
    file; the file sizes add up to the plan's download estimate, which grows if
    pip fetches more. Without raw progress (old pip, a wheelhouse) each
    ``Collecting``/``Processing`` line moves the bar. ``progress`` receives
    ``(Phase.DOWNLOADING, bytes_done, bytes_total)`` or ``(Phase.INSTALLING, n, n)``.
    """

    def __init__(self, expected_bytes: int, progress: Optional[ProgressCallback] = None) -> None:
        self.expected = max(1, int(expected_bytes))
        self.progress = progress
        self.finished_bytes = 0  # files fully downloaded
        self.current_done = 0
        self.current_total = 0
        self.collected = 0
        self.phase = "starting"
        self.fraction = 0.0
        self.error: Optional[str] = None

    @property
    def done_bytes(self) -> int:
        return self.finished_bytes + self.current_done

    @property
    def total_bytes(self) -> int:
        return max(self.expected, self.finished_bytes + self.current_total)

    def _set(self, fraction: float) -> None:
        self.fraction = max(self.fraction, min(1.0, fraction))

    def feed(self, line: str) -> float:
        text = line.strip()
        match = re.match(r"^Progress (\d+) of (\d+)$", text)
        if match:
            done, total = int(match.group(1)), int(match.group(2))
            if done < self.current_done or (total and total != self.current_total and done == 0):
                # A new file started: bank the previous one.
                self.finished_bytes += self.current_total or self.current_done
                self.current_done = 0
            self.current_done, self.current_total = done, total
            # Downloads are the first 90 % of the bar; unpacking is the rest.
            self._set(0.9 * self.done_bytes / self.total_bytes)
            report(self.progress, Phase.DOWNLOADING, self.done_bytes, self.total_bytes)
        elif text.startswith(("Collecting ", "Processing ")):
            self.collected += 1
            self.phase = text.split()[0].lower() + " " + text.split()[1].rsplit("/", 1)[-1]
        elif text.startswith("Downloading "):
            self.phase = "downloading " + text.split()[1].rsplit("/", 1)[-1]
        elif text.startswith("Installing collected packages"):
            self.phase = "installing"
            self._set(0.9)
            report(self.progress, Phase.INSTALLING, 0, 1)
        elif text.startswith("Successfully installed") or text in (DONE_LINE, UP_TO_DATE_LINE):
            self.phase = "done" if text != UP_TO_DATE_LINE else "up to date"
            report(self.progress, Phase.INSTALLING, 1, 1)
        elif text.startswith(ERROR_PREFIX):
            self.error = text[len(ERROR_PREFIX) :]
        if text == DONE_LINE or text == UP_TO_DATE_LINE:
            self.fraction = 1.0
        return self.fraction


# --- the check after the install ---------------------------------------------------

_CHECK_SCRIPT = r"""
import json, sys
folder, device = sys.argv[1], sys.argv[2]
sys.path.append(folder)
out = {"device": device}
try:
    import torch
    out["torch"] = torch.__version__
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False (build %s)" % torch.version.cuda)
        out["name"] = torch.cuda.get_device_name(0)
        out["memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    elif device == "mps":
        if not torch.backends.mps.is_available():
            raise RuntimeError("torch.backends.mps.is_available() is False")
        out["name"] = "Apple GPU"
    else:
        import platform
        out["name"] = platform.processor() or platform.machine()
    a = torch.ones(64, 64, device=device)
    value = float((a @ a).sum().item())
    if value != 64.0 ** 3:
        raise RuntimeError("64x64 matmul on %s gave %r, not %r" % (device, value, 64.0**3))
    out["ok"] = True
except BaseException as exc:
    out["ok"] = False
    out["error"] = "%s: %s" % (type(exc).__name__, exc)
print("__IMG3D_CHECK__" + json.dumps(out))
"""


@dataclass(frozen=True)
class CheckResult:
    """What the after-install check found, in one line a user can act on."""

    ok: bool
    device: str
    torch: str = ""
    name: str = ""
    memory_bytes: int = 0
    error: str = ""
    advice: str = ""

    @property
    def summary(self) -> str:
        label = {"cuda": "CUDA", "mps": "Apple GPU", "cpu": "CPU"}.get(self.device, self.device)
        if self.ok:
            memory = f", {round(self.memory_bytes / 1024**3)} GB" if self.memory_bytes else ""
            return f"{label} OK: {self.name}{memory} (torch {self.torch})"
        return f"{label} check failed: {self.error}. {self.advice}".strip()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CheckResult":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def advice_for(error: str, device: str) -> str:
    """What to do about a failed check, from the error's words."""
    if "DLL load failed" in error or "WinError 126" in error or "WinError 127" in error:
        return (
            "Install the Microsoft Visual C++ Redistributable (x64) from Microsoft, restart "
            "Blender, then Repair."
        )
    if "No module named 'torch'" in error:
        return "The install is missing or incomplete: press Install Dependencies (or Repair)."
    if device == "cuda" and "is_available" in error:
        return (
            "Update the NVIDIA driver (or choose the CPU build), then Repair. Copy log and "
            "report it if the driver is current."
        )
    if device == "mps":
        return "Update macOS (MPS needs macOS 14 or newer here), or choose the CPU build."
    return "Repair the install; if that doesn't help, Copy log and report it."


def check_install(
    vendor_dir: str | Path,
    device: str = "cpu",
    *,
    python: str = sys.executable,
    timeout: float = 300.0,
) -> CheckResult:
    """Import torch from ``vendor_dir`` in a child process and multiply on ``device``.

    A child, so a crashing CUDA driver or a missing DLL can't take Blender down,
    and so the result reflects a fresh import rather than this process's state.
    """
    env = dict(os.environ, PYTHONNOUSERSITE="1")
    try:
        completed = subprocess.run(
            [python, "-s", "-c", _CHECK_SCRIPT, str(vendor_dir), device],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        error = f"importing torch took more than {timeout:.0f} s"
        return CheckResult(False, device, error=error, advice=advice_for(error, device))
    for line in completed.stdout.splitlines():
        if line.startswith("__IMG3D_CHECK__"):
            data = json.loads(line[len("__IMG3D_CHECK__") :])
            result = CheckResult.from_dict(data)
            if not result.ok:
                result = replace(result, advice=advice_for(result.error, device))
            return result
    tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
    error = f"the check process exited with code {completed.returncode}: {tail[0]}"
    return CheckResult(False, device, error=error, advice=advice_for(error, device))


def save_check(vendor_dir: str | Path, result: CheckResult) -> None:
    """Keep the last check's result beside the install, so the preferences show it after restart."""
    folder = Path(vendor_dir)
    if folder.is_dir():
        (folder / CHECK_NAME).write_text(json.dumps(result.to_dict()))


def load_check(vendor_dir: str | Path) -> Optional[CheckResult]:
    """The last saved check of the install in ``vendor_dir``, if any."""
    try:
        return CheckResult.from_dict(json.loads((Path(vendor_dir) / CHECK_NAME).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def parse_check_line(line: str) -> Optional[CheckResult]:
    """The check result a script run printed (``vendor: check: {...}``), else None."""
    if not line.startswith(CHECK_PREFIX):
        return None
    try:
        return CheckResult.from_dict(json.loads(line[len(CHECK_PREFIX) :]))
    except (ValueError, TypeError):
        return None


# --- running as a script ---------------------------------------------------------


def subprocess_command(
    plan: InstallPlan, *, python: str = sys.executable, force: bool = False
) -> tuple[list[str], dict[str, str]]:
    """Command and environment that run ``plan`` through this module in a child Python.

    The plan travels as JSON (``--plan-json``), so the child installs exactly
    what the preferences showed. The package's parent folder goes on
    ``PYTHONPATH`` so ``-m <package>.core.system.vendor`` works from the
    installed extension too (``bl_ext.<repo>.blender_img3d`` inside Blender).
    """
    package_dir = Path(__file__).resolve().parents[2]  # .../blender_img3d
    command = [
        python,
        "-u",
        "-s",
        "-m",
        f"{package_dir.name}.core.system.vendor",
        "--plan-json",
        plan.to_json(),
    ]
    if force:
        command.append("--force")
    env = dict(os.environ, PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(package_dir.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return command, env


def plan_from_json(text: str) -> InstallPlan:
    """The inverse of :meth:`InstallPlan.to_json`."""
    data = json.loads(text)
    build = (
        hardware.TorchBuild(**{**data["build"], "notes": tuple(data["build"]["notes"])})
        if data.get("build")
        else None
    )
    runs = tuple(
        PipRun(**{**run, "requirements": tuple(run["requirements"])}) for run in data["runs"]
    )
    return InstallPlan(
        vendor_dir=Path(data["vendor_dir"]),
        runs=runs,
        constraints=tuple(data["constraints"]),
        build=build,
        wheelhouse=Path(data["wheelhouse"]) if data.get("wheelhouse") else None,
        required_free_bytes=int(data["required_free_bytes"]),
        python_version=tuple(data["python_version"]),  # type: ignore[arg-type]
        extra_pip_args=tuple(data.get("extra_pip_args", ())),
    )


def add_install_options(parser: argparse.ArgumentParser) -> None:
    """Build, index, wheelhouse and folder options: shared by every installer front end."""
    parser.add_argument(
        "--build",
        choices=hardware.BUILD_NAMES,
        default="auto",
        help="PyTorch build (default: auto, detected from the GPU and driver)",
    )
    # Short forms kept for scripts written against earlier versions.
    parser.add_argument("--cpu", dest="build", action="store_const", const="cpu")
    parser.add_argument("--cuda", dest="build", action="store_const", const="cuda")
    parser.add_argument(
        "--torch-index-url", help="fetch torch from this index instead of the detected one"
    )
    parser.add_argument(
        "--wheelhouse",
        type=Path,
        help="install offline from this folder of wheels (--find-links DIR --no-index)",
    )


def plan_for_args(
    args: argparse.Namespace,
    vendor_dir: Path,
    *,
    numpy_version: Optional[str] = None,
    skip: Sequence[str] = (),
) -> InstallPlan:
    """The plan the shared options describe, for ``vendor_dir``."""
    build = hardware.choose_build(hardware.probe_machine(), args.build)
    if args.torch_index_url:
        build = hardware.with_index_url(build, args.torch_index_url)
    return make_plan(
        vendor_dir,
        build=build,
        numpy_version=numpy_version,
        packages=getattr(args, "packages", None),
        skip=skip,
        wheelhouse=args.wheelhouse,
        required_free_bytes=getattr(args, "required_free_bytes", None),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vendor",
        description="Install blender_img3d's runtime packages into a folder (pip --target).",
    )
    parser.add_argument("--plan-json", help="install exactly this plan (from the preferences)")
    parser.add_argument("--target", type=Path, help="the vendor folder (without --plan-json)")
    parser.add_argument("--numpy-version", help="pin numpy to this version")
    add_install_options(parser)
    parser.add_argument("--required-free-bytes", type=int, help="free space to insist on")
    parser.add_argument("--packages", nargs="+", help="install these instead of the runtime set")
    parser.add_argument("--force", action="store_true", help="reinstall even if up to date")
    parser.add_argument("--no-check", action="store_true", help="skip the import check")
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """Install as the parsed ``args`` say; print progress lines; return an exit code.

    Network permission was checked by the caller (Blender's preferences, with
    its online-access state) before this child was started.
    """
    try:
        if args.plan_json:
            plan = plan_from_json(args.plan_json)
        elif args.target:
            plan = plan_for_args(args, args.target, numpy_version=args.numpy_version)
        else:
            raise InstallError("Give --plan-json or --target.")
        installed = install(plan, force=args.force, output=lambda line: print(line, flush=True))
        if plan.build is not None and not args.no_check:
            result = check_install(plan.vendor_dir, plan.check_device)
            save_check(plan.vendor_dir, result)
            print(CHECK_PREFIX + json.dumps(result.to_dict()), flush=True)
    except (InstallError, CancelledError, DependencyError) as exc:
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
