"""The output plan: every file a run will write, checked against each other and the inputs.

One check, before any work (no model load, no sampling, no reading of a large
mesh): each mesh output, its per-variant names, the side files its writer adds
(an OBJ's ``.mtl`` and, when the run bakes a texture, its ``.png``, under the
very names the writer derives), the JSON report, the latents and their
``.json`` sidecar and the saved model-input image. Two outputs on one file, an
output on an input (or on a file an input depends on, such as an OBJ input's
material library or the textures it names), a side file that would replace a
file blender_img3d did not write, a missing or read-only folder and a name the
file system can't hold (ENAMETOOLONG) are refused as :class:`OutputPathError`
with one line naming both parties. ``pipeline.run``, ``decode_saved``,
``convert_mesh_file``, the CLI and the Blender export operator all build their
plan here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from .errors import OutputPathError

PathLike = Union[str, os.PathLike]

# Fallbacks where os.pathconf can't tell (Windows, odd file systems).
_NAME_MAX = 255
_PATH_MAX = 4096
# How a file we wrote starts, so a side file of ours may be replaced and a stranger's not;
# a baked PNG says so in its tEXt "Software" entry (core/mesh/bake.py), before the pixels.
_OWN_HEADER = b"# blender_img3d"
_OWN_PNG = b"tEXtSoftware\0blender_img3d "
_PNG_SCAN_BYTES = 4096
# Inputs that name companion files the plan must also protect.
_MTLLIB = re.compile(rb"^\s*mtllib\s+(.+?)\s*$", re.MULTILINE)
# Texture statements of a material library; the file name is the last word (options first).
_MTL_MAP = re.compile(rb"^\s*(?:map_\w+|bump|disp|decal|refl|norm)\s+(.+?)\s*$", re.MULTILINE)
_INPUT_SCAN_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class PlannedFile:
    """One file a run may write and what it is (for messages)."""

    path: Path
    role: str
    # Replace only if blender_img3d wrote the existing file (side files the user didn't name).
    only_own: bool = False


@dataclass
class OutputPlan:
    """What a run will write: mesh paths per variant and every file, side files included."""

    meshes: list[list[Path]] = field(default_factory=list)
    files: list[PlannedFile] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [planned.path for planned in self.files]


def variant_paths(outputs: Sequence[PathLike], batch: int) -> list[list[Path]]:
    """Per-variant output paths: ``chair.glb`` becomes ``chair_0.glb``… when batch > 1."""
    per_variant: list[list[Path]] = [[] for _ in range(batch)]
    for out in outputs:
        out = Path(os.fspath(out))
        for index in range(batch):
            path = out if batch == 1 else out.with_name(f"{out.stem}_{index}{out.suffix}")
            per_variant[index].append(path)
    return per_variant


def plan_outputs(
    outputs: Sequence[PathLike] = (),
    *,
    batch: int = 1,
    report: Optional[PathLike] = None,
    latents: Optional[PathLike] = None,
    save_input: Optional[PathLike] = None,
    inputs: Sequence[PathLike] = (),
    bake: bool = False,
) -> OutputPlan:
    """Check every output of one run and return the plan; :class:`OutputPathError` if unsafe.

    ``inputs`` are the files the run reads (an image, a latents file, a mesh);
    their companions (sidecar, OBJ material libraries and their textures) are
    protected as well. ``bake``: the run bakes a texture, so the formats that keep
    it beside the file (an OBJ's PNG) add it to their side files.
    """
    from .exporters import SUFFIXES, format_for_path, side_files
    from .shap_e.latents import sidecar_path

    plan = OutputPlan(meshes=variant_paths(outputs, max(1, int(batch))))
    for out in outputs:
        suffix = Path(os.fspath(out)).suffix.lower()
        if suffix not in SUFFIXES:
            raise OutputPathError(
                f"Can't write {os.fspath(out)!r}: can't tell its format from the suffix "
                f"{suffix or '(none)'}; use one of {', '.join(SUFFIXES)}."
            )
    for variant in plan.meshes:
        for path in variant:
            fmt = format_for_path(path).upper()
            plan.files.append(PlannedFile(path, f"the {fmt} output"))
            for side in side_files(path):
                plan.files.append(PlannedFile(side, f"the material file of {path.name}", True))
            if bake:
                for side in side_files(path, textured=True)[len(side_files(path)) :]:
                    plan.files.append(PlannedFile(side, f"the texture of {path.name}", True))
    if report is not None:
        plan.files.append(PlannedFile(Path(os.fspath(report)), "the report"))
    if latents is not None:
        latents_path = Path(os.fspath(latents))
        plan.files.append(PlannedFile(latents_path, "the latents"))
        plan.files.append(PlannedFile(sidecar_path(latents_path), "the latents' sidecar"))
    if save_input is not None:
        # Imported here: the images package needs Pillow, which a Blender that only
        # exports (no runtime installed) doesn't have.
        from .images.preparation import MODEL_INPUT_FORMATS

        image_path = Path(os.fspath(save_input))
        if image_path.suffix.lower() not in MODEL_INPUT_FORMATS:
            raise OutputPathError(
                f"Can't save the model's input as {image_path.name}: use an image suffix "
                f"({', '.join(MODEL_INPUT_FORMATS)})."
            )
        plan.files.append(PlannedFile(image_path, "the saved model input"))

    protected = _protected_inputs(inputs)
    seen: dict[object, PlannedFile] = {}
    for planned in plan.files:
        _check_writable(planned)
        for key in _identities(planned.path):
            if key in protected:
                path, what = protected[key]
                raise OutputPathError(
                    f"{_cap(planned.role)} {planned.path} would overwrite {what} {path}: "
                    "choose another output name (inputs are never overwritten)."
                )
            if key in seen:
                other = seen[key]
                raise OutputPathError(
                    f"{_cap(other.role)} and {planned.role} would both be written to "
                    f"{planned.path}: give each output its own file name."
                )
        for key in _identities(planned.path):
            seen[key] = planned
        if planned.only_own and planned.path.exists() and not _written_by_us(planned.path):
            raise OutputPathError(
                f"{_cap(planned.role)} would replace {planned.path}, which blender_img3d did "
                "not write: move that file or choose another output name."
            )
    return plan


def plan_for_request(
    request, *, batch: Optional[int] = None, inputs: Sequence[PathLike] = ()
) -> OutputPlan:
    """The plan for a :class:`~.settings.Request` (its image, when a path, is an input)."""
    sources = list(inputs)
    if isinstance(request.image, (str, os.PathLike)):
        sources.append(request.image)
    return plan_outputs(
        request.outputs,
        batch=request.generation.batch if batch is None else batch,
        report=request.report_path,
        latents=request.latents_out,
        save_input=request.save_input,
        inputs=sources,
        bake=request.export.bake_texture,
    )


# --- checks -------------------------------------------------------------------


def _check_writable(planned: PlannedFile) -> None:
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(planned.path))))
    role = _cap(planned.role)
    if not path.name or os.fspath(planned.path).endswith(("/", os.sep)):
        raise OutputPathError(f"{role} {planned.path} names a folder: give a file name.")
    folder = path.parent
    if not folder.exists():
        raise OutputPathError(
            f"{role} {path} can't be written: the folder {folder} does not exist; create it "
            "first or fix the path."
        )
    if not folder.is_dir():
        raise OutputPathError(f"{role} {path} can't be written: {folder} is a file, not a folder.")
    name_max = _pathconf(folder, "PC_NAME_MAX", _NAME_MAX)
    name_bytes = len(os.fsencode(path.name))
    if name_bytes > name_max:
        raise OutputPathError(
            f"{role} name {path.name[:40]}… is {name_bytes} bytes long; this file system "
            f"allows {name_max}: choose a shorter name."
        )
    path_max = _pathconf(folder, "PC_PATH_MAX", _PATH_MAX)
    if len(os.fsencode(os.fspath(path))) >= path_max:
        raise OutputPathError(
            f"{role} path is longer than the {path_max} bytes this system allows: "
            "choose a shorter folder or name."
        )
    if path.is_dir():
        raise OutputPathError(f"{role} {path} is a folder: give a file name.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"{role} {path} can't be written: the folder {folder} is not writable; choose a "
            "folder you can write to."
        )


def _pathconf(folder: Path, name: str, fallback: int) -> int:
    try:
        value = os.pathconf(folder, name)
    except (AttributeError, OSError, ValueError):
        return fallback
    return value if value and value > 0 else fallback


def _identities(path: Path) -> list[object]:
    """Keys under which two paths are the same file: the resolved name, and the inode."""
    resolved = os.path.normcase(os.path.realpath(os.path.expanduser(os.fspath(path))))
    keys: list[object] = [resolved]
    try:
        stat = os.stat(resolved)
    except OSError:
        return keys
    keys.append((stat.st_dev, stat.st_ino))
    return keys


def _protected_inputs(inputs: Sequence[PathLike]) -> dict[object, tuple[Path, str]]:
    from .shap_e.latents import sidecar_path

    protected: dict[object, tuple[Path, str]] = {}

    def protect(path: Path, what: str) -> None:
        for key in _identities(path):
            protected.setdefault(key, (path, what))

    for raw in inputs:
        path = Path(os.fspath(raw)).expanduser()
        protect(path, "the input")
        suffix = path.suffix.lower()
        if suffix == ".npy":
            protect(sidecar_path(path), "the input's sidecar")
        elif suffix == ".obj":
            for library in _obj_libraries(path):
                protect(library, "the input's material library")
                for texture in _material_textures(library):
                    protect(texture, "a texture of the input")
    return protected


def _obj_libraries(path: Path) -> list[Path]:
    """The .mtl files an OBJ input names (``mtllib``), read from its first few MB."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(_INPUT_SCAN_BYTES)
    except OSError:
        return []
    libraries = []
    for match in _MTLLIB.finditer(head):
        for name in match.group(1).split():
            # The file system's own decoding: a non-UTF-8 name still finds its file.
            libraries.append(path.parent / os.fsdecode(name))
    return libraries


def _material_textures(library: Path) -> list[Path]:
    """The image files a material library names (``map_Kd wood.png``), beside it."""
    try:
        with open(library, "rb") as stream:
            head = stream.read(_INPUT_SCAN_BYTES)
    except OSError:
        return []
    names = (match.group(1).split()[-1] for match in _MTL_MAP.finditer(head))
    return [library.parent / name.decode("utf-8", "replace") for name in names]


def _written_by_us(path: Path) -> bool:
    try:
        with open(path, "rb") as stream:
            if path.suffix.lower() == ".png":
                return _OWN_PNG in stream.read(_PNG_SCAN_BYTES)
            return stream.read(len(_OWN_HEADER)) == _OWN_HEADER
    except OSError:
        return False


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
