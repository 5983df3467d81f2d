"""A triangle mesh made fit for a boundary representation (B-rep), and its topology.

A CAD kernel rejects what a renderer shrugs off: a zero-area triangle has no
plane, two vertices a hair apart make a sliver edge, and either breaks a closed
shell into an invalid solid. Before writing STEP we therefore weld vertices
closer than a tolerance, drop triangles that collapse, and flip the edge under
each remaining "cap" (a triangle whose third vertex lies on its longest edge),
which removes it without moving any surface, so a closed mesh stays closed and
keeps its volume. Then the shared edges, their orientation in each face, and the
connected components are worked out once, as arrays, for the writer.

Marching cubes of a field with holes inside gives closed pieces wound inwards:
the walls of voids. A void is not a solid of its own (that would add its volume
instead of taking it away); it belongs to the smallest solid that encloses it,
and STEP writes the pair as a BREP_WITH_VOIDS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import ExportError
from ..mesh.topology import edge_table, enclosing_pieces, is_closed, signed_volumes, vertex_labels

log = logging.getLogger(__name__)

# Welding and cap tolerance as a fraction of the bounding-box diagonal.
RELATIVE_TOLERANCE = 1e-6
# When welding at the full tolerance would open a closed mesh, these fractions of it
# are tried in turn (the last one is still 100 times the precision the file carries).
_TOLERANCE_SCALES = (1.0, 0.1, 0.01)
_MAX_FLIP_PASSES = 16


@dataclass
class BrepMesh:
    """A welded triangle mesh with its unique edges, ready to become B-rep topology.

    ``edges`` (E, 2) holds each undirected edge once as (low, high) vertex index;
    ``face_edges`` (F, 3) the edge under each face corner k (from corner k to k+1),
    and ``face_edge_forward`` whether the face runs along it low → high.
    ``face_component`` labels each face with its connected component.
    ``void_of`` gives, per component, the component whose void it is, or -1 for a
    solid's outer shell (and for every shell of an open mesh). A void's faces are
    stored reversed, wound outwards from the void as ISO 10303-42 wants of the
    closed shell that an ORIENTED_CLOSED_SHELL(.F.) turns into the void.
    """

    points: np.ndarray
    faces: np.ndarray
    edges: np.ndarray
    face_edges: np.ndarray
    face_edge_forward: np.ndarray
    face_component: np.ndarray
    component_count: int
    closed: bool
    tolerance: float
    void_of: np.ndarray


def brep_mesh(points: np.ndarray, faces: np.ndarray, decimals: int) -> BrepMesh:
    """Weld, clean and analyse ``points``/``faces`` (already in output units).

    ``decimals`` is the precision the file will carry; coordinates are rounded to
    it first, so every later test (zero area, welding) judges what a reader will see.
    """
    points = np.round(np.asarray(points, dtype=np.float64), decimals)
    faces = np.asarray(faces, dtype=np.int64)
    was_closed = is_closed(faces, len(points))
    full_tolerance = tolerance_for(points)
    for scale in _TOLERANCE_SCALES:
        tolerance = full_tolerance * scale
        welded, kept, dropped = _weld_and_flatten(points, faces, tolerance)
        if not was_closed or is_closed(kept, len(welded)):
            break
        # Marching cubes pinches thin parts into necks a few micrometres wide; welding
        # across one tears the surface. Such a neck is real, so weld less.
        log.info("welding at %.3g opened the closed mesh; trying a smaller tolerance", tolerance)
    points, faces = welded, kept
    if dropped:
        log.warning("dropped %d flat triangles that no edge flip could remove", dropped)
    if len(faces) == 0:
        raise ExportError(
            "Every triangle of the mesh has zero area at the chosen units; "
            "there is no surface to write. Check the mesh's size and units."
        )
    points, faces = _drop_unused(points, faces)

    table = edge_table(faces, len(points))
    count, component_of_vertex = vertex_labels(faces, len(points))
    face_component = component_of_vertex[faces[:, 0]]
    closed = is_closed(faces, len(points), table)
    void_of = np.full(count, -1, dtype=np.int64)
    if closed and count > 1:
        void_of, reversed_faces = _voids(points, faces, face_component, count)
        if reversed_faces.any():
            faces = faces.copy()
            faces[reversed_faces] = faces[reversed_faces][:, ::-1]
            # The same undirected edges, so they keep their numbers.
            table = edge_table(faces, len(points))
    return BrepMesh(
        points=points,
        faces=faces,
        edges=table.edges,
        face_edges=table.face_edges,
        face_edge_forward=table.forward,
        face_component=face_component,
        component_count=count,
        closed=closed,
        tolerance=tolerance,
        void_of=void_of,
    )


def _voids(points: np.ndarray, faces: np.ndarray, face_component: np.ndarray, count: int):
    """Which closed component is a void of which solid, and which faces to reverse.

    Components wound inwards (negative volume) are voids; each goes to the smallest
    outward one that encloses it (bounding box first, then a ray test of one face
    centre). An inward piece that nothing encloses is a solid written inside out:
    its faces are reversed and it stays a solid of its own.
    """
    volume = np.bincount(face_component, weights=signed_volumes(points, faces), minlength=count)
    void_of = np.full(count, -1, dtype=np.int64)
    inward = np.flatnonzero(volume < 0)
    if len(inward) == 0:
        return void_of, np.zeros(len(faces), dtype=bool)
    # Smallest solid first: a void belongs to the innermost solid around it.
    solids = sorted(np.flatnonzero(volume > 0).tolist(), key=lambda c: volume[c])
    candidates = np.zeros(count, dtype=bool)
    candidates[inward] = True
    owner = enclosing_pieces(
        points, faces, face_component, count, np.array(solids, dtype=np.int64), candidates
    )
    void_of[inward] = owner[inward]
    unassigned = owner < 0
    orphans = int(np.count_nonzero(unassigned[inward]))
    if orphans:
        log.warning("%d closed pieces are wound inside out; writing them turned right", orphans)
    # Voids are reversed for their ORIENTED_CLOSED_SHELL, orphans to become proper solids.
    return void_of, np.isin(face_component, inward)


def _weld_and_flatten(points: np.ndarray, faces: np.ndarray, tolerance: float):
    """Weld within ``tolerance``, drop collapsed triangles and flip away flat ones.

    Also says how many flat triangles had to be dropped instead (which may open the mesh).
    """
    points, faces = _weld(points, faces, tolerance)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2])]
    faces = faces[faces[:, 2] != faces[:, 0]]
    flipped = _flip_caps(points, faces, tolerance)
    return points, flipped, len(faces) - len(flipped)


def tolerance_for(points: np.ndarray) -> float:
    """Welding distance for a mesh of this size (see :data:`RELATIVE_TOLERANCE`)."""
    diagonal = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))
    if not diagonal > 0.0:
        raise ExportError("All vertices of the mesh are at one point: it has no size to export.")
    return diagonal * RELATIVE_TOLERANCE


def _weld(points: np.ndarray, faces: np.ndarray, tolerance: float):
    """Merge vertices closer than about ``tolerance``.

    Two grid passes, the second shifted by half a cell, catch pairs that the
    first splits across a cell boundary.
    """
    for shift in (0.0, 0.5):
        cells = np.floor(points / tolerance + shift).astype(np.int64)
        _, first, inverse = np.unique(cells, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        if len(first) == len(points):
            continue
        points = points[first]
        faces = inverse[faces]
    return points, faces


def _drop_unused(points: np.ndarray, faces: np.ndarray):
    used, inverse = np.unique(faces, return_inverse=True)
    return points[used], inverse.reshape(-1, 3)


def _cap_heights(points: np.ndarray, faces: np.ndarray):
    """Each face's height over its longest edge, and which corner starts that edge."""
    corners = points[faces]
    sides = np.roll(corners, -1, axis=1) - corners  # side k runs from corner k to k+1
    lengths = np.linalg.norm(sides, axis=2)
    longest = lengths.argmax(axis=1)
    doubled_area = np.linalg.norm(np.cross(sides[:, 0], -sides[:, 2]), axis=1)
    return doubled_area / lengths.max(axis=1), longest


def _flip_caps(points: np.ndarray, faces: np.ndarray, tolerance: float) -> np.ndarray:
    """Remove flat triangles by flipping the edge they lie on with their neighbour.

    A cap (a, b, c) with c on its longest edge ab and the neighbour (b, a, d) across
    that edge become (a, d, c) and (d, b, c): the same surface, no zero-area face.
    Caps that can't be flipped (no neighbour, or the new edge exists already) are
    dropped, which may open the mesh; the writer then falls back to an open shell.
    """
    faces = faces.copy()
    for _ in range(_MAX_FLIP_PASSES):
        heights, longest = _cap_heights(points, faces)
        caps = np.flatnonzero(heights < tolerance)
        if len(caps) == 0:
            return faces
        count = len(points)
        directed = np.stack([faces, np.roll(faces, -1, axis=1)], axis=2).reshape(-1, 2)
        keys = directed[:, 0] * count + directed[:, 1]
        order = np.argsort(keys)
        sorted_keys = keys[order]
        touched: set[int] = set()
        unflippable = []
        for cap in caps.tolist():
            k = int(longest[cap])
            a, b, c = (int(faces[cap, (k + i) % 3]) for i in range(3))
            position = np.searchsorted(sorted_keys, b * count + a)
            if position >= len(keys) or sorted_keys[position] != b * count + a:
                unflippable.append(cap)
                continue
            neighbour = int(order[position]) // 3
            if cap in touched or neighbour in touched:
                continue  # handled in the next pass, with fresh adjacency
            n = faces[neighbour].tolist()
            d = n[(n.index(b) + 2) % 3]
            if d == c or np.isin([c * count + d, d * count + c], sorted_keys).any():
                unflippable.append(cap)
                continue
            faces[cap] = (a, d, c)
            faces[neighbour] = (d, b, c)
            touched.update((cap, neighbour))
        if unflippable and not touched:
            log.debug("dropping %d flat triangles that can't be flipped", len(unflippable))
            faces = np.delete(faces, unflippable, axis=0)
    heights, _ = _cap_heights(points, faces)
    flat = heights < tolerance
    if flat.any():
        log.debug("dropping %d flat triangles left after edge flips", int(flat.sum()))
    return faces[~flat]
