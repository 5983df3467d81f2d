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
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from ..choices import Choice, names
from ..errors import DependencyError, ExportError
from ..mesh.meshdata import MeshData
from ..progress import Phase, ProgressCallback, raise_if_cancelled, report
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
    default the mesh's name), ``progress`` (a ``ProgressCallback``: faces written) and
    ``cancel`` (a ``threading.Event``: stop, leaving no file). Any other option is refused.
    """
    refuse_unknown(
        "write_dxf", options, ("units", "entity", "colors", "layer", "progress", "cancel")
    )
    progress, cancel = options.get("progress"), options.get("cancel")
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
        body: Iterator[str] = iter(())
    else:
        chunks = _polyface_chunks(faces)
        # Taken before the drawing is written, so its $HANDSEED is above all of them.
        first_handle = _take_handles(doc, sum(len(used) + len(local) + 2 for used, local in chunks))
        face_rgb = None if colors is None else _rgb(colors[faces].mean(axis=1), packed=True)
        body = _polyface_text(
            first_handle, msp.layout_key, layer, points, chunks, face_rgb, progress, cancel
        )
    raise_if_cancelled(cancel)
    head, tail = _split_at_entities_end(doc)
    with atomic_write(path, "w", encoding=doc.output_encoding, errors="dxfreplace") as stream:
        stream.write(head)
        for text in body:
            stream.write(text)
        stream.write(tail)
    report(progress, Phase.EXPORTING, len(faces), len(faces))
    return Path(path)


def _split_at_entities_end(doc) -> tuple[str, str]:
    """The drawing as text, cut where the ENTITIES section ends (where POLYFACE text goes).

    Written after the handles are taken, so ``$HANDSEED`` is above every one of them.
    """
    import io

    buffer = io.StringIO()
    doc.write(buffer)
    text = buffer.getvalue()
    section = text.index("  2\nENTITIES\n")
    end = text.index("  0\nENDSEC\n", section)
    return text[:end], text[end:]


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


def _polyface_chunks(faces: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``faces`` cut into POLYFACE-sized pieces: (the mesh vertices a piece uses, its faces
    indexing them). An entity holds at most 32767 vertices, as the 16-bit face-record
    indices (group codes 71-74) allow, so big meshes are split by faces."""
    pieces = []
    for start in range(0, len(faces), _POLYFACE_MAX_FACES):
        used, local = np.unique(faces[start : start + _POLYFACE_MAX_FACES], return_inverse=True)
        pieces.append((used, local.reshape(-1, 3)))
    return pieces


def _polyface_text(
    first_handle: int,
    owner: str,
    layer: str,
    points: np.ndarray,
    chunks: list[tuple[np.ndarray, np.ndarray]],
    face_rgb: Optional[np.ndarray],
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
) -> Iterator[str]:
    """One POLYFACE entity (POLYLINE, VERTEX records, SEQEND) as DXF tag text per chunk.

    The tags are the ones ezdxf itself writes for a polyface, formatted a whole
    entity at a time from the arrays, with handles counted up from ``first_handle``:
    an ezdxf object per vertex and face costs 20 times the time and 3 times the
    memory of the MESH entity. Progress is faces written; a cancel stops between chunks.
    """
    entity_text = f"100\nAcDbEntity\n  8\n{layer}\n"
    entity = entity_text.replace("%", "%%")  # the layer name goes into %-templates
    coord_vertex = (
        "  0\nVERTEX\n  5\n%X\n330\n%s\n" + entity
        + "100\nAcDbVertex\n100\nAcDbPolyFaceMeshVertex\n 10\n%r\n 20\n%r\n 30\n%r\n"
        f" 70\n{_POLYFACE_COORD_VERTEX}\n"
    )  # fmt: skip
    face_record = (
        "  0\nVERTEX\n  5\n%X\n330\n%s\n" + entity
        + ("420\n%d\n" if face_rgb is not None else "")
        + f"100\nAcDbFaceRecord\n 10\n0.0\n 20\n0.0\n 30\n0.0\n 70\n{_POLYFACE_VERTEX}\n"
        " 71\n%d\n 72\n%d\n 73\n%d\n"
    )  # fmt: skip
    total = sum(len(local) for _, local in chunks)
    done, handle = 0, first_handle
    for used, local in chunks:
        raise_if_cancelled(cancel)
        own = "%X" % handle
        parts = [
            f"  0\nPOLYLINE\n  5\n{own}\n330\n{owner}\n{entity_text}100\nAcDbPolyFaceMesh\n"
            f" 66\n1\n 10\n0.0\n 20\n0.0\n 30\n0.0\n 70\n64\n"
            f" 71\n{len(used)}\n 72\n{len(local)}\n"
        ]
        handle += 1
        parts.append(_rows(coord_vertex, handle, own, *(c.tolist() for c in points[used].T)))
        handle += len(used)
        columns = [c.tolist() for c in (local + 1).T]  # face records count vertices from 1
        if face_rgb is not None:
            columns.insert(0, face_rgb[done : done + len(local)].tolist())
        parts.append(_rows(face_record, handle, own, *columns))
        handle += len(local)
        parts.append(f"  0\nSEQEND\n  5\n{handle:X}\n330\n{own}\n{entity_text}")
        handle += 1
        done += len(local)
        yield "".join(parts)
        report(progress, Phase.EXPORTING, done, total)


def _rows(template: str, first_id: int, owner: str, *columns: list) -> str:
    """One ``template`` row per element of ``columns``: handle, owner, then the columns."""
    handles = range(first_id, first_id + len(columns[0]))
    return "".join([template % (h, owner, *row) for h, row in zip(handles, zip(*columns))])


def _take_handles(doc, count: int) -> int:
    """Reserve ``count`` entity handles from the drawing's own generator; the first one.

    The generator writes ``$HANDSEED``, so it stays above every handle used here.
    """
    generator = doc.entitydb.handles
    first = int(generator.next(), 16)
    generator.reset("%X" % (first + count))
    return first


def _rgb(colors: np.ndarray, packed: bool = False):
    """sRGB floats in [0, 1] to 8-bit: one ``(r, g, b)``, or with ``packed`` an array of
    24-bit ints (group code 420) per row."""
    rgb = np.clip(np.rint(np.asarray(colors) * 255.0), 0, 255).astype(np.int64)
    if packed:
        return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return tuple(int(x) for x in rgb)


def _store_metadata(doc, mesh: MeshData) -> None:
    """Generator and settings as drawing custom properties (File > Properties in AutoCAD)."""
    custom = doc.header.custom_vars
    custom.append("Generator", generator_name())
    for key, value in json_safe(mesh.metadata).items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        # one tag value; AutoCAD truncates long strings anyway
        custom.append(str(key)[:255], " ".join(text.split())[:255])
