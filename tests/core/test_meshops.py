"""Mesh processing: cleanup, repair, decimation, smoothing, frames and placement."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from blender_img3d.core.errors import CancelledError, MeshProcessingError
from blender_img3d.core.mesh.cleanup import (
    cleanup,
    merge_vertices,
    remove_small_components,
    remove_unreferenced_vertices,
)
from blender_img3d.core.mesh.decimate import decimate
from blender_img3d.core.mesh.meshdata import MeshData
from blender_img3d.core.mesh.metrics import compute_metrics
from blender_img3d.core.mesh.placement import (
    SHAP_E_TO_BLENDER,
    apply_rotation,
    origin_to_bottom_center,
    scale_to_size,
    shap_e_to_blender,
)
from blender_img3d.core.mesh.process import process_mesh
from blender_img3d.core.mesh.repair import repair
from blender_img3d.core.mesh.smooth import smooth
from blender_img3d.core.mesh.topology import edge_table, points_inside
from blender_img3d.core.progress import Phase
from blender_img3d.core.settings import MeshSettings
from tests.fixtures import meshes


def expected_position_colors(vertices: np.ndarray, lo, hi) -> np.ndarray:
    return (vertices - np.asarray(lo)) / (np.asarray(hi) - np.asarray(lo))


def radial_noise(mesh: MeshData) -> float:
    return float(np.linalg.norm(mesh.vertices, axis=1).std())


@pytest.fixture(scope="module")
def big_sphere() -> MeshData:
    """327 680 faces with position colours and a few specks: bigger than a grid-128 decode."""
    sphere = meshes.icosphere(7, colors=True)
    specks = [meshes.box(c - 0.01, c + 0.01, colors=True) for c in np.eye(3) * 1.5]
    return meshes.combine(sphere, *specks, name="big")


# --- cleanup ---------------------------------------------------------------------------


def test_merge_vertices_welds_a_split_cube_and_keeps_colours_with_positions():
    merged = merge_vertices(meshes.split_cube(colors=True))
    assert merged.vertex_count == 8
    np.testing.assert_allclose(
        merged.colors, expected_position_colors(merged.vertices, [-0.5] * 3, [0.5] * 3), atol=1e-6
    )


def test_merge_tolerance_is_relative_to_the_bounding_box():
    big = meshes.split_cube(size=1000.0)
    jitter = np.random.default_rng(0).uniform(-1e-4, 1e-4, big.vertices.shape)
    merged = merge_vertices(MeshData(big.vertices + jitter, big.faces))
    assert merged.vertex_count == 8  # jitter 1e-4 < 1e-6 of the 1732-unit diagonal
    small = meshes.split_cube(size=1e-3)
    assert merge_vertices(small).vertex_count == 8


def test_cleanup_turns_a_split_cube_into_a_watertight_cube():
    cleaned = cleanup(meshes.split_cube())
    m = compute_metrics(cleaned)
    assert m.watertight and m.winding_consistent
    assert (m.vertices, m.faces) == (8, 12)
    assert m.volume == pytest.approx(1.0)


def test_cleanup_removes_specks_and_keeps_the_body():
    noisy = meshes.noisy_sphere_with_specks(specks=5)
    cleaned = cleanup(noisy)
    m = compute_metrics(cleaned)
    assert m.components == 1
    assert m.faces == 20 * 4**4
    assert np.linalg.norm(cleaned.vertices, axis=1).max() < 1.2  # specks sat beyond 1.5


@pytest.mark.parametrize("keep", [1, 0])
def test_cleanup_removes_an_interior_pocket(keep):
    cleaned = cleanup(meshes.cube_with_pocket(size=2.0), MeshSettings(keep_components=keep))
    m = compute_metrics(cleaned)
    assert m.components == 1
    assert m.volume == pytest.approx(8.0)  # the void is filled


def test_cleanup_removes_the_void_marching_cubes_makes_inside_a_shell():
    # Vertices of both shells sit on the same grid lines: the case that defeats
    # axis-aligned ray tests.
    from skimage.measure import marching_cubes

    axis = np.linspace(-1.0, 1.0, 32)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    field = np.pad(np.minimum(0.8 - r, r - 0.3), 1, constant_values=-1.0)  # > 0 inside
    vertices, faces, _, _ = marching_cubes(field, 0.0)
    raw = MeshData(vertices, faces)
    assert compute_metrics(raw).components == 2
    m = compute_metrics(cleanup(raw, MeshSettings(keep_components=0)))
    assert m.components == 1 and m.watertight
    assert m.volume == pytest.approx(4 / 3 * np.pi * (0.8 * 31 / 2) ** 3, rel=0.03)


def test_points_inside_matches_a_sphere():
    sphere = meshes.icosphere(4)
    points = np.random.default_rng(2).uniform(-1.2, 1.2, (200, 3))
    radius = np.linalg.norm(points, axis=1)
    clear = np.abs(radius - 1.0) > 0.01  # skip points closer to the surface than its facets
    inside = points_inside(sphere.vertices, sphere.faces, points)
    np.testing.assert_array_equal(inside[clear], radius[clear] < 1.0)


def test_cleanup_keeps_separate_pieces_when_asked():
    cleaned = cleanup(meshes.two_cubes(), MeshSettings(keep_components=0))
    assert compute_metrics(cleaned).components == 2
    cleaned = cleanup(meshes.two_cubes(), MeshSettings(keep_components=1))
    assert compute_metrics(cleaned).components == 1


def test_small_components_can_be_ranked_by_faces_or_by_volume():
    dense_small = meshes.icosphere(2, radius=0.1)  # 320 faces, tiny volume
    sparse_big = meshes.box((2, 2, 2), (5, 5, 5))  # 12 faces, volume 27
    both = meshes.combine(dense_small, sparse_big)
    by_faces, _ = remove_small_components(both, keep=1, measure="faces")
    by_volume, _ = remove_small_components(both, keep=1, measure="volume")
    assert by_faces.face_count == 320
    assert by_volume.face_count == 12
    dropped, removed = remove_small_components(both, keep=0, min_fraction=0.5)
    assert removed == 1 and dropped.face_count == 320


def test_cleanup_fixes_inverted_winding():
    cleaned = cleanup(meshes.inverted(meshes.cube()))
    assert compute_metrics(cleaned).volume == pytest.approx(1.0)


def test_cleanup_makes_scattered_flipped_faces_consistent():
    torus = meshes.torus()
    faces = torus.faces.copy()
    flipped = np.random.default_rng(1).choice(len(faces), 300, replace=False)
    faces[flipped] = faces[flipped, ::-1]
    assert not compute_metrics(MeshData(torus.vertices, faces)).winding_consistent
    m = compute_metrics(cleanup(MeshData(torus.vertices, faces)))
    assert m.winding_consistent
    assert m.volume == pytest.approx(compute_metrics(torus).volume)


def test_colours_follow_their_vertices_through_cleanup():
    noisy = meshes.noisy_sphere_with_specks()
    lo, hi = noisy.vertices.min(axis=0), noisy.vertices.max(axis=0)
    cleaned = cleanup(noisy)
    np.testing.assert_allclose(
        cleaned.colors, expected_position_colors(cleaned.vertices, lo, hi), atol=1e-6
    )
    top = np.argmax(cleaned.vertices[:, 2])
    expected = (cleaned.vertices[top, 2] - lo[2]) / (hi[2] - lo[2])
    assert cleaned.colors[top, 2] == pytest.approx(expected, abs=1e-6)


def test_cleanup_drops_degenerate_and_duplicate_faces():
    cube = meshes.cube()
    faces = np.vstack([cube.faces, cube.faces[:2], [[0, 0, 1]], cube.faces[5, [1, 2, 0]]])
    cleaned = cleanup(MeshData(cube.vertices, faces))
    assert cleaned.face_count == 12
    assert compute_metrics(cleaned).watertight


# --- repair ----------------------------------------------------------------------------


def test_repair_closes_the_open_side_of_a_box():
    closed, report = repair(meshes.open_box())
    m = compute_metrics(closed)
    assert m.watertight and m.winding_consistent
    assert m.volume == pytest.approx(1.0)
    assert (report.holes_found, report.holes_filled, report.holes_left) == (1, 1, 0)
    assert report.watertight and report.notes == []


def test_repair_fills_a_three_edge_hole_with_one_triangle():
    sphere = meshes.icosphere(2)
    holed = MeshData(sphere.vertices, sphere.faces[1:])
    closed, report = repair(holed)
    assert report.faces_added == 1 and closed.vertex_count == sphere.vertex_count
    assert compute_metrics(closed).volume == pytest.approx(compute_metrics(sphere).volume)


def test_repair_gives_new_vertices_the_colour_of_their_hole():
    box = meshes.open_box()
    colored = MeshData(box.vertices, box.faces, meshes.position_colors(box.vertices))
    closed, _ = repair(colored)
    assert closed.colors[-1] == pytest.approx([0.5, 0.5, 1.0])  # mean of the top corners


def test_repair_reports_what_it_cannot_close():
    _, report = repair(meshes.fin())
    assert not report.watertight
    assert report.non_manifold_edges == 1
    assert any("non-manifold" in note for note in report.notes)

    _, report = repair(meshes.open_box(), max_hole_edges=3)
    assert not report.watertight and report.holes_left == 1
    assert any("longer than 3 edges" in note for note in report.notes)

    triangle = MeshData([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])
    unchanged, report = repair(triangle)
    assert unchanged.face_count == 1 and report.holes_left == 1
    assert any("rim" in note for note in report.notes)


# --- decimation ------------------------------------------------------------------------


def test_decimation_hits_the_target_and_keeps_a_closed_mesh_closed():
    sphere = meshes.icosphere(5, colors=True)  # 20 480 faces
    reduced = decimate(sphere, target_faces=2000)
    m = compute_metrics(reduced)
    assert abs(m.faces - 2000) <= 0.02 * 2000
    assert m.watertight and m.genus == 0 and m.winding_consistent
    assert m.volume == pytest.approx(compute_metrics(sphere).volume, rel=0.02)
    lo, hi = sphere.colors.min(axis=0), sphere.colors.max(axis=0)
    assert np.all(reduced.colors >= lo - 1e-6) and np.all(reduced.colors <= hi + 1e-6)


def test_a_staged_decimation_that_cannot_collapse_ends_instead_of_recursing(monkeypatch):
    """Seen in Blender 5.1: a mesh no safe collapse could reduce recursed ~1,000 deep."""
    import blender_img3d.core.mesh.decimate as decimation
    from blender_img3d.core.mesh.safe_collapse import CollapseResult

    sphere = meshes.icosphere(3)  # 1 280 faces, staged below 80
    torn = sphere.replaced(sphere.vertices, sphere.faces[::2])  # fast pass breaks topology

    def fast(vertices, faces, **kwargs):
        return torn.vertices, torn.faces, np.zeros((0, 2), np.int64)

    def stuck(vertices, faces, colors, target, weights=None):
        return CollapseResult(vertices, faces, colors, reached_target=False)

    import fast_simplification

    monkeypatch.setattr(fast_simplification, "simplify", fast)
    monkeypatch.setattr(decimation, "_fast_around_damage", lambda *args: None)
    monkeypatch.setattr(decimation, "safe_collapse", stuck)
    out, note = decimation.decimate_with_note.unchecked(sphere, 40)
    assert out.face_count == sphere.face_count and note


def sphere_with_thin_handle(grid: int = 40, tube: float = 0.03) -> MeshData:
    """Marching cubes of a ball with a torus handle about one grid cell thick."""
    from blender_img3d.core.shap_e.decoding import marching_cubes_mesh

    axis = np.linspace(-1.0, 1.0, grid)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    ball = 0.45 - np.sqrt(x**2 + y**2 + z**2)
    ring = np.sqrt((np.sqrt((x - 0.45) ** 2 + y**2) - 0.3) ** 2 + z**2)
    vertices, faces = marching_cubes_mesh(np.maximum(ball, tube - ring))
    return MeshData(vertices, faces, expected_position_colors(vertices, [-1] * 3, [1] * 3))


def test_decimation_mends_a_thin_handle_it_pinches_and_stays_closed():
    # fast-simplification folds this handle onto itself at every aggressiveness we try
    # (edges with one and three faces); the mesh must still come out closed.
    mesh = sphere_with_thin_handle()
    assert compute_metrics(mesh).watertight
    reduced = decimate(mesh, ratio=0.2)
    m = compute_metrics(reduced)
    assert m.watertight and m.winding_consistent and m.vertex_manifold
    assert abs(m.faces - 0.2 * mesh.face_count) <= 0.05 * mesh.face_count
    assert m.volume == pytest.approx(compute_metrics(mesh).volume, rel=0.05)
    assert reduced.colors is not None and len(reduced.colors) == reduced.vertex_count


@pytest.mark.parametrize("transfer", ["mean", "nearest"])
def test_decimated_colours_match_their_positions(transfer):
    sphere = meshes.icosphere(5, colors=True)
    reduced = decimate(sphere, target_faces=2000, color_transfer=transfer)
    expected = expected_position_colors(reduced.vertices, [-1] * 3, [1] * 3)
    assert np.abs(reduced.colors - expected).mean() < 0.01


def test_decimation_by_ratio():
    sphere = meshes.icosphere(4)
    reduced = decimate(sphere, ratio=0.25)
    assert abs(reduced.face_count - 1280) <= 0.02 * 1280


def test_decimation_preserves_the_boundary_of_an_open_mesh():
    sphere = meshes.icosphere(5)
    keep = ~np.all(sphere.vertices[sphere.faces][:, :, 2] > 0.8, axis=1)
    cap = remove_unreferenced_vertices(MeshData(sphere.vertices, sphere.faces[keep]))
    before = compute_metrics(cap)
    reduced = decimate(cap, target_faces=2000)
    after = compute_metrics(reduced)
    assert after.boundary_edges == before.boundary_edges > 0
    assert after.components == 1

    def rim_points(mesh):
        table = edge_table(mesh.faces, mesh.vertex_count)
        ids = np.unique(table.edges[table.boundary])
        return np.round(mesh.vertices[ids], 9)

    np.testing.assert_array_equal(
        np.unique(rim_points(cap), axis=0), np.unique(rim_points(reduced), axis=0)
    )


def test_decimation_leaves_small_meshes_alone_and_rejects_bad_targets():
    cube = meshes.cube()
    assert decimate(cube, target_faces=100) is cube
    with pytest.raises(MeshProcessingError, match="exactly one"):
        decimate(cube)
    with pytest.raises(MeshProcessingError, match="exactly one"):
        decimate(cube, target_faces=10, ratio=0.5)
    with pytest.raises(MeshProcessingError, match="ratio"):
        decimate(cube, ratio=1.5)


# --- smoothing -------------------------------------------------------------------------


def test_smoothing_reduces_noise_and_keeps_volume():
    noisy = meshes.noisy_sphere_with_specks(specks=0, noise=0.02)
    smoothed = smooth(noisy, iterations=10)
    assert radial_noise(smoothed) < radial_noise(noisy) / 2
    assert compute_metrics(smoothed).volume == pytest.approx(
        compute_metrics(noisy).volume, rel=0.03
    )
    assert smoothed.colors is not None and smoothed.face_count == noisy.face_count


def test_smoothing_keeps_open_rims_in_place_and_zero_iterations_is_a_no_op():
    box = meshes.open_box()
    smoothed = smooth(box, iterations=5)
    rim = box.vertices[:, 2] > 0
    np.testing.assert_array_equal(smoothed.vertices[rim], box.vertices[rim])
    assert smooth(box, iterations=0) is box


@pytest.mark.slow
def test_smoothing_200k_faces_keeps_the_mesh_finite_and_its_connectivity(big_sphere):
    smoothed = smooth(big_sphere, iterations=5)  # speed: benchmarks/
    assert np.isfinite(smoothed.vertices).all()
    assert np.array_equal(smoothed.faces, big_sphere.faces)


# --- frames and placement --------------------------------------------------------------


def test_shap_e_to_blender_is_a_proper_rotation():
    matrix = SHAP_E_TO_BLENDER
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(matrix) == pytest.approx(1.0)


def test_a_chair_in_shap_e_frame_stands_z_up_facing_minus_y_in_blender():
    chair = meshes.chair()  # in Shap-E's frame: +z up, back toward +y
    placed = shap_e_to_blender(chair)
    top_of_back = np.array([0.5, 0.5, 1.5])
    i = int(np.argmin(np.linalg.norm(chair.vertices - top_of_back, axis=1)))
    np.testing.assert_allclose(placed.vertices[i], SHAP_E_TO_BLENDER @ top_of_back)
    # Z-up: the back's top is the highest point; the front (open side) faces -Y.
    assert placed.vertices[:, 2].argmax() in np.flatnonzero(chair.vertices[:, 2] == 1.5)
    back = placed.vertices[chair.vertices[:, 2] > 0.55]
    assert back[:, 1].mean() > placed.vertices[:, 1].mean()
    # No mirroring: signed volume and winding keep their sign.
    assert compute_metrics(placed).volume == pytest.approx(compute_metrics(chair).volume)


def test_a_mirroring_frame_change_is_rejected():
    with pytest.raises(MeshProcessingError, match="proper rotation"):
        apply_rotation(meshes.cube(), np.diag([1.0, -1.0, 1.0]))


def test_a_rotation_moves_a_known_vertex_where_the_matrix_says():
    quarter_turn_about_x = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)
    chair = meshes.chair()
    turned = apply_rotation(chair, quarter_turn_about_x)
    np.testing.assert_allclose(turned.vertices, chair.vertices @ quarter_turn_about_x.T)
    assert compute_metrics(turned).volume == pytest.approx(compute_metrics(chair).volume)


def test_scale_to_size_sets_the_longest_side_exactly():
    box = meshes.box((1.0, 2.0, 3.0), (2.0, 4.0, 7.0))
    scaled = scale_to_size(box, 2.0)
    extent = scaled.vertices.max(axis=0) - scaled.vertices.min(axis=0)
    np.testing.assert_allclose(extent, [0.5, 1.0, 2.0], rtol=0, atol=1e-12)
    with pytest.raises(MeshProcessingError, match="positive"):
        scale_to_size(box, 0.0)


def test_origin_goes_to_the_bottom_centre():
    placed = origin_to_bottom_center(meshes.box((1.0, 2.0, 3.0), (2.0, 4.0, 7.0)))
    lo, hi = placed.vertices.min(axis=0), placed.vertices.max(axis=0)
    np.testing.assert_array_equal(lo, [-0.5, -1.0, 0.0])
    np.testing.assert_array_equal(hi, [0.5, 1.0, 4.0])


# --- the whole chain -------------------------------------------------------------------


def test_process_mesh_cleans_reduces_and_places_with_timings_and_notes():
    raw = meshes.inverted(meshes.noisy_sphere_with_specks(specks=3))
    raw.colors = meshes.position_colors(raw.vertices)
    calls = []
    settings = MeshSettings(target_faces=1000, smooth_iterations=2, size=2.0)
    result = process_mesh(raw, settings, progress=lambda *a: calls.append(a))
    m = compute_metrics(result.mesh, result.timings)
    assert m.watertight and m.components == 1 and m.volume > 0
    assert abs(m.faces - 1000) <= 20
    assert max(m.size) == pytest.approx(2.0)
    assert m.bbox_min[2] == pytest.approx(0.0, abs=1e-12)
    assert set(m.timings) == {"cleanup", "repair", "decimate", "smooth", "orient", "place"}
    assert "removed 3 specks (pieces under 0.25 % of the surface area, 36 faces)" in result.notes
    assert calls[0] == (Phase.PROCESSING, 0, 6) and calls[-1] == (Phase.PROCESSING, 6, 6)


def test_process_mesh_with_processing_off_only_orients_and_places():
    cube = meshes.split_cube()
    result = process_mesh(cube, MeshSettings(enabled=False))
    assert result.mesh.vertex_count == 24
    assert set(result.timings) == {"orient", "place"}
    assert result.mesh.vertices[:, 2].min() == 0.0


def test_process_mesh_reports_holes_it_could_not_close():
    result = process_mesh(meshes.fin(), MeshSettings(target_faces=0))
    assert result.repair is not None and not result.repair.watertight
    assert any("non-manifold" in note for note in result.notes)


def test_process_mesh_stops_when_cancelled():
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        process_mesh(meshes.cube(), cancel=cancel)


@pytest.mark.slow
def test_default_processing_of_a_200k_face_mesh_reaches_the_target(big_sphere):
    result = process_mesh(big_sphere)  # speed: benchmarks/
    m = compute_metrics(result.mesh)
    assert m.faces == pytest.approx(20_000, rel=0.02) and m.watertight and m.components == 1


@pytest.mark.parametrize(
    "operation",
    [
        merge_vertices,
        cleanup,
        repair,
        lambda mesh: decimate(mesh, target_faces=10),
        lambda mesh: smooth(mesh, 2),
        shap_e_to_blender,
        lambda mesh: scale_to_size(mesh, 1.0),
        origin_to_bottom_center,
        process_mesh,
    ],
)
@pytest.mark.parametrize(
    "vertices, faces, message",
    [
        (np.zeros((0, 3)), np.zeros((0, 3), dtype=int), "empty"),
        ([[0, 0, 0], [1, 0, 0], [np.inf, 1, 0]], [[0, 1, 2]], "NaN or infinite"),
        ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 7]], "indices run from 0 to 7"),
    ],
)
def test_invalid_meshes_raise_mesh_processing_error(operation, vertices, faces, message):
    with pytest.raises(MeshProcessingError, match=message):
        operation(MeshData(vertices, faces))
