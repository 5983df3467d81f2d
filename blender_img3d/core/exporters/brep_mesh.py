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
from ..mesh.topology import (
    WELD_RELATIVE_TOLERANCE,
    edge_table,
    enclosing_pieces,
    is_closed,
    mesh_parts,
    signed_volumes,
)

log = logging.getLogger(__name__)

# Welding and cap tolerance as a fraction of the bounding-box diagonal: the distance at
# which the metrics and the summary call two vertices one (one topology truth).
RELATIVE_TOLERANCE = WELD_RELATIVE_TOLERANCE
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
    ``face_component`` labels each face with its part (a shell: see
    :class:`..mesh.topology.Parts`), and each part has its own vertices, so parts
    touching along an edge or at a vertex share no topology. ``shell_closed`` says
    per part whether it is closed (a solid) or open (a surface); ``closed`` is True
    when all are. ``void_of`` gives, per part, the closed part whose void it is,
    or -1 (a solid's outer shell, or an open shell). A void's faces are
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
    shell_closed: np.ndarray


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

    # Shells as a CAD kernel sees them, decided on the welded surface (one answer for
    # the summary, the report and this file); each gets its own vertices.
    parts = mesh_parts(faces, len(points))
    face_component, count, shell_closed = parts.label, parts.count, parts.closed
    keys = face_component[:, None] * np.int64(len(points)) + parts.faces
    unique, inverse = np.unique(keys, return_inverse=True)
    points, faces = points[unique % len(points)], inverse.reshape(-1, 3)
    table = edge_table(faces, len(points))
    void_of = np.full(count, -1, dtype=np.int64)
    if shell_closed.any():
        void_of, reversed_faces = _voids(points, faces, face_component, count, shell_closed)
        if reversed_faces.any():
            faces = faces.copy()
            faces[reversed_faces] = faces[reversed_faces][:, ::-1]
            # The same undirected edges, so they keep their numbers.
            table = edge_table(faces, len(points))
    closed = bool(shell_closed.all())
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
        shell_closed=shell_closed,
    )


def _voids(
    points: np.ndarray,
    faces: np.ndarray,
    face_component: np.ndarray,
    count: int,
    shell_closed: np.ndarray,
):
    """Which closed part is a void of which solid, and which faces to reverse.

    Components wound inwards (negative volume) are voids; each goes to the smallest
    outward one that encloses it (bounding box first, then a ray test of one face
    centre). An inward piece that nothing encloses is a solid written inside out:
    its faces are reversed and it stays a solid of its own.
    """
    volume = np.bincount(face_component, weights=signed_volumes(points, faces), minlength=count)
    void_of = np.full(count, -1, dtype=np.int64)
    inward = np.flatnonzero((volume < 0) & shell_closed)
    if len(inward) == 0:
        return void_of, np.zeros(len(faces), dtype=bool)
    # Smallest solid first: a void belongs to the innermost solid around it.
    solids = sorted(np.flatnonzero((volume > 0) & shell_closed).tolist(), key=lambda c: volume[c])
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


@dataclass
class BrepFaces:
    """The planar B-rep faces over a :class:`BrepMesh`: merged coplanar regions or triangles.

    Face ``i`` has the loops ``face_loops[i]`` (indices into the loop arrays, the
    outer loop first); loop ``k`` walks the edges
    ``loop_edges[loop_start[k]:loop_start[k + 1]]`` with ``loop_forward`` telling
    whether it runs along each edge low → high. Outer loops run counter-clockwise
    seen from the face's outward ``normal``, holes clockwise, as ISO 10303-42 wants
    of bounds whose orientation flag is ``.T.``. ``x_edge`` is an edge of the outer
    loop (its direction is the plane's x axis), ``origin`` a vertex on it.
    """

    normal: np.ndarray
    origin: np.ndarray
    x_edge: np.ndarray
    component: np.ndarray
    face_loops: list[list[int]]
    loop_start: np.ndarray
    loop_edges: np.ndarray
    loop_forward: np.ndarray

    @property
    def count(self) -> int:
        return len(self.normal)


def planar_faces(topo: BrepMesh, merge_tolerance: float | None) -> BrepFaces:
    """Group ``topo``'s triangles into planar faces (``None``: one face per triangle).

    Two triangles across a two-face edge are one region when each one's far corner
    lies within ``merge_tolerance`` (file units) of the other's plane and they face
    the same way; a region is kept only if every one of its vertices is within the
    tolerance of the region's mean plane and its boundary is one outer loop plus
    holes, without pinches. Anything else stays triangles, so a curved surface keeps
    its facets while every flat area becomes one face with its real boundary.
    """
    faces, points = topo.faces, topo.points
    corners = points[faces]
    raw = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    del corners  # 72 bytes a face: 144 MB at 2M faces, while the loops need the most
    region = np.arange(len(faces))
    if merge_tolerance is not None and merge_tolerance > 0 and len(faces) > 1:
        unit = raw / np.linalg.norm(raw, axis=1)[:, None]
        region = _coplanar_regions(topo, unit, merge_tolerance)
        del unit
        region = _keep_planar(points, faces, raw, region, merge_tolerance)
    return _faces_from_regions(topo, raw, region)


def _coplanar_regions(topo: BrepMesh, unit: np.ndarray, tolerance: float) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    faces, points = topo.faces, topo.points
    n_faces = len(faces)
    uses = np.argsort(topo.face_edges.reshape(-1), kind="stable")
    edge_of_use = topo.face_edges.reshape(-1)[uses]
    pair = np.flatnonzero(edge_of_use[:-1] == edge_of_use[1:])
    # Only edges with exactly two faces link regions.
    counts = np.bincount(edge_of_use, minlength=len(topo.edges))
    pair = pair[counts[edge_of_use[pair]] == 2]
    fa, fb = uses[pair] // 3, uses[pair + 1] // 3
    far_b = faces[fb, (uses[pair + 1] % 3 + 2) % 3]  # the corner of b off the shared edge
    far_a = faces[fa, (uses[pair] % 3 + 2) % 3]
    origin_a, origin_b = points[faces[fa, 0]], points[faces[fb, 0]]
    dist_b = np.abs(np.einsum("ij,ij->i", points[far_b] - origin_a, unit[fa]))
    dist_a = np.abs(np.einsum("ij,ij->i", points[far_a] - origin_b, unit[fb]))
    same_side = np.einsum("ij,ij->i", unit[fa], unit[fb]) >= _MERGE_MIN_COSINE
    link = same_side & (dist_a <= tolerance) & (dist_b <= tolerance)
    graph = coo_matrix(
        (np.ones(int(link.sum()), dtype=np.int8), (fa[link], fb[link])), (n_faces, n_faces)
    )
    return connected_components(graph, directed=False)[1]


# A merged face's triangles must all face within this angle of its plane's normal (1°):
# a sliver whose corners all sit within the tolerance of the plane can still be tilted.
_MERGE_MIN_COSINE = float(np.cos(np.radians(1.0)))
# Segment pairs tested at once when proving merged loops simple (memory bound).
_PAIR_CHUNK = 2_000_000


def _unprovable_regions(
    topo: BrepMesh,
    normal_sum: np.ndarray,
    half: np.ndarray,
    half_region: np.ndarray,
    broken: np.ndarray,
) -> np.ndarray:
    """Merged regions (a mask over regions) whose face can't be shown valid, to be written
    as triangles; ``half`` are the merged regions' boundary half-edges, ``half_region``
    their regions, and regions already ``broken`` are skipped.

    A merged face is kept only when, in its plane, its loops are simple and apart:
    no edge shorter than the welding tolerance, and no two edges that don't share a
    vertex crossing or coming closer than a hundredth of the tolerance (a touch that a
    CAD kernel reads as a self-intersecting wire). Candidate pairs come from a sweep
    over the edges' x extents within each region, so the test stays near linear.
    """
    bad = np.zeros(len(broken), dtype=bool)
    keep = ~broken[half_region]
    if not keep.any():
        return bad
    halves, regions_of = half[keep], half_region[keep]
    regions, owner = np.unique(regions_of, return_inverse=True)
    faces, points = topo.faces, topo.points
    starts = faces.reshape(-1)
    ends = faces[:, [1, 2, 0]].reshape(-1)
    a, b = starts[halves], ends[halves]
    short = np.linalg.norm(points[b] - points[a], axis=1) <= topo.tolerance
    bad[regions[owner[short]]] = True

    # Each region's plane basis (u, v), and its edges in it.
    normal = normal_sum[regions]
    normal = normal / np.linalg.norm(normal, axis=1, keepdims=True)
    helper = np.where(np.abs(normal[:, [0]]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    u = np.cross(normal, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(normal, u)
    pa, pb = points[a], points[b]
    a2 = np.stack([np.einsum("ij,ij->i", pa, u[owner]), np.einsum("ij,ij->i", pa, v[owner])], 1)
    b2 = np.stack([np.einsum("ij,ij->i", pb, u[owner]), np.einsum("ij,ij->i", pb, v[owner])], 1)
    gap = topo.tolerance * 0.01
    lo = np.minimum(a2, b2) - gap
    hi = np.maximum(a2, b2) + gap
    # Sweep: sorted by (region, x low); each edge meets the later ones of its region
    # whose x low is at most its x high.
    order = np.lexsort((lo[:, 0], owner))
    owner_s, lo_s, hi_s = owner[order], lo[order], hi[order]
    region_end = np.searchsorted(owner_s, owner_s, side="right")
    reach = np.empty(len(order), dtype=np.int64)
    for r in np.unique(owner_s).tolist():
        first, last = np.searchsorted(owner_s, [r, r + 1])
        reach[first:last] = first + np.searchsorted(lo_s[first:last, 0], hi_s[first:last, 0],
                                                    side="right")  # fmt: skip
    reach = np.minimum(reach, region_end)
    counts = np.maximum(reach - np.arange(len(order)) - 1, 0)
    i_all = np.repeat(np.arange(len(order)), counts)
    j_all = np.arange(len(i_all)) - np.repeat(np.cumsum(counts) - counts, counts) + i_all + 1
    for begin in range(0, len(i_all), _PAIR_CHUNK):
        i, j = order[i_all[begin : begin + _PAIR_CHUNK]], order[j_all[begin : begin + _PAIR_CHUNK]]
        near = np.all(lo[i] <= hi[j], axis=1) & np.all(lo[j] <= hi[i], axis=1)
        near &= (a[i] != a[j]) & (a[i] != b[j]) & (b[i] != a[j]) & (b[i] != b[j])
        i, j = i[near], j[near]
        hit = _segments_meet(a2[i], b2[i], a2[j], b2[j], gap)
        bad[regions[owner[i[hit]]]] = True
    if bad.any():
        log.debug("%d merged faces not provably valid: written as triangles", bad.sum())
    return bad


def _segments_meet(p1, p2, q1, q2, gap: float) -> np.ndarray:
    """True where 2D segments p1p2 and q1q2 cross or come closer than ``gap``."""

    def cross(o, x, y):
        return (x[:, 0] - o[:, 0]) * (y[:, 1] - o[:, 1]) - (x[:, 1] - o[:, 1]) * (y[:, 0] - o[:, 0])

    d1, d2 = cross(p1, p2, q1), cross(p1, p2, q2)
    d3, d4 = cross(q1, q2, p1), cross(q1, q2, p2)
    crossing = (d1 * d2 < 0) & (d3 * d4 < 0)

    def distance(x, s, t):
        st = t - s
        length2 = np.einsum("ij,ij->i", st, st)
        w = np.clip(np.einsum("ij,ij->i", x - s, st) / np.where(length2 > 0, length2, 1), 0, 1)
        return np.linalg.norm(s + w[:, None] * st - x, axis=1)

    close = np.minimum.reduce(
        [distance(p1, q1, q2), distance(p2, q1, q2), distance(q1, p1, p2), distance(q2, p1, p2)]
    )
    return crossing | (close < gap)


def _keep_planar(
    points: np.ndarray, faces: np.ndarray, raw: np.ndarray, region: np.ndarray, tolerance: float
) -> np.ndarray:
    """Split back into triangles every region whose vertices stray from its mean plane."""
    count = int(region.max()) + 1
    sizes = np.bincount(region, minlength=count)
    normal = np.stack([np.bincount(region, raw[:, k], count) for k in range(3)], axis=1)
    length = np.linalg.norm(normal, axis=1)
    normal = normal / np.where(length > 0, length, 1.0)[:, None]
    anchor = points[faces[np.unique(region, return_index=True)[1], 0]]
    offsets = np.einsum("ij,ij->i", points[faces].reshape(-1, 3) - anchor[np.repeat(region, 3)],
                        normal[np.repeat(region, 3)])  # fmt: skip
    worst = np.zeros(count)
    np.maximum.at(worst, np.repeat(region, 3), np.abs(offsets))
    bad = (worst > tolerance) | (length <= 0)
    # Every triangle faces the region's way (no fold, no tilted sliver inside a face).
    area2 = np.linalg.norm(raw, axis=1)
    facing = np.einsum("ij,ij->i", raw, normal[region]) / np.where(area2 > 0, area2, 1.0)
    tilted = np.zeros(count, dtype=bool)
    tilted[region[facing < _MERGE_MIN_COSINE]] = True
    bad |= tilted
    bad &= sizes > 1
    if bad.any():
        split = bad[region]
        region = region.copy()
        region[split] = count + np.arange(int(split.sum()))
    return np.unique(region, return_inverse=True)[1]


def _faces_from_regions(topo: BrepMesh, raw: np.ndarray, region: np.ndarray) -> BrepFaces:
    """Boundary loops of every region; regions whose boundary isn't clean become triangles.

    All in array passes over the half-edges (a 2M-triangle mesh has 6M), no Python
    loop per region: a half-edge bounds its region unless the other face on its edge
    is in the region too; each boundary half-edge's successor is the one leaving its
    end vertex in the same region; the loops are the cycles of that successor map,
    each walked from its lowest half-edge; the outer loop is the one whose Newell
    normal agrees with the region's. A region with a pinch (two boundary edges
    leaving one vertex), a dead end or not exactly one outer loop is split back into
    its triangles.
    """
    faces, points = topo.faces, topo.points
    n_regions = int(region.max()) + 1
    sizes = np.bincount(region, minlength=n_regions)
    starts = faces.reshape(-1)
    ends = faces[:, [1, 2, 0]].reshape(-1)
    use_region = np.repeat(region, 3)
    edge = topo.face_edges.reshape(-1)
    key = edge * np.int64(n_regions) + use_region
    _, inverse, key_counts = np.unique(key, return_inverse=True, return_counts=True)
    boundary = np.flatnonzero(key_counts[inverse.reshape(-1)] == 1)  # ascending
    del key, inverse, key_counts
    # A lone triangle is its own loop (its three half-edges, in order); only the
    # half-edges of merged regions need their loops found.
    merged = sizes[use_region[boundary]] > 1
    lone, half = boundary[~merged], boundary[merged]
    del boundary, merged
    half_region = use_region[half]
    n_points = np.int64(len(points))

    # Successors: the boundary half-edge leaving this one's end, in the same region.
    leaving = half_region * n_points + starts[half]
    order = np.argsort(leaving, kind="stable")
    sorted_leaving = leaving[order]
    broken = np.zeros(n_regions, dtype=bool)
    pinch = sorted_leaving[1:] == sorted_leaving[:-1]
    broken[half_region[order[1:][pinch]]] = True
    wanted = half_region * n_points + ends[half]
    found = np.minimum(np.searchsorted(sorted_leaving, wanted), len(half) - 1)
    dead_end = sorted_leaving[found] != wanted
    broken[half_region[dead_end]] = True
    successor = order[found]  # positions in ``half``
    successor[dead_end] = np.flatnonzero(dead_end)  # a self-loop, split away below
    entered = np.bincount(successor, minlength=len(half))
    broken[half_region[entered != 1]] = True  # two edges entering one vertex
    del leaving, order, sorted_leaving, wanted, found, dead_end, entered

    # Loops: the cycles of ``successor``, each labelled by and walked from its lowest member.
    cycle, position = _cycles(successor)
    p_start, p_end = points[starts[half]], points[ends[half]]
    newell = np.cross(p_start, p_end)
    # Compact cycle ids: a loop is numbered by its lowest half-edge, in ascending order.
    heads, cycle = np.unique(cycle, return_inverse=True)
    n_cycles = len(heads)
    head_region = half_region[heads]
    loop_newell = np.stack([np.bincount(cycle, newell[:, k], n_cycles) for k in range(3)], axis=1)
    normal_sum = np.stack([np.bincount(region, raw[:, k], n_regions) for k in range(3)], axis=1)
    signed = np.einsum("ij,ij->i", loop_newell, normal_sum[head_region])
    outer = signed > 0
    # One counter-clockwise outer loop per merged face, every other loop a clockwise
    # hole: a second outer loop, or a loop of no area, can't be shown a valid face.
    broken |= np.bincount(head_region, outer, n_regions) != 1
    broken |= np.bincount(head_region, signed == 0, n_regions) > 0
    del p_start, p_end, newell, loop_newell, signed
    broken &= sizes > 1  # (only merged regions have loops here)
    broken |= _unprovable_regions(topo, normal_sum, half, half_region, broken)
    if broken.any():
        # Unmergeable regions go back to one face per triangle (this call's arrays freed
        # first: the recursion needs as much again).
        del starts, ends, use_region, edge, lone, half, half_region, successor
        del cycle, position, heads, head_region, outer, normal_sum
        region = region.copy()
        split = broken[region]
        region[split] = n_regions + np.arange(int(split.sum()))
        return _faces_from_regions(topo, raw, np.unique(region, return_inverse=True)[1])

    # Every loop: the merged regions' and one per lone triangle, walked from its 3f.
    n_lone = len(lone) // 3
    loop_head = np.concatenate([half[heads], lone[::3]])
    loop_region = np.concatenate([head_region, use_region[lone[::3]]])
    loop_outer = np.concatenate([outer, np.ones(n_lone, dtype=bool)])
    half_loop = np.concatenate([cycle, n_cycles + np.arange(len(lone)) // 3])
    half_position = np.concatenate([position, np.tile(np.arange(3), n_lone)])
    half = np.concatenate([half, lone])
    n_loops = n_cycles + n_lone
    # Loops ordered by region, outer first, then by their lowest half-edge; the half-edges
    # of each loop in walking order.
    loop_order = np.lexsort((loop_head, ~loop_outer, loop_region))
    rank = np.empty(n_loops, dtype=np.int64)
    rank[loop_order] = np.arange(n_loops)
    half_rank = rank[half_loop]
    halves = half[np.lexsort((half_position, half_rank))]
    lengths = np.bincount(half_rank, minlength=n_loops)
    loop_start = np.concatenate([[0], np.cumsum(lengths)])
    loops_per_region = np.bincount(loop_region, minlength=n_regions)
    first_loop = np.concatenate([[0], np.cumsum(loops_per_region)])
    face_loops = [
        list(range(a, b)) for a, b in zip(first_loop[:-1].tolist(), first_loop[1:].tolist())
    ]
    first_face = np.unique(region, return_index=True)[1]
    outer_first = loop_start[first_loop[:-1]]
    normal = normal_sum / np.linalg.norm(normal_sum, axis=1, keepdims=True)
    return BrepFaces(
        normal=normal,
        origin=starts[halves[outer_first]],
        x_edge=edge[halves[outer_first]],
        component=topo.face_component[first_face],
        face_loops=face_loops,
        loop_start=loop_start,
        loop_edges=edge[halves],
        loop_forward=topo.face_edge_forward.reshape(-1)[halves],
    )


def _cycles(successor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a permutation (a set of cycles): each element's cycle, named by its lowest
    member, and its number of steps from that member along ``successor``.

    Pointer doubling: about log2(longest cycle) array passes, not a walk per element.
    """
    n = len(successor)
    index = np.arange(n, dtype=np.int64)
    # The lowest member: a running minimum over 1, 2, 4, ... steps ahead. A round that
    # changes nothing means the window already spans the whole cycle.
    lowest, jump = index.copy(), successor.astype(np.int64)
    while True:
        reached = np.minimum(lowest, lowest[jump])
        if np.array_equal(reached, lowest):
            break
        lowest, jump = reached, jump[jump]
    # Steps to the lowest member, with the cycle cut open there (it points to itself).
    head = lowest == index
    to_head = (~head).astype(np.int64)
    jump = np.where(head, index, successor)
    while not np.array_equal(jump, jump[jump]):
        to_head = to_head + to_head[jump]
        jump = jump[jump]
    length = np.bincount(lowest, minlength=n)[lowest]
    return lowest, (length - to_head) % np.maximum(length, 1)
