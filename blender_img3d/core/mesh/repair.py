"""Repair: close the small holes marching cubes and cleanup leave, report what stays open."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .meshdata import MeshData, plural
from .topology import checks_mesh, edge_table, face_labels

log = logging.getLogger(__name__)

# Holes with more boundary edges than this are reported, not filled: a fan over a
# long loop would be a visible flat patch rather than a repair.
MAX_HOLE_EDGES = 1000


@dataclass
class RepairReport:
    """What :func:`repair` did and what it could not do."""

    holes_found: int = 0
    holes_filled: int = 0
    faces_added: int = 0
    non_manifold_edges: int = 0
    watertight: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def holes_left(self) -> int:
        return self.holes_found - self.holes_filled


@checks_mesh("repair")
def repair(mesh: MeshData, max_hole_edges: int = MAX_HOLE_EDGES) -> tuple[MeshData, RepairReport]:
    """Close holes so the mesh is watertight where it can be, and say what was left open.

    Expects consistent winding (run :func:`cleanup` first). Each simple boundary
    loop of at most ``max_hole_edges`` edges is closed: a triangle for three
    edges, else a fan to a new vertex at the loop's centroid. Left open and
    reported: loops through a pinched vertex, loops that are the rim of a sheet
    (the piece has fewer than twice as many faces as the loop has edges) and
    longer loops; non-manifold edges are reported as they are.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    faces = mesh.faces
    n = mesh.vertex_count
    table = edge_table(faces, n)
    result = RepairReport(non_manifold_edges=int(table.non_manifold.sum()))
    if result.non_manifold_edges:
        result.notes.append(
            f"{plural(result.non_manifold_edges, 'non-manifold edge')} "
            "(three or more faces) left as is"
        )

    boundary_use = table.boundary[table.face_edges].reshape(-1)
    starts = faces.reshape(-1)[boundary_use]
    ends = faces[:, [1, 2, 0]].reshape(-1)[boundary_use]
    if len(starts) == 0:
        result.watertight = result.non_manifold_edges == 0
        return mesh, result

    graph = coo_matrix((np.ones(len(starts), dtype=np.int8), (starts, ends)), (n, n))
    _, vertex_loop = connected_components(graph, directed=False)
    loop_of_edge = vertex_loop[starts]
    loops, loop_index = np.unique(loop_of_edge, return_inverse=True)
    result.holes_found = len(loops)
    edges_per_loop = np.bincount(loop_index)

    # A loop is simple when each of its vertices starts and ends exactly one boundary edge.
    out_deg = np.bincount(starts, minlength=n)
    in_deg = np.bincount(ends, minlength=n)
    pinched_vertex = (out_deg != 1) | (in_deg != 1)
    pinched = np.bincount(loop_index, weights=pinched_vertex[starts], minlength=len(loops)) > 0
    piece_count, piece = face_labels(faces, n)
    piece_faces = np.bincount(piece, minlength=piece_count)
    loop_piece = piece[np.repeat(np.arange(len(faces)), 3)[boundary_use]]
    loop_piece_faces = np.zeros(len(loops), dtype=np.int64)
    loop_piece_faces[loop_index] = piece_faces[loop_piece]
    rim = loop_piece_faces < 2 * edges_per_loop
    too_long = edges_per_loop > max_hole_edges
    fill = ~(pinched | rim | too_long)

    for why, mask in (
        ("they pass through a vertex more than once", pinched),
        ("the rim of an open sheet", rim & ~pinched),
        (f"longer than {max_hole_edges} edges", too_long & ~pinched & ~rim),
    ):
        if mask.any():
            result.notes.append(f"could not close {plural(int(mask.sum()), 'hole')}: {why}")

    new_faces = []
    edge_fill = fill[loop_index]
    # Three-edge holes take one triangle, walked against their boundary edges.
    tri_loop = fill & (edges_per_loop == 3)
    tri_edges = edge_fill & tri_loop[loop_index]
    if tri_edges.any():
        order = np.argsort(loop_index[tri_edges], kind="stable")
        s = starts[tri_edges][order].reshape(-1, 3)
        e = ends[tri_edges][order].reshape(-1, 3)
        # Boundary a→b, b→c, c→a is capped by (b, a, c); its starts are three distinct
        # vertices, so the third corner is whichever other start isn't b.
        third = np.where(s[:, 1] != e[:, 0], s[:, 1], s[:, 2])
        new_faces.append(np.stack([e[:, 0], s[:, 0], third], axis=1))

    fan_loop = fill & (edges_per_loop > 3)
    vertices, colors = mesh.vertices, mesh.colors
    if fan_loop.any():
        fan_ids = np.flatnonzero(fan_loop)
        centre_index = np.full(len(loops), -1, dtype=np.int64)
        centre_index[fan_ids] = n + np.arange(len(fan_ids))
        fan_edges = edge_fill & fan_loop[loop_index]
        owner = loop_index[fan_edges]
        counts = np.bincount(owner, minlength=len(loops))[fan_ids][:, None]
        centres = np.zeros((len(loops), 3))
        np.add.at(centres, owner, vertices[starts[fan_edges]])
        vertices = np.concatenate([vertices, centres[fan_ids] / counts])
        if colors is not None:
            centre_colors = np.zeros((len(loops), 3))
            np.add.at(centre_colors, owner, colors[starts[fan_edges]])
            colors = np.concatenate([colors, centre_colors[fan_ids] / counts])
        new_faces.append(
            np.stack([ends[fan_edges], starts[fan_edges], centre_index[owner]], axis=1)
        )

    result.holes_filled = int(fill.sum())
    if new_faces:
        added = np.concatenate(new_faces)
        result.faces_added = len(added)
        mesh = MeshData(
            vertices,
            np.concatenate([faces, added]),
            colors,
            name=mesh.name,
            metadata=dict(mesh.metadata),
        )
    if result.holes_filled:
        log.info("closed %d holes with %d faces", result.holes_filled, result.faces_added)
    result.watertight = result.holes_left == 0 and result.non_manifold_edges == 0
    return mesh, result
