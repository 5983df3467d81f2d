"""Cleanup: weld, drop degenerate faces, make winding consistent and outward, remove
interior pockets and small pieces. Every step keeps vertex colours."""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from ..errors import MeshProcessingError
from ..settings import SPECK_AREA_FRACTION, MeshSettings
from .meshdata import MeshData, plural
from .topology import (
    checks_mesh,
    consistent_winding,
    edge_table,
    enclosing_pieces,
    face_areas,
    face_labels,
    signed_volumes,
)

log = logging.getLogger(__name__)

# Vertices closer than this fraction of the bounding-box diagonal are one vertex:
# far below a grid-512 cell (1/512 ≈ 2e-3) yet well above float32 round-off.
MERGE_RELATIVE_TOLERANCE = 1e-6
COMPONENT_MEASURES = ("faces", "volume", "area")


_MEASURE_NAMES = {"faces": "faces", "volume": "volume", "area": "surface area"}


def keep_faces(mesh: MeshData, keep: np.ndarray) -> MeshData:
    """Keep the faces where ``keep`` is True and drop vertices no longer used."""
    return remove_unreferenced_vertices(mesh.replaced(faces=mesh.faces[keep]))


def remove_unreferenced_vertices(mesh: MeshData) -> MeshData:
    """Drop vertices no face uses, renumbering faces (colours follow)."""
    used = np.zeros(mesh.vertex_count, dtype=bool)
    used[mesh.faces.reshape(-1)] = True
    if used.all():
        return mesh
    remap = np.cumsum(used) - 1
    colors = None if mesh.colors is None else mesh.colors[used]
    return MeshData(
        mesh.vertices[used],
        remap[mesh.faces],
        colors,
        name=mesh.name,
        metadata=dict(mesh.metadata),
    )


def remove_degenerate_faces(mesh: MeshData) -> MeshData:
    """Drop faces that repeat a vertex index and faces repeating another face's vertex set.

    Faces with three distinct vertices but zero area are kept: removing a sliver
    between distinct vertices would open a hole that only the same sliver closes.
    """
    f = mesh.faces
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    ordered = np.sort(f, axis=1)
    _, first = np.unique(ordered, axis=0, return_index=True)
    unique = np.zeros(len(f), dtype=bool)
    unique[first] = True
    keep &= unique
    if keep.all():
        return mesh
    return keep_faces(mesh, keep)


@checks_mesh("merge vertices of")
def merge_vertices(
    mesh: MeshData,
    tolerance: Optional[float] = None,
    relative_tolerance: float = MERGE_RELATIVE_TOLERANCE,
) -> MeshData:
    """Weld vertices closer than ``tolerance`` (default: a fraction of the bbox diagonal).

    Welded vertices take the mean position and mean colour of their group; faces
    that collapse onto a repeated index are dropped afterwards by :func:`cleanup`.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if tolerance is None:
        tolerance = relative_tolerance * float(np.linalg.norm(np.ptp(mesh.vertices, axis=0)))
    if tolerance <= 0:
        return mesh
    n = mesh.vertex_count
    pairs = cKDTree(mesh.vertices).query_pairs(tolerance, output_type="ndarray")
    if len(pairs) == 0:
        return mesh
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), (n, n))
    count, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels, minlength=count)[:, None]
    vertices = np.zeros((count, 3))
    np.add.at(vertices, labels, mesh.vertices)
    colors = None
    if mesh.colors is not None:
        colors = np.zeros((count, 3))
        np.add.at(colors, labels, mesh.colors)
        colors = colors / sizes
    log.debug("merged %d vertices into %d", n, count)
    return MeshData(
        vertices / sizes, labels[mesh.faces], colors, name=mesh.name, metadata=dict(mesh.metadata)
    )


def make_winding_consistent(mesh: MeshData) -> MeshData:
    """Flip faces so that every two-face edge is walked once in each direction.

    See :func:`.topology.consistent_winding`; non-orientable pieces keep what its tree gives.
    """
    faces = consistent_winding(mesh.faces, mesh.vertex_count)
    if faces is mesh.faces:
        return mesh
    return mesh.replaced(faces=faces)


def orient_outward(mesh: MeshData) -> MeshData:
    """Flip whole pieces whose signed volume is negative, so normals point outward.

    Volumes are taken about each piece's own centroid, which also gives a sensible
    answer for open pieces (a bowl's normals point away from its hollow side).
    """
    faces = mesh.faces
    count, labels = face_labels(faces, mesh.vertex_count)
    tri = mesh.vertices[faces]
    centres = np.zeros((count, 3))
    np.add.at(centres, labels, tri.mean(axis=1))
    centres /= np.bincount(labels, minlength=count)[:, None]
    tri = tri - centres[labels][:, None, :]
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))
    inward = np.bincount(labels, weights=volume, minlength=count) < 0
    flip = inward[labels]
    if not flip.any():
        return mesh
    out = faces.copy()
    out[flip] = out[flip][:, ::-1]
    return mesh.replaced(faces=out)


def remove_interior_pockets(mesh: MeshData) -> tuple[MeshData, int]:
    """Remove closed pieces that lie inside another closed piece; return the mesh and how many.

    Marching cubes turns a void inside the body into an inner shell, invisible
    from outside but doubling the work of every later step and confusing volume
    and printing. What "inside" means is :func:`.topology.enclosing_pieces`'s.
    """
    faces = mesh.faces
    count, labels = face_labels(faces, mesh.vertex_count)
    if count < 2:
        return mesh, 0
    table = edge_table(faces, mesh.vertex_count)
    # A piece is closed when none of its faces touches a boundary or non-manifold edge.
    face_open = (table.counts != 2)[table.face_edges].any(axis=1)
    closed = np.bincount(labels, weights=face_open, minlength=count) == 0
    volume = np.abs(
        np.bincount(labels, weights=signed_volumes(mesh.vertices, faces), minlength=count)
    )
    # Largest first, so everything inside the body goes with it, nested pockets too.
    containers = [piece for piece in np.argsort(-volume) if closed[piece]]
    owner = enclosing_pieces(
        mesh.vertices,
        faces,
        labels,
        count,
        np.array(containers, dtype=np.int64),
        np.ones(count, dtype=bool),
    )
    inside = owner >= 0
    removed = int(inside.sum())
    if removed == 0:
        return mesh, 0
    return keep_faces(mesh, ~inside[labels]), removed


def remove_small_components(
    mesh: MeshData, keep: int = 1, min_fraction: float = 0.0, measure: str = "faces"
) -> tuple[MeshData, int]:
    """Keep the ``keep`` largest pieces (0: all), dropping any under ``min_fraction`` of the total.

    ``measure`` is ``"faces"`` (face count), ``"volume"`` (absolute enclosed
    volume, meaningful for closed pieces) or ``"area"`` (surface area). Returns the
    mesh and how many pieces went.
    """
    if measure not in COMPONENT_MEASURES:
        raise MeshProcessingError(
            f"Component measure must be one of {', '.join(COMPONENT_MEASURES)}, got {measure!r}."
        )
    if keep < 0:
        raise MeshProcessingError(f"keep_components must be 0 (all) or more, got {keep}.")
    count, labels = face_labels(mesh.faces, mesh.vertex_count)
    if measure == "faces":
        size = np.bincount(labels, minlength=count).astype(np.float64)
    elif measure == "area":
        size = np.bincount(labels, weights=face_areas(mesh.vertices, mesh.faces), minlength=count)
    else:
        per_face = signed_volumes(mesh.vertices, mesh.faces)
        size = np.abs(np.bincount(labels, weights=per_face, minlength=count))
    kept = size >= min_fraction * size.sum()
    if keep:
        rank = np.empty(count, dtype=np.int64)
        rank[np.argsort(-size, kind="stable")] = np.arange(count)
        kept &= rank < keep
    removed = int(count - kept.sum())
    if removed == 0:
        return mesh, 0
    return keep_faces(mesh, kept[labels]), removed


@checks_mesh("clean up")
def cleanup_with_notes(
    mesh: MeshData,
    settings: Optional[MeshSettings] = None,
    *,
    min_component_fraction: float = SPECK_AREA_FRACTION,
    component_measure: str = "area",
    remove_pockets: bool = True,
) -> tuple[MeshData, list[str]]:
    """:func:`cleanup`, also returning notes on what it removed (for the report)."""
    settings = settings or MeshSettings()
    notes = []
    faces_in = mesh.face_count
    mesh = merge_vertices.unchecked(mesh)
    mesh = remove_degenerate_faces(remove_unreferenced_vertices(mesh))
    if mesh.face_count == 0:
        raise MeshProcessingError(
            "Every face of the mesh was degenerate: there is no surface left to keep."
        )
    if mesh.face_count < faces_in:
        dropped = faces_in - mesh.face_count
        notes.append(f"removed {plural(dropped, 'degenerate or duplicate face')}")
    mesh = make_winding_consistent(mesh)
    if remove_pockets:
        mesh, pockets = remove_interior_pockets(mesh)
        if pockets:
            notes.append(f"removed {plural(pockets, 'interior pocket')}")
    faces_before = mesh.face_count
    mesh, specks = remove_small_components(mesh, 0, min_component_fraction, component_measure)
    if specks:
        share = f"{min_component_fraction * 100:g} % of the {_MEASURE_NAMES[component_measure]}"
        notes.append(
            f"removed {plural(specks, 'speck')} (pieces under {share}, "
            f"{plural(faces_before - mesh.face_count, 'face')})"
        )
    if settings.keep_components:
        faces_before = mesh.face_count
        mesh, dropped = remove_small_components(mesh, settings.keep_components, 0.0, "faces")
        if dropped:
            lost = plural(faces_before - mesh.face_count, "face")
            notes.append(
                f"kept the {plural(settings.keep_components, 'largest piece')}; removed "
                f"{plural(dropped, 'other piece')} ({lost})"
            )
    mesh = orient_outward(mesh)
    return mesh, notes


@checks_mesh("clean up")
def cleanup(mesh: MeshData, settings: Optional[MeshSettings] = None, **options) -> MeshData:
    """Weld, drop bad faces, remove pockets and small pieces, make normals consistent and outward.

    Pieces under ``min_component_fraction`` of the whole (by ``component_measure``,
    default: under :data:`~..settings.SPECK_AREA_FRACTION` of the surface area) are
    specks and go; then, if ``settings.keep_components`` is N > 0, only the N largest
    pieces by face count stay (0, the default, keeps every real part).
    """
    return cleanup_with_notes.unchecked(mesh, settings, **options)[0]
