"""STEP (ISO 10303-21, AP214 "automotive_design") writer: the mesh as a B-rep of planar faces.

Our own writer, because CAD tools want a topologically connected solid, not a
triangle soup: every vertex is one CARTESIAN_POINT + VERTEX_POINT, every edge one
EDGE_CURVE on a LINE shared by its two faces (each face runs along it through an
ORIENTED_EDGE with the matching sense), and every flat area an ADVANCED_FACE on a
PLANE bounded by its edge loops: coplanar triangles are merged into one face with
its real boundary, holes included (:func:`.brep_mesh.planar_faces`), so a cube
has 6 faces and a curved surface keeps one face per facet; a merged face is kept
only where it is provably valid (:func:`.brep_mesh.planar_faces`). Each part of
the welded mesh (:class:`..mesh.topology.Parts`, the same answer the summary and
the report give) is written on its own: a closed one as a CLOSED_SHELL inside a
MANIFOLD_SOLID_BREP (an ADVANCED_BREP_SHAPE_REPRESENTATION), or a BREP_WITH_VOIDS
for a solid with closed cavities inside (see :mod:`.brep_mesh`), an open one as
an OPEN_SHELL inside a SHELL_BASED_SURFACE_MODEL (a
MANIFOLD_SURFACE_SHAPE_REPRESENTATION, related to the solids' representation
when the file has both).

Entities of one kind get consecutive ids, so each block is written by one
vectorised pass of ``%``-formatting instead of per-entity Python objects;
20k triangles take well under a second.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ..errors import ExportError
from ..mesh.meshdata import MeshData
from ..progress import Phase, ProgressCallback, raise_if_cancelled, report
from .atomic import PathLike, atomic_write
from .brep_mesh import BrepFaces, BrepMesh, brep_mesh, planar_faces
from .geometry import checked_arrays
from .metadata import generator_name, metadata_json
from .options import refuse_unknown
from .units import DEFAULT_UNIT, LengthUnit, length_unit

log = logging.getLogger(__name__)

SCHEMA = "AUTOMOTIVE_DESIGN { 1 0 10303 214 1 1 1 1 }"
_DIRECTION_DECIMALS = 12
_REFS_PER_LINE = 16
# Entities formatted per block of text: enough that a block's overhead is nothing, few
# enough that a 2M-face mesh never holds more than a few MB of text at once.
_ROWS_PER_CHUNK = 65536


def write_step(mesh: MeshData, path: PathLike, **options: Any) -> Path:
    """Write ``mesh`` as a STEP AP214 file at ``path`` (atomically) and return the path.

    Options: ``units`` ("mm" default; "cm", "m", "in", "ft"): Blender metres are
    scaled to it and the file declares it. ``merge_coplanar`` (default True): each
    flat area becomes one planar face with its real boundary, as CAD programs
    expect (FreeCAD's "refine shape"); False writes one face per triangle.
    ``coplanar_tolerance``: how far (in ``units``) a vertex may sit off a merged
    face's plane; default the welding tolerance, a millionth of the model's size.
    ``progress`` (a ``ProgressCallback``: faces written) and ``cancel`` (a
    ``threading.Event``: stop, leaving no file). Any other option is refused.
    """
    refuse_unknown(
        "write_step",
        options,
        ("units", "merge_coplanar", "coplanar_tolerance", "progress", "cancel"),
    )
    progress, cancel = options.get("progress"), options.get("cancel")
    unit = length_unit(options.get("units", DEFAULT_UNIT))
    merge = bool(options.get("merge_coplanar", True))
    tolerance = options.get("coplanar_tolerance")
    if tolerance is not None and not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ExportError(f"coplanar_tolerance must be a positive length, got {tolerance!r}.")
    with atomic_write(path, "wb") as stream:
        chunks = step_chunks(
            mesh,
            unit,
            file_name=Path(path).name,
            merge_coplanar=merge,
            tolerance=tolerance,
            progress=progress,
            cancel=cancel,
        )
        for chunk in chunks:
            stream.write(chunk.encode("ascii"))
    report(progress, Phase.EXPORTING, mesh.face_count, mesh.face_count)
    return Path(path)


def step_chunks(
    mesh: MeshData,
    unit: LengthUnit,
    file_name: str = "",
    *,
    merge_coplanar: bool = True,
    tolerance: Optional[float] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
) -> Iterator[str]:
    """The STEP file for ``mesh`` as a sequence of ASCII text chunks.

    ``progress`` hears ``(Phase.EXPORTING, faces written, faces)``; ``cancel`` stops
    between chunks (:class:`~..errors.CancelledError`).
    """
    vertices, faces, _ = checked_arrays(mesh)
    total = len(faces)
    report(progress, Phase.EXPORTING, 0, total)
    points = vertices * unit.per_metre
    decimals = _coordinate_decimals(points)
    topo = brep_mesh(points, faces, decimals)
    raise_if_cancelled(cancel)
    if not topo.closed:
        log.info("mesh %r is not closed: writing it as an open shell (surface model)", mesh.name)
    faces = planar_faces(topo, (tolerance or topo.tolerance) if merge_coplanar else None)
    raise_if_cancelled(cancel)
    log.debug("STEP: %d triangles as %d planar faces", len(topo.faces), faces.count)
    name = step_string(mesh.name)
    yield _header(mesh, file_name)
    writer = _DataWriter(topo, faces, decimals, name, unit)
    yield from writer.chunks(total, progress, cancel)
    yield "ENDSEC;\nEND-ISO-10303-21;\n"


def step_string(text: str) -> str:
    """``text`` as an ISO 10303-21 string literal, quotes included, in pure ASCII.

    ``'`` is doubled, ``\\`` doubled, other printable ASCII kept; any other
    character goes into a ``\\X2\\…\\X0\\`` run of UTF-16 hex digits (``\\X4\\`` with
    8 digits for characters beyond the BMP). Control characters become spaces.
    """
    out = []
    run: list[str] = []
    wide = False

    def flush() -> None:
        if run:
            out.append(("\\X4\\" if wide else "\\X2\\") + "".join(run) + "\\X0\\")
            run.clear()

    for char in str(text):
        code = ord(char)
        if 0x20 <= code < 0x7F:
            flush()
            out.append("''" if char == "'" else "\\\\" if char == "\\" else char)
        elif code < 0x20 or code == 0x7F:
            flush()
            out.append(" ")
        else:
            is_wide = code > 0xFFFF
            if run and is_wide != wide:
                flush()
            wide = is_wide
            run.append(f"{code:08X}" if is_wide else f"{code:04X}")
    flush()
    return "'" + "".join(out) + "'"


def _coordinate_decimals(points: np.ndarray) -> int:
    """Decimals that keep about 10^-9 of the model's size: far below the welding tolerance."""
    extent = float(np.abs(points).max()) if points.size else 1.0
    magnitude = math.floor(math.log10(extent)) if extent > 0 else 0
    return int(min(max(9 - magnitude, 3), 15))


def _real(value: float) -> str:
    """A REAL as ISO 10303-21 wants it: always a decimal point, upper-case exponent."""
    text = f"{value:.6E}"
    mantissa, exponent = text.split("E")
    return f"{mantissa.rstrip('0')}E{exponent}" if "." in mantissa else text


def _header(mesh: MeshData, file_name: str) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    settings = step_string("settings: " + metadata_json(mesh.metadata))
    generator = step_string(generator_name())
    return (
        "ISO-10303-21;\nHEADER;\n"
        f"FILE_DESCRIPTION(('blender_img3d mesh',{settings}),'2;1');\n"
        f"FILE_NAME({step_string(file_name)},'{stamp}',(''),(''),{generator},{generator},'');\n"
        f"FILE_SCHEMA(('{SCHEMA}'));\nENDSEC;\nDATA;\n"
    )


class _DataWriter:
    """Lays out entity ids block by block and formats each block in one pass."""

    def __init__(
        self, topo: BrepMesh, faces: BrepFaces, decimals: int, name: str, unit: LengthUnit
    ) -> None:
        self.topo = topo
        self.faces = faces
        self.name = name
        self.unit = unit
        self.coord = f"%.{decimals}f"
        self.direction = f"%.{_DIRECTION_DECIMALS}f"
        self.next_id = 1

    def reserve(self, count: int) -> int:
        first = self.next_id
        self.next_id += count
        return first

    def chunks(
        self,
        faces: int,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[threading.Event] = None,
    ) -> Iterator[str]:
        """The DATA section's entities as text blocks; progress in (a share of) faces.

        The entity count is known once the blocks have reserved their ids, so progress
        reports ``faces`` (the mesh's) × entities written / entities; a cancel stops
        between blocks.
        """
        product_ids = 32  # see _blocks: reserved first, written last
        for text in self._blocks():
            raise_if_cancelled(cancel)
            # Blocks come in id order after the product's ids, so the id a block starts
            # with counts the entities written before it (no pass over the text).
            before = int(text[1 : text.index("=")]) - 1 - product_ids if text else 0
            total = max(self.next_id - 1 - product_ids, before, 1)
            report(progress, Phase.EXPORTING, faces * max(before, 0) // total, faces)
            yield text

    def _blocks(self) -> Iterator[str]:
        topo, faces = self.topo, self.faces
        used_edges, loop_edge = np.unique(faces.loop_edges, return_inverse=True)
        v, e, f = len(topo.points), len(used_edges), faces.count
        n_oriented, n_loops = len(faces.loop_edges), len(faces.loop_start) - 1
        product = self.reserve(32)  # fixed product/context entities, see _product()
        point = self.reserve(v)
        vertex = self.reserve(v)
        edge_dir = self.reserve(e)
        edge_vec = self.reserve(e)
        edge_line = self.reserve(e)
        edge_curve = self.reserve(e)
        oriented = self.reserve(n_oriented)
        loop = self.reserve(n_loops)
        bound = self.reserve(n_loops)
        normal = self.reserve(f)
        placement = self.reserve(f)
        plane = self.reserve(f)
        face = self.reserve(f)
        shell = self.reserve(topo.component_count)

        p = topo.points
        yield from _rows(f"#%d=CARTESIAN_POINT('',({self.coord},{self.coord},{self.coord}));\n",
                    point, p[:, 0], p[:, 1], p[:, 2])  # fmt: skip
        yield from _rows("#%d=VERTEX_POINT('',#%d);\n", vertex, np.arange(v) + point)

        low, high = topo.edges[used_edges, 0], topo.edges[used_edges, 1]
        span = p[high] - p[low]
        length = np.linalg.norm(span, axis=1)
        unit_span = span / length[:, None]
        d = self.direction
        yield from _rows(f"#%d=DIRECTION('',({d},{d},{d}));\n",
                    edge_dir, unit_span[:, 0], unit_span[:, 1], unit_span[:, 2])  # fmt: skip
        ids = np.arange(e)
        yield from _rows(f"#%d=VECTOR('',#%d,{self.coord});\n", edge_vec, ids + edge_dir, length)
        yield from _rows("#%d=LINE('',#%d,#%d);\n", edge_line, low + point, ids + edge_vec)
        yield from _rows("#%d=EDGE_CURVE('',#%d,#%d,#%d,.T.);\n",
                    edge_curve, low + vertex, high + vertex, ids + edge_line)  # fmt: skip

        sense = np.where(faces.loop_forward, ord("T"), ord("F"))  # %c: a numeric block
        yield from _rows("#%d=ORIENTED_EDGE('',*,*,#%d,.%c.);\n",
                    oriented, loop_edge + edge_curve, sense)  # fmt: skip
        starts = faces.loop_start
        if np.all(np.diff(starts) == 3):  # triangles only: one vectorised pass
            first_oe = starts[:-1] + oriented
            yield from _rows("#%d=EDGE_LOOP('',(#%d,#%d,#%d));\n",
                        loop, first_oe, first_oe + 1, first_oe + 2)  # fmt: skip
        else:
            yield from _batched(
                f"#{loop + k}=EDGE_LOOP('',({_range_refs(oriented + a, oriented + b)}));\n"
                for k, (a, b) in enumerate(zip(starts[:-1].tolist(), starts[1:].tolist()))
            )
        if n_loops == f:  # no holes: every bound is an outer one, no column of names
            yield from _rows(
                "#%d=FACE_OUTER_BOUND('',#%d,.T.);\n", bound, np.arange(n_loops) + loop
            )
        else:
            is_outer = np.zeros(n_loops, dtype=bool)
            is_outer[[ids[0] for ids in faces.face_loops]] = True
            kind = np.where(is_outer, "FACE_OUTER_BOUND", "FACE_BOUND")
            yield from _rows("#%d=%s('',#%d,.T.);\n", bound, kind, np.arange(n_loops) + loop)

        normals = faces.normal
        yield from _rows(f"#%d=DIRECTION('',({d},{d},{d}));\n",
                    normal, normals[:, 0], normals[:, 1], normals[:, 2])  # fmt: skip
        # The plane's x axis is an outer-loop edge's direction (in the plane by construction).
        x_edge = np.searchsorted(used_edges, faces.x_edge)
        ids = np.arange(f)
        yield from _rows("#%d=AXIS2_PLACEMENT_3D('',#%d,#%d,#%d);\n",
                    placement, faces.origin + point, ids + normal, x_edge + edge_dir)  # fmt: skip
        yield from _rows("#%d=PLANE('',#%d);\n", plane, ids + placement)
        if n_loops == f:
            yield from _rows("#%d=ADVANCED_FACE('',(#%d),#%d,.T.);\n",
                        face, np.array([ids[0] for ids in faces.face_loops]) + bound,
                        ids + plane)  # fmt: skip
        else:
            yield from _batched(
                f"#{face + i}=ADVANCED_FACE('',({_refs([bound + k for k in loops])}),"
                f"#{plane + i},.T.);\n"
                for i, loops in enumerate(faces.face_loops)
            )

        kinds = np.where(topo.shell_closed, "CLOSED_SHELL", "OPEN_SHELL").tolist()
        order = np.argsort(faces.component, kind="stable")
        splits = np.cumsum(np.bincount(faces.component, minlength=topo.component_count))
        groups = np.split(order + face, splits[:-1])
        yield from _batched(
            f"#{shell + i}={kinds[i]}('',({_refs(group)}));\n" for i, group in enumerate(groups)
        )
        yield self._product(product, shell, topo.component_count)

    def _solids(self, shell: int) -> tuple[str, str]:
        """One solid per outer shell, with its voids; the entities and their references."""
        void_of = self.topo.void_of
        outer = np.flatnonzero((void_of < 0) & self.topo.shell_closed)
        voids = np.flatnonzero(void_of >= 0)
        solid = self.reserve(len(outer))
        oriented = self.reserve(len(voids))
        # ORIENTED_CLOSED_SHELL(.F.): the void's shell, seen from the solid's material.
        lines = [f"#{oriented + i}=ORIENTED_CLOSED_SHELL('',*,#{shell + v},.F.);\n"
                 for i, v in enumerate(voids.tolist())]  # fmt: skip
        oriented_of = {int(v): oriented + i for i, v in enumerate(voids.tolist())}
        voids_of: dict[int, list[int]] = {}
        for v in voids.tolist():
            voids_of.setdefault(int(void_of[v]), []).append(oriented_of[v])
        for i, component in enumerate(outer.tolist()):
            if component in voids_of:
                lines.append(f"#{solid + i}=BREP_WITH_VOIDS({self.name},#{shell + component},"
                             f"({_refs(voids_of[component])}));\n")  # fmt: skip
            else:
                lines.append(
                    f"#{solid + i}=MANIFOLD_SOLID_BREP({self.name},#{shell + component});\n"
                )
        return "".join(lines), _refs(range(solid, solid + len(outer)))

    def _product(self, first: int, shell: int, shells: int) -> str:
        """Product structure, units, context and the shape representation.

        Uses ids ``first`` .. ``first + 31`` (fixed layout) plus ids after the shells.
        """
        n = first
        name = self.name
        closed = self.topo.shell_closed
        open_refs = _refs(np.flatnonzero(~closed) + shell)
        if closed.all():
            items, item_refs = self._solids(shell)
            representation = "ADVANCED_BREP_SHAPE_REPRESENTATION"
        elif not closed.any():
            solid = self.reserve(1)
            items = f"#{solid}=SHELL_BASED_SURFACE_MODEL({name},({open_refs}));\n"
            representation = "MANIFOLD_SURFACE_SHAPE_REPRESENTATION"
            item_refs = f"#{solid}"
        else:
            # Closed parts are solids, open ones surfaces: two representations of the
            # product, the surfaces' related to the solids' (as CAD systems write a
            # part with both), since neither kind may hold the other's items.
            items, item_refs = self._solids(shell)
            representation = "ADVANCED_BREP_SHAPE_REPRESENTATION"
            model = self.reserve(3)
            surfaces, related = model + 1, model + 2
            items += (
                f"#{model}=SHELL_BASED_SURFACE_MODEL({name},({open_refs}));\n"
                f"#{surfaces}=MANIFOLD_SURFACE_SHAPE_REPRESENTATION({name},"
                f"(#{n + 11},#{model}),#{n + 15});\n"
                f"#{related}=SHAPE_REPRESENTATION_RELATIONSHIP('','',#{n + 10},#{surfaces});\n"
            )
        unit = self.unit
        if unit.step_conversion_mm:
            length_unit_text = (
                f"#{n + 20}=(LENGTH_UNIT()NAMED_UNIT(*)SI_UNIT(.MILLI.,.METRE.));\n"
                f"#{n + 21}=LENGTH_MEASURE_WITH_UNIT(LENGTH_MEASURE("
                f"{_real(unit.step_conversion_mm)}),#{n + 20});\n"
                f"#{n + 22}=DIMENSIONAL_EXPONENTS(1.,0.,0.,0.,0.,0.,0.);\n"
                f"#{n + 16}=(CONVERSION_BASED_UNIT({step_string(unit.name.upper())},#{n + 21})"
                f"LENGTH_UNIT()NAMED_UNIT(#{n + 22}));\n"
            )
        else:
            prefix = unit.step_si_prefix or "$"
            length_unit_text = f"#{n + 16}=(LENGTH_UNIT()NAMED_UNIT(*)SI_UNIT({prefix},.METRE.));\n"
        uncertainty = _real(min(1e-7, self.topo.tolerance / 10.0))
        return (
            items
            + f"#{n}=APPLICATION_CONTEXT('core data for automotive mechanical design processes');\n"
            f"#{n + 1}=APPLICATION_PROTOCOL_DEFINITION('international standard',"
            f"'automotive_design',2000,#{n});\n"
            f"#{n + 2}=PRODUCT_CONTEXT('',#{n},'mechanical');\n"
            f"#{n + 3}=PRODUCT({name},{name},'',(#{n + 2}));\n"
            f"#{n + 4}=PRODUCT_RELATED_PRODUCT_CATEGORY('part',$,(#{n + 3}));\n"
            f"#{n + 5}=PRODUCT_DEFINITION_FORMATION('','',#{n + 3});\n"
            f"#{n + 6}=PRODUCT_DEFINITION_CONTEXT('part definition',#{n},'design');\n"
            f"#{n + 7}=PRODUCT_DEFINITION('design','',#{n + 5},#{n + 6});\n"
            f"#{n + 8}=PRODUCT_DEFINITION_SHAPE('','',#{n + 7});\n"
            f"#{n + 9}=SHAPE_DEFINITION_REPRESENTATION(#{n + 8},#{n + 10});\n"
            f"#{n + 10}={representation}({name},(#{n + 11},{item_refs}),#{n + 15});\n"
            f"#{n + 11}=AXIS2_PLACEMENT_3D('',#{n + 12},#{n + 13},#{n + 14});\n"
            f"#{n + 12}=CARTESIAN_POINT('',(0.,0.,0.));\n"
            f"#{n + 13}=DIRECTION('',(0.,0.,1.));\n"
            f"#{n + 14}=DIRECTION('',(1.,0.,0.));\n"
            f"#{n + 15}=(GEOMETRIC_REPRESENTATION_CONTEXT(3)"
            f"GLOBAL_UNCERTAINTY_ASSIGNED_CONTEXT((#{n + 19}))"
            f"GLOBAL_UNIT_ASSIGNED_CONTEXT((#{n + 16},#{n + 17},#{n + 18}))"
            f"REPRESENTATION_CONTEXT('3D','3D context with units and uncertainty'));\n"
            + length_unit_text
            + f"#{n + 17}=(NAMED_UNIT(*)PLANE_ANGLE_UNIT()SI_UNIT($,.RADIAN.));\n"
            f"#{n + 18}=(NAMED_UNIT(*)SI_UNIT($,.STERADIAN.)SOLID_ANGLE_UNIT());\n"
            f"#{n + 19}=UNCERTAINTY_MEASURE_WITH_UNIT(LENGTH_MEASURE({uncertainty}),#{n + 16},"
            "'distance_accuracy_value','confusion accuracy');\n"
        )


def _rows(template: str, first_id: int, *columns: Sequence) -> Iterator[str]:
    """Format one row per element of ``columns``, numbering rows from ``first_id``.

    Yields blocks of :data:`_ROWS_PER_CHUNK` rows: the text of a 2M-face mesh is
    gigabytes, and only one block of it (and its columns as Python lists) is held.
    """
    count = len(columns[0])
    numeric = all(isinstance(c, np.ndarray) and c.dtype.kind in "iuf" for c in columns)
    for start in range(0, count, _ROWS_PER_CHUNK):
        stop = min(count, start + _ROWS_PER_CHUNK)
        if numeric:
            # One ``%`` over the whole block: a third faster than one per row. Integers
            # ride as float64 where a column is float, exact below 2^53 (ids are far below).
            ids = np.arange(first_id + start, first_id + stop)
            flat = np.column_stack([ids, *(c[start:stop] for c in columns)]).ravel().tolist()
            yield (template * (stop - start)) % tuple(flat)
            continue
        ids = range(first_id + start, first_id + stop)
        values = [c[start:stop].tolist() if isinstance(c, np.ndarray) else list(c[start:stop])
                  for c in columns]  # fmt: skip
        yield "".join([template % row for row in zip(ids, *values)])


def _batched(lines: Iterator[str]) -> Iterator[str]:
    """``lines`` joined into blocks of at most :data:`_ROWS_PER_CHUNK`."""
    block: list[str] = []
    for line in lines:
        block.append(line)
        if len(block) == _ROWS_PER_CHUNK:
            yield "".join(block)
            block = []
    if block:
        yield "".join(block)


def _range_refs(first: int, stop: int) -> str:
    """:func:`_refs` of ``range(first, stop)`` in plain Python: an edge loop's oriented
    edges are consecutive, and a million loops can't afford an array each."""
    refs = [f"#{i}" for i in range(first, stop)]
    if len(refs) <= _REFS_PER_LINE:
        return ",".join(refs)
    return ",\n".join(
        ",".join(refs[i : i + _REFS_PER_LINE]) for i in range(0, len(refs), _REFS_PER_LINE)
    )


def _refs(ids) -> str:
    """``#a,#b,...`` with a line break every few references (Part 21 allows whitespace)."""
    refs = [f"#{i}" for i in np.asarray(ids).tolist()]
    return ",\n".join(
        ",".join(refs[i : i + _REFS_PER_LINE]) for i in range(0, len(refs), _REFS_PER_LINE)
    )
