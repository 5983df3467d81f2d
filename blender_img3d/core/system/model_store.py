"""What models the cache holds (sizes, revisions, completeness), and fetching them.

The cache is huggingface_hub's layout (``models--<org>--<name>/blobs``,
``refs/<branch>``, ``snapshots/<commit>/...``), read here with the standard
library only, so the system check can list models before the runtime packages
are installed. Downloads go through :mod:`.models` (``snapshot_download``),
which resumes from the ``.incomplete`` blobs an interrupted run left behind.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import ConfigError, ModelNotFoundError
from ..progress import Phase, ProgressCallback, report
from ..settings import BACKGROUND_MODEL_FILE, BACKGROUND_MODEL_ID, DEFAULT_REVISION
from .deps import require

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# The learned background remover's "mode": it rides Shap-E's download path (the same
# consent, cache and progress), though it is one ONNX file, not a Shap-E model.
BACKGROUND_MODE = "background"
_REPO_FOLDER = re.compile(r"^models--(.+?)--(.+)$")


@dataclass(frozen=True)
class CachedRevision:
    """One snapshot of a cached model: its commit, the refs pointing at it, its files."""

    commit: str
    refs: tuple[str, ...]
    files: int
    size_bytes: int
    path: Path


@dataclass(frozen=True)
class CachedModel:
    """A model repository in the hub cache.

    ``size_bytes`` counts the complete blobs once (snapshots share them);
    ``incomplete_bytes`` is what an interrupted download left to resume from.
    """

    repo_id: str
    path: Path
    size_bytes: int
    incomplete_bytes: int
    revisions: tuple[CachedRevision, ...]

    def revision(self, ref: str = DEFAULT_REVISION) -> Optional[CachedRevision]:
        """The snapshot that branch/tag ``ref`` (or the commit ``ref``) names, if cached."""
        for revision in self.revisions:
            if ref == revision.commit or ref in revision.refs:
                return revision
        if len(ref) >= 7:
            matches = [r for r in self.revisions if r.commit.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
        return None


@dataclass(frozen=True)
class ModelStatus:
    """Whether a model source (hub id or folder) is usable offline, and what it holds."""

    source: str
    present: bool
    path: Optional[Path]
    revision: Optional[str]
    size_bytes: int
    problems: tuple[str, ...] = ()

    @property
    def detail(self) -> str:
        if not self.present:
            return "; ".join(self.problems) or "not downloaded"
        revision = f", revision {self.revision[:12]}" if self.revision else ""
        return f"{format_size(self.size_bytes)}{revision}"


def format_size(count: float) -> str:
    """Human-readable bytes (``1.5 GB``)."""
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024:
            return f"{int(count)} B" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"


def default_cache_dir() -> Path:
    """huggingface_hub's standard cache folder, shared with diffusers and across Blender versions.

    The hub's environment variables decide first (``HF_HUB_CACHE``, the older
    ``HUGGINGFACE_HUB_CACHE``, then ``HF_HOME``), read now, because
    huggingface_hub reads them only once at import. Without any, the hub's own
    default is asked where it is installed, else rebuilt the way it builds it.
    """
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    try:
        from huggingface_hub import constants
    except ImportError:
        constants = None
    if constants is not None and getattr(constants, "HF_HUB_CACHE", None):
        return Path(constants.HF_HUB_CACHE).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def repo_folder_name(repo_id: str) -> str:
    """The cache folder of a model repository (``openai/shap-e`` → ``models--openai--shap-e``)."""
    return "models--" + repo_id.replace("/", "--")


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # a dangling symlink: its blob was deleted
        return 0


def _scan_revision(snapshot: Path, refs: tuple[str, ...]) -> CachedRevision:
    files = [p for p in snapshot.rglob("*") if p.is_file()]
    # Snapshots hold symlinks into blobs/; count each blob once.
    seen: dict[str, int] = {}
    for path in files:
        seen.setdefault(os.path.realpath(path), _file_size(path))
    return CachedRevision(snapshot.name, refs, len(files), sum(seen.values()), snapshot)


def scan_model_folder(folder: Path) -> Optional[CachedModel]:
    """Read one ``models--org--name`` folder; None if it isn't one."""
    match = _REPO_FOLDER.match(folder.name)
    if match is None or not folder.is_dir():
        return None
    repo_id = f"{match.group(1)}/{match.group(2)}"
    refs: dict[str, list[str]] = {}
    refs_dir = folder / "refs"
    if refs_dir.is_dir():
        for ref_file in sorted(p for p in refs_dir.rglob("*") if p.is_file()):
            commit = ref_file.read_text(encoding="utf-8", errors="replace").strip()
            refs.setdefault(commit, []).append(ref_file.relative_to(refs_dir).as_posix())
    revisions = []
    snapshots = folder / "snapshots"
    if snapshots.is_dir():
        for snapshot in sorted(p for p in snapshots.iterdir() if p.is_dir()):
            revisions.append(_scan_revision(snapshot, tuple(refs.get(snapshot.name, ()))))
    complete = incomplete = 0
    blobs = folder / "blobs"
    if blobs.is_dir():
        for blob in blobs.iterdir():
            if blob.name.endswith(".incomplete"):
                incomplete += _file_size(blob)
            elif blob.is_file():
                complete += _file_size(blob)
    return CachedModel(repo_id, folder, complete, incomplete, tuple(revisions))


def list_cached_models(cache_dir: Optional[str | Path] = None) -> list[CachedModel]:
    """Every model repository in the cache folder (default: huggingface_hub's), by id."""
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if not root.is_dir():
        return []
    found = (scan_model_folder(child) for child in sorted(root.iterdir()))
    return [model for model in found if model is not None]


def find_cached_model(
    repo_id: str, cache_dir: Optional[str | Path] = None
) -> Optional[CachedModel]:
    """The cached copy of ``repo_id``, or None."""
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return scan_model_folder(root / repo_folder_name(repo_id))


def _folder_size(folder: Path) -> int:
    return sum(_file_size(p) for p in folder.rglob("*") if p.is_file())


def model_status(
    source: str | Path,
    *,
    mode: str,
    cache_dir: Optional[str | Path] = None,
    revision: str = DEFAULT_REVISION,
) -> ModelStatus:
    """Whether ``source`` (a folder or a hub id) can be loaded for ``mode`` without a download."""
    from ..shap_e.loading import missing_components

    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        problems = tuple(missing_components(path, mode))
        return ModelStatus(text, not problems, path, "local", _folder_size(path), problems)
    cached = find_cached_model(text, cache_dir)
    if cached is None:
        return ModelStatus(text, False, None, None, 0, ("not downloaded",))
    snapshot = cached.revision(revision or DEFAULT_REVISION)
    if snapshot is None:
        partial = (
            f"download interrupted ({format_size(cached.incomplete_bytes)} to resume)"
            if cached.incomplete_bytes
            else f"revision {revision} not downloaded"
        )
        return ModelStatus(text, False, cached.path, None, cached.size_bytes, (partial,))
    problems = tuple(missing_components(snapshot.path, mode))
    return ModelStatus(
        text, not problems, snapshot.path, snapshot.commit, snapshot.size_bytes, problems
    )


def download_model(
    repo_id: str,
    *,
    mode: str,
    cache_dir: Optional[str | Path] = None,
    revision: str = DEFAULT_REVISION,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
) -> Path:
    """Download (or finish downloading) ``repo_id`` for ``mode``; return its snapshot folder.

    ``mode`` is ``image`` or ``text`` (Shap-E), or :data:`BACKGROUND_MODE` for
    the learned background remover.

    Byte progress is reported as ``Phase.DOWNLOADING``; setting ``cancel``
    stops it with :class:`CancelledError`, and the next call resumes from the
    partial files. Raises :class:`ModelNotFoundError` for an unknown repository
    or revision, no network (or ``HF_HUB_OFFLINE``), and :class:`DependencyError`
    without huggingface_hub.
    """
    if mode == BACKGROUND_MODE:
        path = download_background_model(
            cache_dir, model=repo_id, revision=revision, progress=progress, cancel=cancel
        )
        return path.parents[len(Path(BACKGROUND_MODEL_FILE).parts) - 1]
    # The hub lookup (two passes: safetensors first, pickles only where needed)
    # lives in .models so loading and downloading fetch exactly the same files.
    from ..shap_e.loading import MODES, locate_on_hub

    if Path(repo_id).expanduser().is_dir():
        raise ModelNotFoundError(
            f"{repo_id} is a local folder, not a hub id: there is nothing to download."
        )
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
    require(["huggingface_hub"])
    folder, _revision = locate_on_hub(
        repo_id,
        mode=mode,
        revision=revision or DEFAULT_REVISION,
        cache_dir=cache_dir or default_cache_dir(),
        allow_download=True,
        progress=progress,
        cancel=cancel,
    )
    return folder


def find_background_model(
    cache_dir: Optional[str | Path] = None,
    *,
    model: str = BACKGROUND_MODEL_ID,
    revision: str = DEFAULT_REVISION,
) -> Optional[Path]:
    """The cached ONNX file of the learned remover, or None when it isn't downloaded.

    ``model`` may also be a local ``.onnx`` file. Reads the cache with the
    standard library only (no huggingface_hub import, no network).
    """
    local = Path(model).expanduser()
    if local.suffix == ".onnx":
        return local if local.is_file() else None
    cached = find_cached_model(model, cache_dir)
    snapshot = cached.revision(revision) if cached is not None else None
    if snapshot is None:
        return None
    path = snapshot.path / BACKGROUND_MODEL_FILE
    return path if path.is_file() else None


def download_background_model(
    cache_dir: Optional[str | Path] = None,
    *,
    model: str = BACKGROUND_MODEL_ID,
    revision: str = DEFAULT_REVISION,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
) -> Path:
    """Fetch (or finish fetching) the learned remover into the hub cache; return its file.

    Only call this with the user's consent (``allow_download``). Raises
    :class:`ModelNotFoundError` when the hub can't be reached or has no such file.
    """
    found = find_background_model(cache_dir, model=model, revision=revision)
    if found is not None:
        return found
    require(["huggingface_hub"])
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from ..shap_e.loading import download_bar_class

    where = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    report(progress, Phase.DOWNLOADING, 0, 1)
    try:
        folder = snapshot_download(
            model,
            revision=revision,
            cache_dir=str(where),
            allow_patterns=[BACKGROUND_MODEL_FILE, "*.json", "README.md"],
            tqdm_class=download_bar_class(progress, cancel),
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        raise ModelNotFoundError(
            f"Could not download the background remover {model} into {where}: {error}. "
            "Check the network connection and free disk space, or pass --background classic."
        ) from error
    path = Path(folder) / BACKGROUND_MODEL_FILE
    if not path.is_file():
        raise ModelNotFoundError(
            f"{model} at revision {revision} has no {BACKGROUND_MODEL_FILE}: "
            "pass --background classic, or point the remover at another ONNX file."
        )
    return path
