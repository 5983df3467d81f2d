"""Smoothing: Taubin λ/μ on a sparse adjacency matrix, colours untouched."""

from __future__ import annotations

import numpy as np

from ..errors import MeshProcessingError
from .meshdata import MeshData
from .topology import checks_mesh, edge_table


@checks_mesh("smooth")
def smooth(mesh: MeshData, iterations: int, lamb: float = 0.5, mu: float = -0.53) -> MeshData:
    """Taubin λ/μ smoothing: removes bumps without the shrinking of plain Laplacian smoothing.

    Each iteration moves every vertex ``lamb`` of the way toward the mean of its
    neighbours, then ``mu`` (negative: back out). Boundary vertices stay put so
    open rims keep their outline. One sparse product per half-step: 200k faces
    take a few milliseconds per iteration.
    """
    from scipy.sparse import coo_matrix, diags

    if iterations < 0:
        raise MeshProcessingError(f"Smoothing iterations must be 0 or more, got {iterations}.")
    if iterations == 0:
        return mesh
    n = mesh.vertex_count
    table = edge_table(mesh.faces, n)
    a, b = table.edges.T
    adjacency = coo_matrix(
        (np.ones(2 * len(a)), (np.concatenate([a, b]), np.concatenate([b, a]))), (n, n)
    ).tocsr()
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    averaging = diags(1.0 / np.maximum(degree, 1.0)) @ adjacency
    movable = degree > 0
    movable[table.edges[table.boundary].reshape(-1)] = False
    movable = movable[:, None]
    vertices = mesh.vertices.copy()
    for _ in range(iterations):
        for factor in (lamb, mu):
            vertices += factor * movable * (averaging @ vertices - vertices)
    return mesh.replaced(vertices=vertices)
