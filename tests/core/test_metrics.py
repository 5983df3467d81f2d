"""Metrics give exact answers on meshes whose topology and volume are known in closed form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blender_img3d.core.errors import MeshProcessingError
from blender_img3d.core.mesh.meshdata import MeshData
from blender_img3d.core.mesh.metrics import compute_metrics
from tests.fixtures import meshes


def test_cube_is_closed_genus_zero_with_exact_volume_and_area():
    m = compute_metrics(meshes.cube(size=2.0))
    assert (m.vertices, m.faces, m.edges, m.components) == (8, 12, 18, 1)
    assert m.watertight and m.edge_manifold and m.vertex_manifold and m.winding_consistent
    assert (m.boundary_edges, m.non_manifold_edges, m.degenerate_faces) == (0, 0, 0)
    assert m.euler_characteristic == 2 and m.genus == 0
    assert m.volume == pytest.approx(8.0, abs=1e-12)
    assert m.area == pytest.approx(24.0, abs=1e-12)
    assert m.bbox_min == [-1.0, -1.0, -1.0] and m.bbox_max == [1.0, 1.0, 1.0]
    assert m.size == [2.0, 2.0, 2.0]


def test_torus_has_genus_one():
    m = compute_metrics(meshes.torus())
    assert m.watertight
    assert m.euler_characteristic == 0
    assert m.genus == 1


def test_icosphere_counts_follow_subdivision():
    m = compute_metrics(meshes.icosphere(3))
    assert (m.faces, m.vertices, m.edges) == (20 * 4**3, 10 * 4**3 + 2, 30 * 4**3)
    assert m.genus == 0 and m.volume < 4 / 3 * np.pi


def test_open_box_counts_its_boundary_and_reports_no_volume():
    m = compute_metrics(meshes.open_box())
    assert m.boundary_edges == 4
    assert not m.watertight
    assert m.edge_manifold and m.vertex_manifold
    assert m.volume is None and m.genus is None


def test_two_disjoint_cubes_are_two_components():
    m = compute_metrics(meshes.two_cubes())
    assert m.components == 2
    assert m.watertight and m.genus == 0
    assert m.volume == pytest.approx(2.0)


def test_bowtie_has_one_non_manifold_vertex():
    m = compute_metrics(meshes.bowtie())
    assert m.non_manifold_vertices == 1
    assert not m.vertex_manifold
    assert m.edge_manifold and m.non_manifold_edges == 0
    assert m.boundary_edges == 6


def test_fin_has_one_non_manifold_edge():
    m = compute_metrics(meshes.fin())
    assert m.non_manifold_edges == 1
    assert not m.edge_manifold and not m.watertight
    assert m.boundary_edges == 6


def test_one_flipped_face_makes_winding_inconsistent():
    cube = meshes.cube()
    faces = cube.faces.copy()
    faces[3] = faces[3, ::-1]
    m = compute_metrics(MeshData(cube.vertices, faces))
    assert m.watertight
    assert not m.winding_consistent


def test_degenerate_faces_and_unreferenced_vertices_are_counted():
    cube = meshes.cube()
    unused = [5.0, 5.0, 5.0]
    on_edge = (cube.vertices[0] + cube.vertices[1]) / 2  # collinear with corners 0 and 1
    vertices = np.vstack([cube.vertices, [unused, on_edge]])
    repeated_index, zero_area = [0, 0, 1], [0, 1, 9]
    m = compute_metrics(MeshData(vertices, np.vstack([cube.faces, [repeated_index, zero_area]])))
    assert m.degenerate_faces == 2
    assert m.unreferenced_vertices == 1
    assert m.vertices == 10


def test_to_dict_is_json_serialisable_and_carries_timings():
    m = compute_metrics(meshes.cube(), timings={"cleanup": 0.25, "decimate": np.float64(0.5)})
    data = json.loads(json.dumps(m.to_dict()))
    assert data["timings"] == {"cleanup": 0.25, "decimate": 0.5}
    assert data["watertight"] is True
    assert data["genus"] == 0
    assert data["size"] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "vertices, faces, message",
    [
        (np.zeros((3, 3)), np.zeros((0, 3), dtype=int), "empty"),
        ([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]], [[0, 1, 2]], "NaN"),
        ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 3]], "indices"),
        ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, -1, 2]], "indices"),
    ],
)
def test_invalid_meshes_raise_a_clear_error(vertices, faces, message):
    with pytest.raises(MeshProcessingError, match=message):
        compute_metrics(MeshData(vertices, faces))


def unwelded(mesh: MeshData) -> MeshData:
    """Every triangle with its own three corners, as STL stores a mesh."""
    corners = mesh.vertices[mesh.faces].reshape(-1, 3)
    return MeshData(corners, np.arange(len(corners)).reshape(-1, 3))


def test_an_unwelded_closed_mesh_is_watertight_on_the_welded_view():
    m = compute_metrics(unwelded(meshes.cube()))
    assert m.vertices == 36 and m.welded_vertices == 8
    assert m.watertight and (m.parts, m.closed_parts, m.open_parts) == (1, 1, 0)
    assert m.volume == pytest.approx(1.0) and m.genus == 0 and m.boundary_edges == 0


def test_a_flipped_triangle_is_not_a_hole():
    cube = meshes.cube()
    faces = cube.faces.copy()
    faces[0] = faces[0, ::-1]
    m = compute_metrics(MeshData(cube.vertices, faces))
    assert m.watertight and not m.winding_consistent and m.parts == 1


def test_bodies_touching_along_an_edge_are_two_closed_parts():
    second = MeshData(meshes.cube().vertices + [1.0, 1.0, 0.0], meshes.cube().faces)
    m = compute_metrics(meshes.combine(meshes.cube(), second))
    assert m.non_manifold_edges == 1 and m.components == 1
    assert m.watertight and (m.parts, m.closed_parts) == (2, 2)


def test_a_closed_and_an_open_body_are_counted_apart():
    open_box = meshes.open_box()
    mixed = meshes.combine(meshes.cube(), MeshData(open_box.vertices + 3.0, open_box.faces))
    m = compute_metrics(mixed)
    assert not m.watertight and (m.parts, m.closed_parts, m.open_parts) == (2, 1, 1)
    from blender_img3d.core.mesh.metrics import closedness_label

    assert closedness_label(m.to_dict()) == "1 closed part, 1 open"
