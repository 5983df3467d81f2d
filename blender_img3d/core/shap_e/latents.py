"""Saving and loading sampled latents, so a result can be decoded again without re-sampling.

Sampling is the slow part of a generation; decoding is cheap. Keeping the
latents lets a user re-decode at another grid size later. A save writes two
files, each atomically (temporary file, fsync, rename; see ``exporters/atomic.py``):

* ``<path>`` — the latents, float32 (batch, dim), NumPy ``.npy`` format
  (loaded without pickle, so a file from elsewhere can't run code);
* ``<path>.json`` — a sidecar naming what made them (model source and revision,
  seed, steps, guidance, schedule, prompt or image name: whatever the caller
  passes) so the matching renderer can be found again, plus the array's shape
  and SHA-256, so a sidecar that ended up beside other latents is caught.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import LatentsError
from ..exporters.atomic import atomic_write

log = logging.getLogger(__name__)

FORMAT = "blender_img3d.latents"
FORMAT_VERSION = 1

PathLike = Union[str, os.PathLike]


def sidecar_path(path: PathLike) -> Path:
    """The JSON sidecar that belongs to the latents file ``path``."""
    path = Path(os.fspath(path))
    return path.with_name(path.name + ".json")


def save_latents(path: PathLike, latents: Any, metadata: Optional[dict[str, Any]] = None) -> Path:
    """Write ``latents`` ((batch, dim) or (dim,), tensor or array) and ``metadata`` to ``path``.

    Returns the path written. Raises :class:`LatentsError` for latents or metadata
    that can't be saved (nothing is written then) and
    :class:`~.errors.ExportError` when the file system refuses.
    """
    array = _as_float32_batch(latents)
    sidecar = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "shape": list(array.shape),
        "dtype": "float32",
        "sha256": _digest(array),
        "metadata": dict(metadata or {}),
    }
    try:
        # Serialise before touching the disk, so bad metadata writes nothing.
        text = json.dumps(sidecar, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as error:
        raise LatentsError(
            f"The latents' metadata can't be saved as JSON ({error}): pass plain "
            "strings, numbers, lists and dicts."
        ) from error
    target = Path(os.fspath(path))
    with atomic_write(target, "wb") as stream:
        np.save(stream, array, allow_pickle=False)
    with atomic_write(sidecar_path(target), "w") as stream:
        stream.write(text)
    log.info("saved latents %s to %s", array.shape, target)
    return target


def load_latents(
    path: PathLike, expected_dim: Optional[int] = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Read latents saved by :func:`save_latents`: float32 (batch, dim) and the metadata.

    ``expected_dim``, when given (e.g. 1024 * 1024 for Shap-E), must match dim.
    A missing sidecar is tolerated (empty metadata, with a warning); a missing,
    corrupt or wrongly shaped array, or a sidecar that doesn't describe it, raises
    :class:`LatentsError`.
    """
    target = Path(os.fspath(path))
    if not target.is_file():
        raise LatentsError(
            f"No latents file at {target}: check the path (latents are saved as .npy "
            "with the generate command's latents option)."
        )
    _check_npy_header(target)
    try:
        loaded = np.load(target, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise LatentsError(
            f"{target} is not a readable latents file ({error}): it is damaged or not a .npy "
            "array. Generate again and save the latents anew."
        ) from error
    if not isinstance(loaded, np.ndarray):  # an .npz archive
        loaded.close()
        raise LatentsError(f"{target} is an .npz archive, not a single latents array (.npy).")
    if loaded.dtype.kind not in "fiu" or loaded.ndim not in (1, 2) or loaded.size == 0:
        raise LatentsError(
            f"{target} holds a {loaded.dtype} array of shape {loaded.shape}, not latents "
            "(a float array of shape (batch, dim) or (dim,))."
        )
    array = _as_float32_batch(loaded)
    if expected_dim is not None and array.shape[1] != expected_dim:
        raise LatentsError(
            f"{target} holds latents of size {array.shape[1]}, but this model decodes latents "
            f"of size {expected_dim}: they were made by another model. Use the model named in "
            f"{sidecar_path(target).name}."
        )
    return array, _read_sidecar(target, array)


def _read_sidecar(target: Path, array: np.ndarray) -> dict[str, Any]:
    sidecar = sidecar_path(target)
    if not sidecar.is_file():
        log.warning("%s has no sidecar %s: model and settings unknown", target, sidecar.name)
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LatentsError(
            f"The sidecar {sidecar} is damaged ({error}): delete it to load the latents "
            "without their metadata, or save them again."
        ) from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LatentsError(f"{sidecar} is not a blender_img3d latents sidecar.")
    version = data.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise LatentsError(
            f"{sidecar} is damaged: its format version is {version!r}, not a whole number; "
            "delete it to load the latents without their metadata, or save them again."
        )
    if version > FORMAT_VERSION:
        raise LatentsError(
            f"{sidecar} was written by a newer blender_img3d (format version "
            f"{data.get('version')}): update the extension to read it."
        )
    if list(data.get("shape", [])) != list(array.shape) or data.get("sha256") != _digest(array):
        raise LatentsError(
            f"The sidecar {sidecar.name} describes different latents than {target.name} holds "
            "(the files were mixed up or one was overwritten): save the latents again."
        )
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise LatentsError(f"{sidecar} is damaged: its metadata is not a JSON object.")
    return metadata


def _check_npy_header(target: Path) -> None:
    """Refuse a .npy whose header promises more (or other) data than the file holds.

    ``np.load`` allocates what the header declares before reading: a 100-byte file
    claiming (100000, 100000) floats would ask for 37 GiB. The header is parsed
    alone (pickle off) and checked against the file's real size first.
    """
    try:
        with open(target, "rb") as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            data_start = stream.tell()
        size = target.stat().st_size
    except (OSError, ValueError, EOFError, SyntaxError) as error:
        raise LatentsError(
            f"{target} is not a readable latents file ({error}): it is damaged or not a .npy "
            "array. Generate again and save the latents anew."
        ) from error
    if dtype.hasobject:
        raise LatentsError(f"{target} holds Python objects, not latents; it is refused unread.")
    count = 1
    for side in shape:
        count *= int(side)
    declared = count * dtype.itemsize
    if declared != size - data_start:
        raise LatentsError(
            f"{target} is damaged: its header declares {shape} {dtype} ({declared} bytes) "
            f"but the file holds {size - data_start}. Generate again and save the latents anew."
        )


def _as_float32_batch(latents: Any) -> np.ndarray:
    """Latents as a C-contiguous float32 (batch, dim) array, or :class:`LatentsError`."""
    if hasattr(latents, "detach"):  # a torch tensor; torch itself needn't be imported here
        latents = latents.detach().float().cpu().numpy()
    try:
        array = np.asarray(latents, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise LatentsError(
            f"Latents must be a numeric array, got {type(latents).__name__}."
        ) from error
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.size == 0:
        raise LatentsError(f"Latents must have shape (batch, dim) or (dim,), got {array.shape}.")
    if not np.isfinite(array).all():
        raise LatentsError(
            "The latents contain NaN or infinite values (the sampling diverged): "
            "sample again with another seed or a lower guidance scale."
        )
    return np.ascontiguousarray(array)


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<f4").tobytes()).hexdigest()
