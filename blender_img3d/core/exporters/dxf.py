"""DXF writer (ezdxf): the mesh as POLYFACE entities (default) or one MESH entity.

POLYFACE (a polyface mesh, DXF R12 and later) is what most readers open:
AutoCAD, BricsCAD, LibreCAD's viewers, FreeCAD and assimp all read it, where MESH
(AcDbSubDMesh, AutoCAD 2010+) is read by Autodesk-grade programs only (assimp
says "no 3d data", FreeCAD 0.20 imports nothing). A POLYFACE holds at most 32,767
vertices, so bigger meshes are split into several on the same layer.

DXF is Z-up like Blender, so only the unit changes: coordinates are scaled from
metres to ``units`` (mm by default) and ``$INSUNITS``/``$MEASUREMENT`` say so.
The entity sits on a layer named after the object. MESH data is handed to ezdxf
as whole arrays (its vertex-merging builders are far too slow for 200k
triangles); MESH carries one colour, so with vertex colours the entity gets their
mean as a true colour, while POLYFACE gives each face its own.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..choices import Choice, names
from ..errors import DependencyError, ExportError
from ..mesh.meshdata import MeshData
from .atomic import PathLike, atomic_write
from .geometry import checked_arrays
from .metadata import generator_name, json_safe
from .options import refuse_unknown
from .units import DEFAULT_UNIT, length_unit

log = logging.getLogger(__name__)

DXF_ENTITIES = (
    Choice("polyface", "Polyface", "POLYFACE entities: open in almost every CAD program"),
    Choice("mesh", "Mesh", "One MESH entity (AutoCAD 2010+ and other Autodesk-grade readers)"),
)
ENTITY_KINDS = names(DXF_ENTITIES)
DEFAULT_ENTITY = ENTITY_KINDS[0]
# Characters AutoCAD forbids in table names, plus control characters and '|' (xref separator).
_BAD_LAYER_CHARS = re.compile(r'[<>/\\":;?*=`|,\x00-\x1f\x7f]')
_MAX_LAYER_NAME = 255
_POLYFACE_VERTEX = 128  # VERTEX flag: belongs to a polyface mesh
_POLYFACE_COORD_VERTEX = 128 | 64  # ... and is a coordinate vertex, not a face record
_POLYFACE_MAX_FACES = 32767 // 3  # so one entity never needs more than 32767 vertices


def write_dxf(mesh: MeshData, path: PathLike, **options: Any) -> Path:
    """Write ``mesh`` as a DXF drawing at ``path`` (atomically) and return the path.

    Options: ``units`` ("mm" default; "cm", "m", "in", "ft"), ``entity`` ("polyface"
    default, or "mesh"; see :data:`DXF_ENTITIES`), ``colors`` (bool, default True:
    write true colours when the mesh has vertex colours), ``layer`` (layer name;
    default the mesh's name). Any other option is refused.
    """
    refuse_unknown("write_dxf", options, ("units", "entity", "colors", "layer"))
    unit = length_unit(options.get("units", DEFAULT_UNIT))
    kind = str(options.get("entity", DEFAULT_ENTITY)).lower()
    with_colors = bool(options.get("colors", True))
    layer = layer_name(options.get("layer") or mesh.name)
    if kind not in ENTITY_KINDS:
        raise ExportError(f"DXF entity must be one of {', '.join(ENTITY_KINDS)}, got {kind!r}.")
    try:
        import ezdxf
    except ImportError as error:
        raise DependencyError(
            "DXF export needs the 'ezdxf' package; install the add-on's dependencies "
            "(Preferences > Add-ons > blender_img3d > Install dependencies)."
        ) from error

    vertices, faces, colors = checked_arrays(mesh)
    points = vertices * unit.per_metre
    colors = colors if with_colors else None

    doc = ezdxf.new("R2013", setup=False)
    doc.units = unit.dxf_insunits
    doc.header["$MEASUREMENT"] = 0 if unit.name in ("in", "ft") else 1
    doc.header["$LUNITS"] = 2  # decimal
    _store_metadata(doc, mesh)
    doc.layers.add(layer)
    msp = doc.modelspace()
    if kind == "mesh":
        _add_mesh(msp, layer, points, faces, colors)
    else:
        _add_polyface(msp, layer, points, faces, colors)

    with atomic_write(path, "w", encoding=doc.output_encoding, errors="dxfreplace") as stream:
        doc.write(stream)
    return Path(path)


def layer_name(name: str) -> str:
    """``name`` made legal as a DXF layer name (no ``<>/\\":;?*=`|,``, ≤ 255 characters)."""
    cleaned = _BAD_LAYER_CHARS.sub("_", " ".join(str(name).split()))
    cleaned = cleaned.strip(" _")[:_MAX_LAYER_NAME]
    # "0" and "Defpoints" are AutoCAD's own layers.
    if not cleaned or cleaned.lower() in ("0", "defpoints"):
        cleaned = f"img3d_{cleaned}" if cleaned else "img3d"
    return cleaned


def _add_mesh(msp, layer: str, points: np.ndarray, faces: np.ndarray, colors) -> None:
    entity = msp.add_mesh(dxfattribs={"layer": layer})
    entity.vertices = points.tolist()
    entity.faces = faces.tolist()
    if colors is not None:
        entity.rgb = _rgb(colors.mean(axis=0))


def _add_polyface(msp, layer: str, points: np.ndarray, faces: np.ndarray, colors) -> None:
    """One or more POLYFACE entities; each holds at most 32767 vertices, as the 16-bit
    face-record indices (group codes 71-74) allow, so big meshes are split by faces."""
    face_rgb = None if colors is None else _rgb(colors[faces].mean(axis=1))
    for start in range(0, len(faces), _POLYFACE_MAX_FACES):
        chunk = faces[start : start + _POLYFACE_MAX_FACES]
        used, local = np.unique(chunk, return_inverse=True)
        rgb = None if face_rgb is None else face_rgb[start : start + len(chunk)]
        _add_one_polyface(msp, layer, points[used], local.reshape(-1, 3), rgb)


def _add_one_polyface(msp, layer: str, points: np.ndarray, faces: np.ndarray, face_rgb) -> None:
    polyface = msp.add_polyface(dxfattribs={"layer": layer})
    # ezdxf's append_faces() merges vertices through a slow builder; the vertex and
    # face-record entities are made directly instead, as its own loader does.
    new = polyface._new_compound_entity
    records = []
    for point in points.tolist():
        records.append(
            new("VERTEX", {"layer": layer, "flags": _POLYFACE_COORD_VERTEX, "location": point})
        )
    for index, (a, b, c) in enumerate((faces + 1).tolist()):
        attribs = {
            "layer": layer,
            "flags": _POLYFACE_VERTEX,
            "location": (0.0, 0.0, 0.0),
            "vtx0": a,
            "vtx1": b,
            "vtx2": c,
        }
        if face_rgb is not None:
            attribs["true_color"] = face_rgb[index]
        records.append(new("VERTEX", attribs))
    polyface.vertices.extend(records)
    polyface.update_count(len(points), len(faces))


def _rgb(colors: np.ndarray):
    """sRGB floats in [0, 1] to 8-bit: one ``(r, g, b)`` or a list of packed 24-bit ints."""
    rgb = np.clip(np.rint(np.asarray(colors) * 255.0), 0, 255).astype(np.int64)
    if rgb.ndim == 1:
        return tuple(int(x) for x in rgb)
    return ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).tolist()


def _store_metadata(doc, mesh: MeshData) -> None:
    """Generator and settings as drawing custom properties (File > Properties in AutoCAD)."""
    custom = doc.header.custom_vars
    custom.append("Generator", generator_name())
    for key, value in json_safe(mesh.metadata).items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        # one tag value; AutoCAD truncates long strings anyway
        custom.append(str(key)[:255], " ".join(text.split())[:255])
