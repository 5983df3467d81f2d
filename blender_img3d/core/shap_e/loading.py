"""Find, load and keep the Shap-E components (diffusers layout) in memory.

A model comes from a local folder in diffusers' layout or from a Hugging Face
hub id pinned to a revision. Nothing is downloaded unless the caller allows it,
so a run without ``allow_download`` never touches the network. Loaded models
stay cached in this process (keyed by where they came from, mode, device and
dtype) until :func:`release` drops them, because loading the 300M-parameter
prior takes far longer than one sampling step.

torch, diffusers, transformers and huggingface_hub are imported inside the
functions that need them: importing this module stays cheap. Importing the
classes a model is built from (:func:`model_classes`) is most of a cold start;
``warmup`` does it ahead of time, in a background thread.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import pickle
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from ..errors import ConfigError, DeviceError, Img3DError, ModelLoadError, ModelNotFoundError
from ..progress import Phase, ProgressCallback, raise_if_cancelled, report
from ..settings import (
    DEFAULT_REVISION,
    DTYPES,
    IMAGE_MODEL_ID,
    MODES,
    TEXT_MODEL_ID,
    parse_device,
)

logger = logging.getLogger(__name__)

LOCAL_REVISION = "local"

# Component folders of each pipeline, in load order, and the files that prove
# each one is complete. Weights may be safetensors or (legacy) pickles.
_CONDITIONING = {
    "image": ("image_encoder", "image_processor"),
    "text": ("text_encoder", "tokenizer"),
}
_PIPELINE_CLASS = {"image": "ShapEImg2ImgPipeline", "text": "ShapEPipeline"}
_HUB_ID_BY_MODE = {"image": IMAGE_MODEL_ID, "text": TEXT_MODEL_ID}
_WEIGHTED = ("prior", "image_encoder", "text_encoder", "shap_e_renderer")
_CONFIG_FILES = {
    "prior": ("config.json",),
    "image_encoder": ("config.json",),
    "text_encoder": ("config.json",),
    "shap_e_renderer": ("config.json",),
    "scheduler": ("scheduler_config.json",),
    "image_processor": ("preprocessor_config.json",),
    "tokenizer": ("tokenizer_config.json",),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_BASE_PATTERNS = ["*.json", "*.txt", "*.safetensors"]


@dataclass
class ShapEModels:
    """The loaded components of one Shap-E pipeline, ready on ``device``.

    ``mode`` says which conditioning is present: ``image_encoder`` +
    ``image_processor`` for "image", ``text_encoder`` + ``tokenizer`` for
    "text"; the other pair is None. The renderer is kept in float32 whatever
    ``dtype`` is, because its SDF feeds marching cubes. ``revision`` is the hub
    commit hash the files came from, or "local" for a plain folder.
    """

    mode: str
    prior: Any
    scheduler: Any
    renderer: Any
    device: Any
    dtype: Any
    source: str
    revision: str
    path: Path
    image_encoder: Any = None
    image_processor: Any = None
    text_encoder: Any = None
    tokenizer: Any = None
    autocast: Any = None  # a torch dtype: run the prior under torch.autocast (faithful mode)

    @property
    def latent_shape(self) -> tuple[int, int]:
        """``(num_embeddings, embedding_dim)`` of the prior's latent."""
        config = self.prior.config
        return int(config.num_embeddings), int(config.embedding_dim)


_cache: dict[tuple[str, str, str, str, str], ShapEModels] = {}
_lock = threading.Lock()


def resolve_device(name: Any = "auto") -> Any:
    """Return the ``torch.device`` for ``name`` ("auto": cuda > mps > cpu); the one resolver.

    ``name`` is a device name (``settings.parse_device`` spells them) or a
    ``torch.device``. Raises :class:`DeviceError` when the device exists in
    principle but not on this machine, and :class:`ConfigError` for a name that
    is no device at all.
    """
    import torch

    text = str(name) if isinstance(name, torch.device) else (name or "auto")
    kind, index = parse_device(text)
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                "CUDA was requested but this PyTorch build or machine has no usable NVIDIA GPU. "
                "Install a CUDA build of PyTorch with a current NVIDIA driver, or choose the "
                "'cpu' or 'auto' device."
            )
        if index is not None and index >= torch.cuda.device_count():
            raise DeviceError(
                f"GPU {index} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s). Choose 'cuda' or 'cuda:0'."
            )
        return torch.device("cuda", index) if index is not None else torch.device("cuda")
    if kind == "mps":
        if not _mps_available(torch):
            raise DeviceError(
                "Apple's Metal (mps) device was requested but is not available: it needs an "
                "Apple-silicon Mac and a PyTorch build with MPS. Choose 'cpu' or 'auto'."
            )
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available(torch: Any) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_dtype(name: str, device: Any) -> Any:
    """Return the ``torch.dtype`` the weights get for ``name`` on ``device``.

    "auto" is float16 on CUDA (what the product we replace ran), float32 on MPS,
    and on the CPU bfloat16 only where the CPU has native bf16 and a probe
    matmul proves it faster (see ``precision``), else float32. "autocast" keeps
    float32 weights (see :func:`resolve_autocast`).
    """
    import torch

    text = (name or "auto").strip().lower()
    if text not in DTYPES:
        raise ConfigError(f"Unknown dtype {name!r}: use one of {', '.join(DTYPES)}.")
    if text == "auto":
        from .precision import auto_dtype_name

        text = auto_dtype_name(torch.device(device).type)
    if text == "autocast":
        return torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[text]


def resolve_autocast(name: str, device: Any) -> Any:
    """The ``torch.autocast`` dtype for ``name`` (None: no autocast).

    "autocast" is the reference's numerics: float32 weights with float16
    matrix products on CUDA (bfloat16 on the CPU and MPS, where autocast
    supports only that), the faithful mode; a plain cast is the fast one.
    """
    import torch

    if (name or "").strip().lower() != "autocast":
        return None
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


def load_models(
    source: Optional[str | Path] = None,
    *,
    mode: str,
    revision: Optional[str] = None,
    cache_dir: Optional[str | Path] = None,
    allow_download: bool = False,
    device: str = "auto",
    dtype: str = "auto",
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
) -> ShapEModels:
    """Load (or return the cached) Shap-E components for ``mode``.

    ``source`` is a folder in diffusers' layout or a hub id ("openai/shap-e-img2img",
    "openai/shap-e"; None picks the one for ``mode``). A hub id is looked up in
    the hub cache (``cache_dir``, else huggingface_hub's default) at ``revision``
    (default "main"); it is downloaded only when ``allow_download`` is true,
    with byte progress reported as ``Phase.DOWNLOADING``. Raises
    :class:`ModelNotFoundError` when the files aren't there (saying where it
    looked and how to get them) and :class:`ModelLoadError` when they are there
    but can't be read.
    """
    if mode not in MODES:
        raise ConfigError(f"mode must be 'image' or 'text', got {mode!r}.")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    autocast = resolve_autocast(dtype, torch_device)
    source_text = str(source) if source is not None else _HUB_ID_BY_MODE[mode]
    with _lock:
        folder, resolved_revision = _locate(
            source_text,
            mode=mode,
            revision=revision,
            cache_dir=cache_dir,
            allow_download=allow_download,
            progress=progress,
            cancel=cancel,
        )
        key = (
            str(folder.resolve()),
            mode,
            str(torch_device),
            f"{torch_dtype}/{autocast}",
            source_text,
        )
        cached = _cache.get(key)
        if cached is not None:
            logger.debug("Using cached Shap-E models from %s", folder)
            return cached
        models = _load_components(
            folder,
            mode=mode,
            device=torch_device,
            dtype=torch_dtype,
            source=source_text,
            revision=resolved_revision,
            progress=progress,
            cancel=cancel,
        )
        models.autocast = autocast
        _cache[key] = models
        return models


def cached_models() -> list[ShapEModels]:
    """The models currently held in memory (for "Release model" buttons and reports)."""
    with _lock:
        return list(_cache.values())


def release(source: Optional[str | Path] = None) -> None:
    """Drop cached models (all, or those loaded from ``source``) and free GPU memory."""
    with _lock:
        if source is None:
            _cache.clear()
        else:
            wanted = {str(source)}
            path = Path(source).expanduser()
            if path.exists():
                wanted.add(str(path.resolve()))
            for key in [k for k in _cache if k[0] in wanted or k[4] in wanted]:
                del _cache[key]
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if _mps_available(torch) and hasattr(torch, "mps"):
        torch.mps.empty_cache()


# --- finding the files --------------------------------------------------------


def _locate(
    source: str,
    *,
    mode: str,
    revision: Optional[str],
    cache_dir: Optional[str | Path],
    allow_download: bool,
    progress: Optional[ProgressCallback],
    cancel: Optional[threading.Event],
) -> tuple[Path, str]:
    """Return the model folder and the revision to record for it."""
    path = Path(source).expanduser()
    if path.is_dir():
        missing = missing_components(path, mode)
        if missing:
            raise ModelNotFoundError(
                f"The model folder {path} is incomplete for {mode} input: "
                f"{'; '.join(missing)}. Point --model at a complete folder in diffusers' layout, "
                f"or use the hub id {_HUB_ID_BY_MODE[mode]} with --allow-download."
            )
        return path, _revision_of_folder(path)
    if not _HUB_ID.match(source) or path.is_absolute() or source.startswith((".", "~")):
        raise ModelNotFoundError(
            f"No model folder at {path}. Point --model at a folder in diffusers' layout "
            f"(model_index.json, prior/, ...) or give a hub id such as {_HUB_ID_BY_MODE[mode]} "
            "(add --allow-download to fetch it)."
        )
    return locate_on_hub(
        source,
        mode=mode,
        revision=revision or DEFAULT_REVISION,
        cache_dir=cache_dir,
        allow_download=allow_download,
        progress=progress,
        cancel=cancel,
    )


def _revision_of_folder(path: Path) -> str:
    # A folder inside a hub cache snapshot still knows its commit.
    resolved = path.resolve()
    if resolved.parent.name == "snapshots" and _COMMIT.match(resolved.name):
        return resolved.name
    return LOCAL_REVISION


def missing_components(path: Path, mode: str) -> list[str]:
    """Describe what the folder lacks for ``mode`` (empty when it is complete).

    Unreadable parts (permissions, a broken disk) are described too, never raised:
    the caller turns the list into one message.
    """
    try:
        return _missing_components(path, mode)
    except OSError as error:
        where = Path(error.filename).name if error.filename else path.name
        return [f"{where} can't be read ({error.strerror or error}); check its permissions"]


def _missing_components(path: Path, mode: str) -> list[str]:
    problems: list[str] = []
    index_file = path / "model_index.json"
    if not index_file.is_file():
        problems.append("model_index.json is missing")
    else:
        try:
            index = json.loads(index_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            reason = getattr(error, "strerror", None) or "not valid JSON"
            problems.append(f"model_index.json is unreadable ({reason})")
        else:
            if not isinstance(index, dict):
                problems.append(
                    f"model_index.json holds a JSON {type(index).__name__}, not the object "
                    "naming the pipeline's components"
                )
                return problems
            class_name = index.get("_class_name")
            other = "text" if mode == "image" else "image"
            if class_name == _PIPELINE_CLASS[other]:
                problems.append(
                    f"it holds the {other}-to-3D model ({class_name}); {mode} input needs "
                    f"{_HUB_ID_BY_MODE[mode]}"
                )
                return problems
    for name in ("prior", *_CONDITIONING[mode], "scheduler", "shap_e_renderer"):
        folder = path / name
        if not folder.is_dir():
            problems.append(f"{name}/ is missing")
            continue
        absent = [f for f in _CONFIG_FILES[name] if not (folder / f).is_file()]
        if absent:
            problems.append(f"{name}/{absent[0]} is missing")
        if name in _WEIGHTED and not _weight_files(folder):
            problems.append(f"{name}/ has no weights (*.safetensors or *.bin)")
        if name == "tokenizer" and not (
            (folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file()
        ):
            problems.append("tokenizer/ has no vocabulary (tokenizer.json or vocab.json)")
    return problems


def _weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))


def locate_on_hub(
    repo_id: str,
    *,
    mode: str,
    revision: str,
    cache_dir: Optional[str | Path],
    allow_download: bool,
    progress: Optional[ProgressCallback],
    cancel: Optional[threading.Event],
) -> tuple[Path, str]:
    """Find ``repo_id`` at ``revision`` in the hub cache, downloading it if allowed.

    safetensors files are fetched first; a component that has none gets its
    pickled weights in a second pass (loaded with ``weights_only=True`` by
    diffusers/transformers). The same two passes run offline so the cached
    snapshot is found whichever files it holds.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = Path(cache_dir).expanduser() if cache_dir else Path(constants.HF_HUB_CACHE)
    how = (
        "Run once with --allow-download (or allow downloads in the add-on preferences), "
        "or download the model elsewhere and point --model at its folder."
    )
    patterns = list(_BASE_PATTERNS)
    folder: Optional[Path] = None
    for _ in range(2):
        raise_if_cancelled(cancel)
        try:
            folder = Path(
                snapshot_download(
                    repo_id,
                    revision=revision,
                    cache_dir=str(where),
                    local_files_only=not allow_download,
                    allow_patterns=patterns,
                    tqdm_class=download_bar_class(progress, cancel) if allow_download else None,
                )
            )
        except (LocalEntryNotFoundError, EntryNotFoundError) as error:
            if allow_download:
                # huggingface_hub falls back to the cache when it can't reach the hub.
                raise ModelNotFoundError(
                    f"Could not download {repo_id} at revision {revision}: the model hub is "
                    f"unreachable and the model is not in the cache {where}. Check the network "
                    "connection, or download the model elsewhere and point --model at its folder."
                ) from error
            raise ModelNotFoundError(
                f"{repo_id} at revision {revision} is not in the model cache {where} and "
                f"downloads are off. {how}"
            ) from error
        except (RepositoryNotFoundError, RevisionNotFoundError) as error:
            raise ModelNotFoundError(
                f"The hub has no {repo_id} at revision {revision}: check the model id and "
                f"revision (e.g. {_HUB_ID_BY_MODE[mode]} at {DEFAULT_REVISION})."
            ) from error
        except (HfHubHTTPError, OSError) as error:
            raise ModelNotFoundError(
                f"Could not fetch {repo_id} at revision {revision} into {where}: {error}. "
                "Check the network connection and free disk space, then try again."
            ) from error
        unweighted = [
            name
            for name in ("prior", *_CONDITIONING[mode], "shap_e_renderer")
            if name in _WEIGHTED and (folder / name).is_dir() and not _weight_files(folder / name)
        ]
        if not unweighted:
            break
        patterns = _BASE_PATTERNS + [f"{name}/*.bin" for name in unweighted]
    assert folder is not None
    missing = missing_components(folder, mode)
    if missing:
        raise ModelNotFoundError(
            f"The cached copy of {repo_id} ({folder}) is incomplete for {mode} input: "
            f"{'; '.join(missing)}. {how}"
        )
    return folder, _revision_of_folder(folder)


def download_bar_class(
    progress: Optional[ProgressCallback], cancel: Optional[threading.Event]
) -> type:
    """A tqdm class that forwards byte counts to ``progress`` and never draws."""
    from tqdm.auto import tqdm

    class _ProgressBar(tqdm):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._unit = kwargs.get("unit", "it")
            self._done = int(kwargs.get("initial", 0) or 0)
            kwargs.pop("name", None)
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: Optional[float] = 1) -> Optional[bool]:
            raise_if_cancelled(cancel)
            self._done += int(n or 0)
            if self._unit == "B":
                report(progress, Phase.DOWNLOADING, self._done, int(self.total or 0))
            return None

    return _ProgressBar


# --- loading ------------------------------------------------------------------


def model_classes() -> SimpleNamespace:
    """torch and the classes every component is loaded with, imported here and only here.

    Only the model classes: diffusers' pipeline modules are never imported, and
    ``ShapERenderer`` comes from its own module. These imports are most of a cold
    start (about 9 s on a 2-core machine, before any weight is read), so the
    loader and the background warm-up (``warmup``) share this one list: what the
    warm-up imported is exactly what the first load needs.
    """
    import torch
    from diffusers import HeunDiscreteScheduler, PriorTransformer
    from diffusers.pipelines.shap_e.renderer import ShapERenderer
    from transformers import (
        CLIPImageProcessor,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
        CLIPVisionModel,
    )

    return SimpleNamespace(
        torch=torch,
        PriorTransformer=PriorTransformer,
        HeunDiscreteScheduler=HeunDiscreteScheduler,
        ShapERenderer=ShapERenderer,
        CLIPImageProcessor=CLIPImageProcessor,
        CLIPTextModelWithProjection=CLIPTextModelWithProjection,
        CLIPTokenizer=CLIPTokenizer,
        CLIPVisionModel=CLIPVisionModel,
    )


def _load_components(
    folder: Path,
    *,
    mode: str,
    device: Any,
    dtype: Any,
    source: str,
    revision: str,
    progress: Optional[ProgressCallback],
    cancel: Optional[threading.Event],
) -> ShapEModels:
    classes = model_classes()
    torch = classes.torch

    names = ("prior", *_CONDITIONING[mode], "scheduler", "shap_e_renderer")
    loaded: dict[str, Any] = {}
    for step, name in enumerate(names):
        raise_if_cancelled(cancel)
        report(progress, Phase.LOADING_MODEL, step, len(names))
        sub = folder / name
        try:
            if name == "prior":
                loaded[name] = _diffusers_model(classes.PriorTransformer, sub, dtype)
            elif name == "shap_e_renderer":
                loaded[name] = _diffusers_model(classes.ShapERenderer, sub, torch.float32)
            elif name == "scheduler":
                loaded[name] = classes.HeunDiscreteScheduler.from_pretrained(str(sub))
            else:
                loaded[name] = _transformers_component(classes, name, sub, dtype)
        except Img3DError:
            raise
        except Exception as error:  # noqa: BLE001 - any library failure is a damaged folder
            raise ModelLoadError(_load_failure(name, folder, error)) from error
        if isinstance(loaded[name], torch.nn.Module):
            try:
                loaded[name] = loaded[name].to(device).eval().requires_grad_(False)
            except RuntimeError as error:
                raise DeviceError(
                    f"Could not move the {name} to {device}: {error}. Free GPU memory "
                    "(close other jobs, 'Release model') or choose the cpu device."
                ) from error
    report(progress, Phase.LOADING_MODEL, len(names), len(names))
    logger.info(
        "Loaded Shap-E %s model from %s (revision %s) on %s", mode, folder, revision, device
    )
    return ShapEModels(
        mode=mode,
        prior=loaded["prior"],
        scheduler=loaded["scheduler"],
        renderer=loaded["shap_e_renderer"],
        device=device,
        dtype=dtype,
        source=source,
        revision=revision,
        path=folder,
        image_encoder=loaded.get("image_encoder"),
        image_processor=loaded.get("image_processor"),
        text_encoder=loaded.get("text_encoder"),
        tokenizer=loaded.get("tokenizer"),
    )


_MESSAGE_CHARS = 300


def _load_failure(name: str, folder: Path, error: BaseException) -> str:
    """One line for whatever torch, safetensors, diffusers or transformers raised."""
    advice = (
        "The files may be corrupt or from another model: delete the folder (or that hub "
        "cache entry) and get it again."
    )
    chain, cause = [], error
    while cause is not None and len(chain) < 8:  # diffusers wraps the unpickler's error
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(link, pickle.UnpicklingError) for link in chain):
        return (
            f"Could not load {name}/ from {folder}: its pickled weights hold more than plain "
            "tensors, and torch refuses to unpickle them so no code in the file can run. "
            "Use the model's safetensors files instead."
        )
    if isinstance(error, PermissionError):
        return (
            f"Could not load {name}/ from {folder}: {error.filename or 'a file'} can't be read "
            "(permission denied); fix the folder's permissions."
        )
    if isinstance(error, MemoryError):
        return f"Could not load {name}/ from {folder}: out of memory; close other programs."
    return f"Could not load {name}/ from {folder}: {_one_line(error)}. {advice}"


def _one_line(error: BaseException) -> str:
    """The first two lines of a (possibly many-line) library message, and how many more."""
    lines = [line.strip().rstrip(".") for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = " ".join(lines[:2])
    if len(lines) > 2:
        text += f" (and {len(lines) - 2} more)"
    if len(text) > _MESSAGE_CHARS:
        text = text[: _MESSAGE_CHARS - 1].rstrip() + "…"
    return text


def _refuse_partial_weights(name: str, info: dict[str, Any]) -> None:
    """Raise when the weights don't cover the model the config describes, or vice versa.

    Libraries only warn and leave such weights randomly initialised, which shows up
    much later as "sampling diverged"; a folder like that is damaged or mixed up.
    """
    for key, what in (
        ("missing_keys", "the config has parameters the weights lack"),
        ("unexpected_keys", "the weights have parameters the config doesn't describe"),
        ("mismatched_keys", "parameters have other shapes than the config says"),
    ):
        found = sorted(str(item) for item in info.get(key) or ())
        if found:
            more = f" and {len(found) - 1} more" if len(found) > 1 else ""
            raise ValueError(f"{what} ({found[0]}{more}): config.json and weights don't match")


def _diffusers_model(cls: Any, folder: Path, dtype: Any) -> Any:
    has_safetensors = any(folder.glob("*.safetensors"))
    # Without safetensors, diffusers reads the pickle with torch.load(weights_only=True).
    model, info = cls.from_pretrained(
        str(folder),
        torch_dtype=dtype,
        use_safetensors=has_safetensors,
        # Without accelerate diffusers can't load lazily and warns on every load.
        low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None,
        output_loading_info=True,
    )
    _refuse_partial_weights(folder.name, info)
    return model


def _transformers_component(classes: SimpleNamespace, name: str, folder: Path, dtype: Any) -> Any:
    if name == "image_processor":
        return classes.CLIPImageProcessor.from_pretrained(str(folder))
    if name == "tokenizer":
        return classes.CLIPTokenizer.from_pretrained(str(folder))
    cls = (
        classes.CLIPVisionModel if name == "image_encoder" else classes.CLIPTextModelWithProjection
    )
    has_safetensors = any(folder.glob("*.safetensors"))
    # transformers, too, only unpickles with weights_only=True.
    model, info = cls.from_pretrained(
        str(folder), dtype=dtype, use_safetensors=has_safetensors, output_loading_info=True
    )
    _refuse_partial_weights(folder.name, info)
    return model
