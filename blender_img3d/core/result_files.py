"""Where a generation's files go and what they are called: stable, unique, never overwriting.

Each variant of a run is a small set of files sharing one stem,
``<name>_s<seed>_v<variant>``: the GLB (the result an artist hands on), the
latents (``.npy`` + JSON sidecar, for re-decoding at another grid size) and,
in image mode, the exact picture the model saw (``_input.png``, so "generate
again" feeds the model the same pixels). A stem already used by any file in
the folder gets ``-2``, ``-3``… so a second run never replaces the first.
The Blender layer and any other front end that keeps results in a folder
use this module; the CLI names its files itself (``--out``).
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .errors import ExportError, MeshInputError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_CHARS = 64  # of the name part, so the whole file name stays far below 255 bytes
INPUT_SUFFIX = "_input.png"


@dataclass(frozen=True)
class VariantFiles:
    """The files of one variant (the latents' sidecar is ``latents`` + ``.json``)."""

    stem: str
    glb: Path
    latents: Path
    model_input: Path

    @property
    def latents_sidecar(self) -> Path:
        return self.latents.with_name(self.latents.name + ".json")

    def paths(self) -> tuple[Path, ...]:
        return (self.glb, self.latents, self.latents_sidecar, self.model_input)


def safe_name(name: str) -> str:
    """``name`` as a portable file-name part: ASCII letters, digits, ``._-``; never empty."""
    text = _UNSAFE.sub("_", name.strip()).strip("._")
    return text[:MAX_NAME_CHARS].rstrip("._") or "img3d"


def variant_stem(name: str, seed: int, variant: int) -> str:
    return f"{safe_name(name)}_s{int(seed)}_v{int(variant)}"


def _files(folder: Path, stem: str) -> VariantFiles:
    return VariantFiles(
        stem=stem,
        glb=folder / f"{stem}.glb",
        latents=folder / f"{stem}.npy",
        model_input=folder / f"{stem}{INPUT_SUFFIX}",
    )


def plan_variant_files(
    folder: Path, name: str, seed: int, count: int, first_variant: int = 0
) -> list[VariantFiles]:
    """Unique file sets for ``count`` variants in ``folder``; nothing existing is reused."""
    folder = Path(folder)
    planned: list[VariantFiles] = []
    for variant in range(first_variant, first_variant + count):
        base = variant_stem(name, seed, variant)
        stem, number = base, 1
        while any(path.exists() for path in _files(folder, stem).paths()):
            number += 1
            stem = f"{base}-{number}"
        planned.append(_files(folder, stem))
    return planned


def check_output_folder(folder: Path) -> Path:
    """Create ``folder`` if needed and make sure files can be written there, or ExportError.

    Called before any work, so a read-only or impossible folder costs nothing.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(
            f"Can't create the output folder {folder}: {error.strerror or error}. "
            "Pick another folder in the Img3D panel's Output setting."
        ) from None
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(
            f"Can't write into the output folder {folder}: it is read-only. "
            "Pick another folder in the Img3D panel's Output setting."
        )
    return folder


def write_variants(
    result: Any, folder: Path, *, first_variant: int = 0, bake_size: Optional[int] = None
) -> list[VariantFiles]:
    """Write every variant of ``result`` (a ``pipeline.Result``) into ``folder``.

    GLB with the generation settings and metrics in ``asset.extras`` (with
    ``bake_size``, the vertex colours baked into a texture of about that many
    pixels instead, see ``core.mesh.bake``); the
    variant's latents with the same metadata when the result has latents; the
    model input in image mode. If a write fails, the files of this call are
    removed and the ``ExportError`` goes up: no half-written set stays behind.
    """
    from .exporters import export_mesh
    from .shap_e.latents import save_latents

    folder = check_output_folder(folder)
    if not result.meshes:
        return []
    first = result.meshes[0]
    seed = int(first.metadata.get("seed", 0))
    planned = plan_variant_files(
        folder, _base_name(result), seed, len(result.meshes), first_variant
    )
    written: list[Path] = []
    try:
        for index, (mesh, metrics, files) in enumerate(zip(result.meshes, result.metrics, planned)):
            options: dict[str, Any] = {"extras": {"metrics": metrics}}
            if bake_size and mesh.colors is not None:
                from .mesh.bake import bake_vertex_colors

                options["texture"] = bake_vertex_colors(mesh, size=bake_size)
            written.append(export_mesh(mesh, files.glb, **options))
            if result.latents is not None and index < len(result.latents):
                save_latents(files.latents, result.latents[index : index + 1], mesh.metadata)
                written.extend([files.latents, files.latents_sidecar])
            if result.model_input is not None:
                # Imported here: a remote result in a Blender without Pillow carries no input.
                from .images import save_model_input

                written.append(save_model_input(result.model_input, files.model_input))
    except BaseException:
        for path in written:
            _remove_quietly(path)
        raise
    return planned


def existing_files(glb: Path) -> Optional[VariantFiles]:
    """The file set a GLB written by :func:`write_variants` belongs to (None for other GLBs)."""
    glb = Path(glb)
    if glb.suffix.lower() != ".glb":
        return None
    return _files(glb.parent, glb.stem)


def move_variant(files: VariantFiles, folder: Path) -> VariantFiles:
    """Move a variant's existing files into ``folder`` (a new stem if the old one is taken).

    Used when an unsaved .blend is first saved: its results move beside it.
    Nothing in ``folder`` is overwritten.
    """
    folder = check_output_folder(folder)
    stem, number = files.stem, 1
    while any(path.exists() for path in _files(folder, stem).paths()):
        number += 1
        stem = f"{files.stem}-{number}"
    moved = _files(folder, stem)
    for source, target in zip(files.paths(), moved.paths()):
        if source.exists():
            try:
                if _same_device(source, folder):
                    os.replace(source, target)
                else:
                    _copy_then_remove(source, target)
            except OSError as error:
                raise ExportError(
                    f"Can't move {source} to {folder}: {error.strerror or error}."
                ) from None
    return moved


def _same_device(path: Path, folder: Path) -> bool:
    return path.stat().st_dev == folder.stat().st_dev


def _copy_then_remove(source: Path, target: Path) -> None:
    import shutil

    shutil.copy2(source, target)
    source.unlink()


_GLB_HEADER = struct.Struct("<III")
_CHUNK_HEADER = struct.Struct("<II")
_GLB_MAGIC, _CHUNK_JSON = 0x46546C67, 0x4E4F534A
MAX_GLB_JSON_BYTES = 64 * 1024 * 1024


def read_glb_extras(path: Path) -> dict[str, Any]:
    """``asset.extras`` of a GLB (what :func:`write_variants` recorded); {} when it has none.

    Reads only the header and the JSON chunk; a file that isn't a GLB is a
    one-line :class:`MeshInputError`.
    """
    path = Path(path)
    try:
        with path.open("rb") as stream:
            head = stream.read(_GLB_HEADER.size + _CHUNK_HEADER.size)
            if len(head) < 20:
                raise MeshInputError(f"{path} is not a GLB file: it is too short.")
            magic, version, total = _GLB_HEADER.unpack_from(head, 0)
            length, kind = _CHUNK_HEADER.unpack_from(head, _GLB_HEADER.size)
            if magic != _GLB_MAGIC or version != 2 or kind != _CHUNK_JSON:
                raise MeshInputError(f"{path} is not a glTF 2.0 binary (.glb) file.")
            if length > min(total - 20, MAX_GLB_JSON_BYTES):
                raise MeshInputError(f"{path} is damaged: its JSON chunk runs past the file.")
            text = stream.read(length)
    except OSError as error:
        raise MeshInputError(f"Can't read {path}: {error.strerror or error}.") from None
    try:
        document = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MeshInputError(f"{path} is damaged: its JSON chunk is not valid JSON.") from None
    asset = document.get("asset") if isinstance(document, dict) else None
    extras = asset.get("extras") if isinstance(asset, dict) else None
    return extras if isinstance(extras, dict) else {}


def _base_name(result: Any) -> str:
    """The name every variant's files share: the object name without the variant number."""
    mesh = result.meshes[0]
    name = str(mesh.name)
    if len(result.meshes) > 1 and name.endswith(" 1"):
        name = name[:-2]
    return name


def _remove_quietly(path: Path) -> None:
    try:
        Path(path).unlink()
    except OSError:
        pass
