"""Connectivity facts about a triangle mesh, vectorised with numpy and scipy.sparse.

Shared by the processing steps (which change meshes), :mod:`.metrics` (which
measures them) and the STEP B-rep builder (which needs a closed, consistently
wound surface), so all agree on what an edge, a boundary or a component is:

* an *edge* is an unordered vertex pair used by at least one face;
* a *boundary* edge is used by one face, a *non-manifold* edge by three or more;
* *components* are sets of faces connected through shared vertices (what a
  user sees as separate pieces, so a bow-tie is one piece with a bad vertex).

scipy is imported inside the functions that need it so importing this module stays cheap.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np

from ..errors import MeshProcessingError
from .meshdata import MeshData


def check_mesh(mesh: MeshData, action: str = "process") -> None:
    """Raise :class:`MeshProcessingError` for an empty mesh, NaN vertices or bad indices."""
    vertices, faces = mesh.vertices, mesh.faces
    if len(faces) == 0 or len(vertices) == 0:
        raise MeshProcessingError(
            f"Can't {action} an empty mesh ({len(vertices)} vertices, {len(faces)} faces): "
            "the surface came out empty; try another seed or input."
        )
    if not np.isfinite(vertices).all():
        bad = int((~np.isfinite(vertices).all(axis=1)).sum())
        raise MeshProcessingError(
            f"Can't {action} the mesh: {bad} vertices have NaN or infinite coordinates."
        )
    low, high = int(faces.min()), int(faces.max())
    if low < 0 or high >= len(vertices):
        raise MeshProcessingError(
            f"Can't {action} the mesh: face indices run from {low} to {high} "
            f"but there are only {len(vertices)} vertices."
        )


_Step = TypeVar("_Step", bound=Callable)


def checks_mesh(action: str) -> Callable[[_Step], _Step]:
    """Decorate a step taking a mesh first so it runs :func:`check_mesh` before it works.

    The undecorated step stays reachable as ``step.unchecked``: a chain such as
    ``process_mesh`` checks its input once and calls the steps through that.
    """

    def decorate(step):
        @functools.wraps(step)
        def checked(mesh, *args, **kwargs):
            check_mesh(mesh, action)
            return step(mesh, *args, **kwargs)

        checked.unchecked = step
        return checked

    return decorate


@dataclass
class EdgeTable:
    """The undirected edges of a face list and how faces use them.

    ``edges`` (E, 2) sorted vertex pairs; ``face_edges`` (F, 3) the edge of each face
    side (side k joins corners k and k+1); ``counts`` (E,) faces per edge;
    ``forward`` (F, 3) True where the face walks its side from the lower to the higher index.
    """

    edges: np.ndarray
    face_edges: np.ndarray
    counts: np.ndarray
    forward: np.ndarray

    @property
    def boundary(self) -> np.ndarray:
        return self.counts == 1

    @property
    def non_manifold(self) -> np.ndarray:
        return self.counts > 2


def edge_table(faces: np.ndarray, n_vertices: int) -> EdgeTable:
    """Build the :class:`EdgeTable` of ``faces`` (one sort of the 3F half-edges)."""
    starts = faces.reshape(-1)
    ends = faces[:, [1, 2, 0]].reshape(-1)
    low = np.minimum(starts, ends)
    high = np.maximum(starts, ends)
    keys = low * np.int64(n_vertices) + high
    unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    edges = np.stack([unique // n_vertices, unique % n_vertices], axis=1)
    return EdgeTable(
        edges=edges,
        face_edges=inverse.reshape(-1, 3),
        counts=counts,
        forward=(starts < ends).reshape(-1, 3),
    )


def is_closed(faces: np.ndarray, n_vertices: int, table: "EdgeTable | None" = None) -> bool:
    """True for a closed 2-manifold with consistent winding: every edge has two faces that
    walk it in opposite directions (what a valid solid and a watertight mesh need)."""
    if len(faces) == 0:
        return False
    table = table or edge_table(faces, n_vertices)
    if not np.all(table.counts == 2):
        return False
    forward_uses = np.bincount(table.face_edges[table.forward], minlength=len(table.counts))
    return bool(np.all(forward_uses == 1))


def vertex_labels(faces: np.ndarray, n_vertices: int) -> tuple[int, np.ndarray]:
    """Label vertices by connected piece; unreferenced vertices get label -1.

    Returns ``(count, labels)`` where labels of referenced vertices run 0..count-1.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows = faces.reshape(-1)
    cols = faces[:, [1, 2, 0]].reshape(-1)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), (n_vertices,) * 2)
    _, labels = connected_components(graph, directed=False)
    used = np.zeros(n_vertices, dtype=bool)
    used[faces.reshape(-1)] = True
    # Renumber so isolated vertices don't count as components.
    kept, labels_used = np.unique(labels[used], return_inverse=True)
    out = np.full(n_vertices, -1, dtype=np.int64)
    out[used] = labels_used
    return int(len(kept)), out


def face_labels(faces: np.ndarray, n_vertices: int) -> tuple[int, np.ndarray]:
    """Label faces by connected piece (pieces joined through shared vertices)."""
    count, labels = vertex_labels(faces, n_vertices)
    return count, labels[faces[:, 0]]


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area of every triangle."""
    tri = vertices[faces]
    return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)


def signed_volumes(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-face signed volume of the tetrahedron to ``origin``; their sum is the enclosed volume.

    Vertices are shifted to their centroid first so that round-off stays small
    for meshes far from the origin.
    """
    tri = vertices[faces] - vertices.mean(axis=0)
    return np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0


def _rotation(x: float, y: float, z: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


# Any rotation far from the grid's symmetries will do.
_TILT = _rotation(0.3141, 0.5772, 0.2718)


def points_inside(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """True for each point enclosed by the closed surface ``faces``.

    Casts three rays from the point, counts crossings (odd: inside) and takes the
    majority, so a ray grazing an edge can't decide alone. The rays run along the
    axes of a tilted frame: marching-cubes vertices sit on grid lines, and
    axis-aligned rays through them would hit edges exactly. Each ray only looks at
    triangles whose projected bounding box contains the point: about 2 ms per point
    for 300k faces, where summing solid angles (winding numbers) takes 60.
    """
    tri = vertices[faces] @ _TILT.T
    points = np.atleast_2d(np.asarray(points, dtype=np.float64)) @ _TILT.T
    votes = np.zeros(len(points), dtype=np.int64)
    for axis in range(3):
        u, v = [k for k in range(3) if k != axis]
        tu, tv, tw = tri[:, :, u], tri[:, :, v], tri[:, :, axis]
        u_lo, u_hi, v_lo, v_hi = tu.min(1), tu.max(1), tv.min(1), tv.max(1)
        for i, p in enumerate(points):
            near = np.flatnonzero((u_lo <= p[u]) & (p[u] <= u_hi) & (v_lo <= p[v]) & (p[v] <= v_hi))
            if len(near) == 0:
                continue
            du, dv = tu[near] - p[u], tv[near] - p[v]
            # Twice the signed areas of the sub-triangles opposite each corner.
            d = du[:, [1, 2, 0]] * dv[:, [2, 0, 1]] - dv[:, [1, 2, 0]] * du[:, [2, 0, 1]]
            total = d.sum(axis=1)
            hit = (np.all(d >= 0, axis=1) | np.all(d <= 0, axis=1)) & (total != 0)
            if not hit.any():
                continue
            depth = (d[hit] * tw[near][hit]).sum(axis=1) / total[hit]
            votes[i] += int(np.count_nonzero(depth > p[axis]) % 2)
    return votes >= 2


def piece_bounds(
    vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per piece (face labels 0..count-1): bounding-box corners and a probe point.

    The probe is the centre of the piece's first face, not a vertex: marching-cubes
    vertices sit on grid lines that the rays of :func:`points_inside` could graze.
    """
    corners = vertices[faces]
    lo = np.full((count, 3), np.inf)
    hi = np.full((count, 3), -np.inf)
    np.minimum.at(lo, labels, corners.min(axis=1))
    np.maximum.at(hi, labels, corners.max(axis=1))
    probe = corners[np.unique(labels, return_index=True)[1]].mean(axis=1)
    return lo, hi, probe


def enclosing_pieces(
    vertices: np.ndarray,
    faces: np.ndarray,
    labels: np.ndarray,
    count: int,
    containers: np.ndarray,
    candidates: np.ndarray,
) -> np.ndarray:
    """For each piece, the first of ``containers`` (closed pieces, in the order given) that
    encloses it, else -1. Only pieces where ``candidates`` (bool per piece) is True are
    tested, and a container already found inside another one encloses nothing itself.

    A piece is inside a container when its bounding box is, its volume is smaller
    and its probe point is enclosed by the container's surface (ray parity).
    """
    volume = np.abs(np.bincount(labels, weights=signed_volumes(vertices, faces), minlength=count))
    lo, hi, probe = piece_bounds(vertices, faces, labels, count)
    owner = np.full(count, -1, dtype=np.int64)
    for outer in np.asarray(containers, dtype=np.int64).tolist():
        if owner[outer] >= 0:
            continue
        inside_box = (
            candidates
            & (owner < 0)
            & (volume < volume[outer])
            & np.all(lo >= lo[outer], axis=1)
            & np.all(hi <= hi[outer], axis=1)
        )
        inside_box[outer] = False
        tested = np.flatnonzero(inside_box)
        if len(tested) == 0:
            continue
        enclosed = points_inside(vertices, faces[labels == outer], probe[tested])
        owner[tested[enclosed]] = outer
    return owner


def non_manifold_vertex_mask(faces: np.ndarray, n_vertices: int, table: EdgeTable) -> np.ndarray:
    """True for vertices whose faces form more than one fan (e.g. the centre of a bow-tie).

    Around a manifold vertex the faces are linked into one fan through the edges
    they share there. Each corner (wedge) of a face links its two edges at that
    vertex; counting the linked groups per vertex finds the pinched ones.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_edges = len(table.edges)
    # Node 2e + s is edge e seen from its endpoint edges[e, s].
    side_in = table.face_edges[:, [2, 0, 1]]  # side arriving at corner k
    side_out = table.face_edges  # side leaving corner k
    at_high_in = table.edges[side_in, 1] == faces
    at_high_out = table.edges[side_out, 1] == faces
    node_in = (2 * side_in + at_high_in).reshape(-1)
    node_out = (2 * side_out + at_high_out).reshape(-1)
    graph = coo_matrix(
        (np.ones(len(node_in), dtype=np.int8), (node_in, node_out)), (2 * n_edges,) * 2
    )
    _, groups = connected_components(graph, directed=False)
    node_vertex = table.edges.reshape(-1)
    pairs = np.unique(node_vertex * np.int64(2 * n_edges) + groups)
    fans = np.bincount(pairs // (2 * n_edges), minlength=n_vertices)
    return fans > 1


# What every reader of the topology calls "the same vertex": closer than this fraction of
# the bounding-box diagonal (a micrometre on a metre-sized part). STL stores each triangle's
# corners apart and glTF splits vertices along UV seams, so without welding every such
# file would look open; the STEP writer welds at the same distance.
WELD_RELATIVE_TOLERANCE = 1e-6
_PACKED_AXIS_BITS = 21


def weld_index(vertices: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Each vertex's welded representative: ``(index, points)`` with ``points[index]`` ≈ vertices.

    Vertices in one grid cell of size ``tolerance`` are one vertex; a second pass on a
    grid shifted by half a cell catches pairs the first split across a cell boundary.
    Cells are packed into one int64 key when they fit, so the sort is one-dimensional.
    """
    index = np.arange(len(vertices))
    points = np.asarray(vertices, dtype=np.float64)
    if len(points) == 0 or not tolerance > 0:
        return index, points
    for shift in (0.0, 0.5):
        cells = np.floor(points / tolerance + shift).astype(np.int64)
        cells -= cells.min(axis=0)
        if int(cells.max()) < 2**_PACKED_AXIS_BITS:
            keys = (cells[:, 0] << (2 * _PACKED_AXIS_BITS)) | (cells[:, 1] << _PACKED_AXIS_BITS)
            keys |= cells[:, 2]
            _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        else:
            _, first, inverse = np.unique(cells, axis=0, return_index=True, return_inverse=True)
        if len(first) == len(points):
            continue
        index = inverse.reshape(-1)[index]
        points = points[first]
    return index, points


def consistent_winding(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """``faces`` with some flipped so every two-face edge is walked once in each direction.

    Orientation spreads from one face per piece over a breadth-first tree of the
    face graph (faces linked through two-face edges); a face's flip is the parity
    of 'same-direction' links on its path to the root, summed by pointer jumping
    so the whole thing stays vectorised. Non-orientable pieces keep what the tree
    gives. Returns ``faces`` itself when nothing needs flipping.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order, connected_components

    n_faces = len(faces)
    table = edge_table(faces, n_vertices)
    face_a, face_b, use_a, use_b = _two_face_links(table)
    forward = table.forward.reshape(-1)
    same_direction = forward[use_a] == forward[use_b]
    if not same_direction.any():
        return faces

    # Link every piece to a virtual root so one breadth-first pass covers them all.
    graph = coo_matrix(
        (np.ones(len(face_a), dtype=np.int8), (face_a, face_b)), (n_faces, n_faces)
    ).tocsr()
    n_pieces, piece = connected_components(graph, directed=False)
    seeds = np.unique(piece, return_index=True)[1]
    root = n_faces
    rows = np.concatenate([face_a, np.full(n_pieces, root)])
    cols = np.concatenate([face_b, seeds])
    tree_graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), (root + 1,) * 2)
    _, parent = breadth_first_order(tree_graph.tocsr(), root, directed=False)
    parent[root] = root

    # Parity of each face-to-parent link (0 for links to the virtual root).
    keys = np.minimum(face_a, face_b) * np.int64(n_faces + 1) + np.maximum(face_a, face_b)
    order = np.argsort(keys)
    keys, flips = keys[order], same_direction[order]
    child = np.arange(root + 1)
    link = np.minimum(child, parent) * np.int64(n_faces + 1) + np.maximum(child, parent)
    at = np.clip(np.searchsorted(keys, link), 0, len(keys) - 1)
    parity = (keys[at] == link) & flips[at] & (parent != root) & (child != root)

    ancestor = parent.copy()
    flip = parity.copy()
    while np.any(ancestor != root):
        flip ^= flip[ancestor] & (ancestor != root)
        ancestor = ancestor[ancestor]
        # A root's own "ancestor" is itself; parity of the root is False, so this is stable.
    flip = flip[:n_faces]
    out = faces.copy()
    out[flip] = out[flip][:, ::-1]
    return out


def _two_face_links(table: EdgeTable):
    """Faces ``a``, ``b`` across each two-face edge, and the half-edge uses (3f + side)."""
    uses = np.argsort(table.face_edges.reshape(-1), kind="stable")
    edge_of_use = table.face_edges.reshape(-1)[uses]
    two = table.counts[edge_of_use] == 2
    first = np.flatnonzero(two[:-1] & (edge_of_use[:-1] == edge_of_use[1:]))
    use_a, use_b = uses[first], uses[first + 1]
    return use_a // 3, use_b // 3, use_a, use_b


@dataclass
class Parts:
    """The parts of a welded mesh as a CAD reader sees them: closed bodies and open shells.

    ``faces`` is the welded face list with winding made consistent where the
    surface allows (a flipped triangle is not a hole), ``label`` each face's part
    and ``closed`` per part. A part is a set of faces linked through edges that
    exactly two faces walk in opposite directions, so two bodies touching along an
    edge or at a vertex are two parts (as OpenCascade splits their shells), and a
    part is closed when each of its edges is walked once each way by its own faces.
    """

    faces: np.ndarray
    label: np.ndarray
    closed: np.ndarray
    # The edge table of ``faces``, and whether any face had to be turned to get there
    # (False: the winding was consistent as given).
    table: "EdgeTable | None" = None
    rewound: bool = False

    @property
    def count(self) -> int:
        return int(len(self.closed))

    @property
    def closed_count(self) -> int:
        return int(np.count_nonzero(self.closed))

    @property
    def open_count(self) -> int:
        return self.count - self.closed_count

    @property
    def watertight(self) -> bool:
        return self.count > 0 and bool(self.closed.all())

    def summary(self) -> str:
        """``"closed"``, ``"open"`` or ``"2 closed parts, 1 open"``: what a user is told."""
        if self.count == 1 or self.open_count == 0 or self.closed_count == 0:
            label = "closed" if self.watertight else "open"
            return label if self.count == 1 else f"{self.count} {label} parts"
        plural = "" if self.closed_count == 1 else "s"
        return f"{self.closed_count} closed part{plural}, {self.open_count} open"


def mesh_parts(faces: np.ndarray, n_vertices: int) -> Parts:
    """Split already welded ``faces`` into :class:`Parts` and say which are closed."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        return Parts(
            faces, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool), edge_table(faces, 0)
        )
    table = edge_table(faces, n_vertices)
    face_a, face_b, use_a, use_b = _two_face_links(table)
    forward = table.forward.reshape(-1)
    rewound = bool(np.any(forward[use_a] == forward[use_b]))
    if rewound:  # some faces are wound against their neighbours
        faces = consistent_winding(faces, n_vertices)
        table = edge_table(faces, n_vertices)
        face_a, face_b, use_a, use_b = _two_face_links(table)
        forward = table.forward.reshape(-1)
    opposite = forward[use_a] != forward[use_b]
    n_faces = len(faces)
    graph = coo_matrix(
        (np.ones(int(opposite.sum()), dtype=np.int8), (face_a[opposite], face_b[opposite])),
        (n_faces, n_faces),
    )
    count, label = connected_components(graph, directed=False)
    # Uses of linked edges close their part there; any other use must pair up inside its
    # part: walked twice, once each way (two bodies sharing an edge, each closed).
    linked = np.zeros(3 * n_faces, dtype=bool)
    linked[use_a[opposite]] = True
    linked[use_b[opposite]] = True
    loose = np.flatnonzero(~linked)
    closed = np.ones(count, dtype=bool)
    if len(loose):
        keys = table.face_edges.reshape(-1)[loose] * np.int64(count) + label[loose // 3]
        unique, inverse, uses = np.unique(keys, return_inverse=True, return_counts=True)
        forward_uses = np.bincount(
            inverse.reshape(-1), weights=forward[loose], minlength=len(unique)
        )
        bad = (uses != 2) | (forward_uses != 1)
        closed[unique[bad] % count] = False
    return Parts(faces, label.astype(np.int64), closed, table, rewound)


def welded_faces(
    vertices: np.ndarray, faces: np.ndarray, relative_tolerance: float = WELD_RELATIVE_TOLERANCE
) -> tuple[np.ndarray, np.ndarray]:
    """The welded view of a mesh: ``(points, faces)`` with vertices closer than
    ``relative_tolerance`` of the diagonal made one, and faces that collapse left out
    (they have no area to bound anything). The mesh itself is not changed."""
    used = np.unique(faces)
    span = vertices[used].max(axis=0) - vertices[used].min(axis=0) if len(used) else np.zeros(3)
    index, points = weld_index(vertices, float(np.linalg.norm(span)) * relative_tolerance)
    welded = index[faces]
    keep = (welded[:, 0] != welded[:, 1]) & (welded[:, 1] != welded[:, 2])
    keep &= welded[:, 2] != welded[:, 0]
    return points, welded[keep]


def welded_parts(
    vertices: np.ndarray, faces: np.ndarray, relative_tolerance: float = WELD_RELATIVE_TOLERANCE
) -> tuple[np.ndarray, Parts]:
    """The welded points (:func:`welded_faces`) and their :class:`Parts`."""
    points, welded = welded_faces(vertices, faces, relative_tolerance)
    return points, mesh_parts(welded, len(points))
