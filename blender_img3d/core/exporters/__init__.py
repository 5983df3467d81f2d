"""Mesh file writers behind one registry: THE list of export formats.

Each :class:`ExportFormat` names its file suffixes, the label and description a
user sees (CLI help, Blender's format menu and file filter), whether it declares
a length unit, and its writer ``write_<fmt>(mesh, path, **options)``. The CLI,
``settings.Request`` validation and the Blender export operator all read this
registry, so a new format is one writer module plus one :func:`register_format`
call here. Writers are named by module and imported on first use, so importing
this package (``core.settings`` does) stays cheap.

Every writer checks the mesh, converts axes/units/colour spaces as its format
requires, refuses options it doesn't know and writes through
:func:`.atomic.atomic_write`, so a failed export never leaves a half-written
file. No bpy here: the Blender operators, the CLI and scripts all call
:func:`export_mesh`.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterator, Optional, Union

from ..errors import ExportError
from ..mesh.meshdata import MeshData
from ..progress import Phase, ProgressCallback, raise_if_cancelled, report
from .units import DEFAULT_UNIT

Writer = Callable[..., Path]


@dataclass(frozen=True)
class ExportFormat:
    """One export format: how users see it and which function writes it.

    ``suffixes`` are lower-case with the dot, the first one the format's own
    (``(".step", ".stp")``). ``writer`` is a callable or ``"module:function"``
    relative to this package, imported when first used. ``units``: the format
    declares a length unit and so takes the ``units`` option (glTF is metres by
    definition and OBJ has no unit field, so both keep Blender's metres).
    """

    name: str
    suffixes: tuple[str, ...]
    label: str
    description: str
    writer: Union[str, Writer]
    units: bool = False
    # Files the writer puts beside its output (an OBJ's .mtl): path -> list of paths,
    # a callable or "module:function" like ``writer``; the output plan checks them too.
    side_files: Union[str, Callable[[Path], list[Path]], None] = None
    # The writer takes ``texture=`` (a ``core.mesh.bake.BakedTexture``): a baked run
    # hands it one. ``texture_files``: where it puts the image beside the output when
    # it doesn't embed it (an OBJ's PNG), like ``side_files``.
    textures: bool = False
    texture_files: Union[str, Callable[[Path], list[Path]], None] = None
    # What becomes of vertex colours in the file ("" : it keeps none), for the one-line
    # note a run gives when a format drops what the mesh carried.
    colors: str = "vertex colours"
    # The writer takes ``progress=`` and ``cancel=`` and reports faces written while it
    # works (the slow CAD formats); for the others :func:`export_mesh` checks the
    # cancel before and reports all faces after.
    streams_progress: bool = False
    # Faces past which the format's usual readers can't work with the file (a CAD kernel
    # with one B-rep face per triangle); :func:`size_warning` says so before writing.
    usable_faces: Optional[int] = None

    @property
    def suffix(self) -> str:
        return self.suffixes[0]

    def load_writer(self) -> Writer:
        return _resolve(self.writer)

    def side_files_for(self, path: Path) -> list[Path]:
        return [] if self.side_files is None else list(_resolve(self.side_files)(path))

    def texture_files_for(self, path: Path) -> list[Path]:
        return [] if self.texture_files is None else list(_resolve(self.texture_files)(path))


def _resolve(target: Union[str, Callable]) -> Callable:
    if callable(target):
        return target
    module, function = target.split(":")
    return getattr(importlib.import_module(module, __name__), function)


_FORMATS: dict[str, ExportFormat] = {}
# The registry, read-only and live: what every other module reads.
FORMATS: Mapping[str, ExportFormat] = MappingProxyType(_FORMATS)


def register_format(fmt: ExportFormat) -> None:
    """Add (or replace) a format; its name and suffixes must be lower-case, suffixes dotted."""
    if fmt.name != fmt.name.lower() or not fmt.suffixes:
        raise ValueError(f"format name must be lower-case with suffixes: {fmt!r}")
    for suffix in fmt.suffixes:
        if not suffix.startswith(".") or suffix != suffix.lower():
            raise ValueError(f"suffix {suffix!r} of {fmt.name} must be lower-case and dotted")
        owner = suffix_owner(suffix)
        if owner is not None and owner != fmt.name:
            raise ValueError(f"suffix {suffix} already belongs to {owner}")
    _FORMATS[fmt.name] = fmt


def unregister_format(name: str) -> None:
    """Remove a format (for plug-ins and tests); unknown names are ignored."""
    _FORMATS.pop(name, None)


def suffix_owner(suffix: str) -> Optional[str]:
    """The format writing ``suffix`` (lower-case, dotted), or None."""
    for fmt in _FORMATS.values():
        if suffix in fmt.suffixes:
            return fmt.name
    return None


def all_suffixes() -> list[str]:
    """Every suffix the registry writes, formats in order."""
    return [suffix for fmt in _FORMATS.values() for suffix in fmt.suffixes]


def suffix_list() -> str:
    """The suffixes as users read them: ``".glb .obj .dxf .step/.stp"``."""
    return " ".join("/".join(fmt.suffixes) for fmt in _FORMATS.values())


def unit_format_labels() -> str:
    """Names of the formats that declare a unit, for help texts: ``"DXF and STEP"``."""
    return _and_list([fmt.name.upper() for fmt in _FORMATS.values() if fmt.units])


def texture_format_labels() -> str:
    """Names of the formats that carry a baked texture, for help texts: ``"GLB and OBJ"``."""
    return _and_list([fmt.name.upper() for fmt in _FORMATS.values() if fmt.textures])


def _and_list(names: list[str]) -> str:
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


class _LiveView(Mapping):
    """A read-only mapping computed from the registry each time it is read."""

    def __init__(self, items: Callable[[], dict]) -> None:
        self._items = items

    def __getitem__(self, key):
        return self._items()[key]

    def __iter__(self) -> Iterator:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


# Views kept for callers that want plain lookups: format -> writer, suffix -> format.
WRITERS: Mapping[str, Writer] = _LiveView(
    lambda: {name: fmt.load_writer() for name, fmt in _FORMATS.items()}
)
SUFFIXES: Mapping[str, str] = _LiveView(
    lambda: {suffix: fmt.name for fmt in _FORMATS.values() for suffix in fmt.suffixes}
)


def format_for_path(path: Union[str, os.PathLike]) -> str:
    """The format name for ``path``'s suffix (``.stp`` -> ``"step"``), or ExportError."""
    suffix = Path(os.fspath(path)).suffix.lower()
    name = suffix_owner(suffix) if suffix else None
    if name is None:
        raise ExportError(
            f"Can't tell the format of {os.fspath(path)!r} from its suffix {suffix or '(none)'}: "
            f"use one of {', '.join(all_suffixes())}."
        )
    return name


def export_mesh(
    mesh: MeshData,
    path: Union[str, os.PathLike],
    fmt: Optional[str] = None,
    *,
    units: str = DEFAULT_UNIT,
    format_options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
    **options: Any,
) -> Path:
    """Write ``mesh`` to ``path`` as ``fmt`` (default: from the suffix); return the path.

    ``fmt`` is a format name or one of its suffixes without the dot (``"stp"``).
    ``units`` applies to the formats that declare one (DXF, STEP);
    ``format_options`` maps format names to options for that format only (so one
    call site can serve every format: ``{"dxf": {"entity": "mesh"}}``); other
    options go to the writer (see each ``write_<fmt>``), which refuses ones it
    doesn't know. The arrays are validated first (:func:`check_exportable`): a mesh
    no file of that format can hold is a :class:`~..errors.MeshInputError`, nothing
    is written. ``progress`` hears ``(Phase.EXPORTING, faces written, faces)``; a set
    ``cancel`` stops the writer (:class:`~..errors.CancelledError`) and leaves no file.
    """
    name = check_exportable(mesh, path, fmt, units=units, scale=options.get("scale", 1.0))
    entry = _FORMATS[name]
    options = {**(format_options or {}).get(name, {}), **options}
    if entry.units:
        options["units"] = units
    raise_if_cancelled(cancel)
    if entry.streams_progress:
        return entry.load_writer()(mesh, path, progress=progress, cancel=cancel, **options)
    written = entry.load_writer()(mesh, path, **options)
    report(progress, Phase.EXPORTING, mesh.face_count, mesh.face_count)
    return written


def check_exportable(
    mesh: MeshData,
    path: Union[str, os.PathLike],
    fmt: Optional[str] = None,
    *,
    units: str = DEFAULT_UNIT,
    scale: float = 1.0,
) -> str:
    """The format name for ``path``/``fmt`` once ``mesh`` is known to fit it (else an error).

    Callers writing several files run this for all of them first, so a mesh that
    fits GLB but not STEP is refused before the GLB is written.
    """
    from ..mesh.validate import check_for_format
    from .units import length_unit

    name = (fmt or format_for_path(path)).lower()
    name = _FORMATS[name].name if name in _FORMATS else suffix_owner(f".{name}") or name
    if name not in _FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}: use one of {', '.join(_FORMATS)}.")
    if _FORMATS[name].units:
        unit = length_unit(units)
        check_for_format(mesh, name, unit.per_metre, unit.name)
    else:
        check_for_format(mesh, name, float(scale))
    return name


def size_warning(face_count: int, path: Union[str, os.PathLike], fmt: Optional[str] = None):
    """A one-line warning when ``face_count`` faces is more than ``fmt``'s readers can use
    (None otherwise): said before any work, with the way out (decimating)."""
    entry = _FORMATS.get((fmt or format_for_path(path)).lower())
    limit = None if entry is None else entry.usable_faces
    if limit is None or face_count <= limit:
        return None
    return (
        f"{entry.name.upper()} of {face_count:,} faces is more than CAD programs can work "
        f"with (about {limit:,}) and takes minutes to write: decimate first with "
        f"--target-faces {limit // 2:,} (Target Faces in Blender)."
    )


def side_files(path: Union[str, os.PathLike], *, textured: bool = False) -> list[Path]:
    """The extra files written with ``path`` (an OBJ's .mtl; with ``textured``, its PNG too),
    so callers can check them too."""
    fmt, target = _FORMATS[format_for_path(path)], Path(os.fspath(path))
    files = fmt.side_files_for(target)
    if textured and fmt.textures:
        files += fmt.texture_files_for(target)
    return files


def carries_texture(path: Union[str, os.PathLike]) -> bool:
    """Whether the format of ``path`` takes a baked texture (GLB, OBJ)."""
    return _FORMATS[format_for_path(path)].textures


def appearance_note(path: Union[str, os.PathLike], colors: bool, texture: bool) -> Optional[str]:
    """One line saying what the format of ``path`` can't keep of the mesh's looks, or None."""
    fmt = _FORMATS[format_for_path(path)]
    name = fmt.name.upper()
    if (colors or texture) and not fmt.colors:
        dropped = "texture was" if texture else "colours were"
        return f"{name} carries no colour: the {dropped} dropped"
    if texture and not fmt.textures:
        return f"{name} carries no texture: its colours were written as {fmt.colors}"
    return None


register_format(
    ExportFormat(
        "glb",
        (".glb",),
        "glTF Binary",
        "glTF 2.0 binary with vertex colours, Y up",
        ".glb:write_glb",
        textures=True,
    )
)
register_format(
    ExportFormat(
        "obj",
        (".obj",),
        "Wavefront",
        "OBJ with vertex colours and a material file",
        ".obj:write_obj",
        side_files=".obj:material_paths",
        textures=True,
        texture_files=".obj:texture_paths",
    )
)
register_format(
    ExportFormat(
        "dxf",
        (".dxf",),
        "AutoCAD DXF",
        "DXF mesh for CAD, in the chosen unit",
        ".dxf:write_dxf",
        units=True,
        colors="face colours",
        streams_progress=True,
    )
)
register_format(
    ExportFormat(
        "step",
        (".step", ".stp"),
        "STEP",
        "STEP AP214 solid (closed meshes) or surface, for CAD",
        ".step:write_step",
        units=True,
        colors="",
        streams_progress=True,
        # OpenCascade (FreeCAD) takes minutes to read 500k planar faces; past 1M a solid
        # of triangles is beyond what CAD modelling operations handle.
        usable_faces=500_000,
    )
)

__all__ = [
    "FORMATS",
    "SUFFIXES",
    "WRITERS",
    "ExportFormat",
    "Writer",
    "all_suffixes",
    "carries_texture",
    "check_exportable",
    "export_mesh",
    "format_for_path",
    "register_format",
    "side_files",
    "size_warning",
    "suffix_list",
    "texture_format_labels",
    "unregister_format",
]
