"""Decoding latents into coloured meshes; saving and loading latents (decode.py, latents_io.py).

The renderer is a tiny diffusers ``ShapERenderer`` built in code (the shapes of
diffusers' own Shap-E pipeline tests), with random but seeded weights; its
marching-cubes tables are zero, as in any renderer not loaded from a checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
trimesh = pytest.importorskip("trimesh")

from blender_img3d.core.errors import (  # noqa: E402
    CancelledError,
    ConfigError,
    DeviceError,
    EmptySurfaceError,
    LatentsError,
)
from blender_img3d.core.progress import Phase  # noqa: E402
from blender_img3d.core.shap_e import decoding as decode  # noqa: E402
from blender_img3d.core.shap_e.latents import load_latents, save_latents, sidecar_path  # noqa: E402

TOKENS, WIDTH = 32, 16  # 4 projected layers x 8 vectors, d_latent 16
GRID = 16


def make_renderer(sdf_bias: float = -0.3):
    """A tiny seeded ShapERenderer whose SDF output bias is ``sdf_bias``.

    With random weights the field is mostly positive; -0.3 puts roughly the top
    fifth of the samples inside, so the surface is non-empty but not just the box.
    """
    from diffusers.pipelines.shap_e import ShapERenderer

    torch.manual_seed(0)
    renderer = ShapERenderer(
        param_shapes=((8, 93), (8, 8), (8, 8), (8, 8)),
        d_latent=WIDTH,
        d_hidden=8,
        n_output=12,
        background=(0.1, 0.1, 0.1),
    ).eval()
    with torch.no_grad():
        renderer.mlp.mlp[-1].bias[0] = sdf_bias
    return renderer


def make_latents(batch: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(batch, TOKENS * WIDTH, generator=generator)


@pytest.fixture(scope="module")
def renderer():
    return make_renderer()


def sphere_field(radius: float):
    """A stand-in for the MLP query: the exact signed distance of a sphere (positive inside)."""

    def query(self, positions, head):
        positions = positions.double()
        if head == "sdf":
            return (radius - positions.norm(dim=-1))[None].expand(self.batch_size, -1)
        # Colour encodes position so tests can check colours were queried at the vertices.
        return ((positions + 1) / 2)[None].expand(self.batch_size, -1, -1)

    return query


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


# --- decoding a real (tiny) renderer ---------------------------------------------------------


def test_decoding_ignores_the_renderers_zero_marching_cubes_tables(renderer):
    assert not renderer.mesh_decoder.cases.any() and not renderer.mesh_decoder.masks.any()
    grid = decode.sdf_grid(decode.project_latents(renderer, make_latents()), GRID)
    assert (grid > 0).any() and (grid < 0).any(), "fixture must straddle the surface"

    (mesh,) = decode.decode_latents(renderer, make_latents(), grid_size=GRID, name="chair")

    assert mesh.face_count > 0 and mesh.name == "chair"
    assert mesh.faces.min() >= 0 and mesh.faces.max() < mesh.vertex_count
    assert mesh.colors.dtype == np.float32 and mesh.colors.shape == (mesh.vertex_count, 3)
    assert mesh.colors.min() >= 0.0 and mesh.colors.max() <= 1.0
    # One cell of border is the furthest a vertex can get from the [-1, 1] box.
    assert np.abs(mesh.vertices).max() <= 1.0 + 2.0 / (GRID - 1)
    assert mesh.metadata["grid_size"] == GRID and "+Z up" in mesh.metadata["frame"]
    assert trimesh.Trimesh(mesh.vertices, mesh.faces, process=True).is_watertight


def test_field_queries_match_diffusers_mlp_with_projected_weights(renderer):
    latents = make_latents(batch=2)
    field = decode.project_latents(renderer, latents)
    positions = decode.grid_positions(GRID, 0, GRID**3)
    ours_sdf = field.query(positions, "sdf")
    ours_rgb = field.query(positions, "rgb")

    from diffusers.pipelines.shap_e.renderer import volume_query_points

    assert torch.equal(positions, volume_query_points(renderer.volume, GRID))
    for index in range(2):
        # diffusers' decode_to_mesh path: copy the projected weights into the MLP, query "stf".
        reference = copy.deepcopy(renderer)
        with torch.no_grad():
            params = reference.params_proj(latents[index : index + 1].reshape(1, TOKENS, WIDTH))
            for name, param in reference.mlp.state_dict().items():
                if f"nerstf.{name}" in params:
                    param.copy_(params[f"nerstf.{name}"].squeeze(0))
            out = reference.mlp(
                position=positions[None], direction=None, ts=None, nerf_level="fine",
                rendering_mode="stf",
            )  # fmt: skip
        torch.testing.assert_close(ours_sdf[index], out.signed_distance[0, :, 0])
        torch.testing.assert_close(ours_rgb[index], out.channels[0])


def test_decoding_leaves_the_renderer_weights_untouched(renderer):
    before = {k: v.clone() for k, v in renderer.state_dict().items()}
    decode.decode_latents(renderer, make_latents(), grid_size=GRID)
    after = renderer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_batch_decoding_equals_decoding_each_latent_alone(renderer):
    latents = make_latents(batch=3, seed=1)
    together = decode.decode_latents(renderer, latents, grid_size=GRID, name="obj")
    assert [m.name for m in together] == ["obj_0", "obj_1", "obj_2"]
    for index, mesh in enumerate(together):
        (alone,) = decode.decode_latents(renderer, latents[index].numpy(), grid_size=GRID)
        # Bit for bit: a seed must decode the same whatever else was in its batch.
        np.testing.assert_array_equal(mesh.vertices, alone.vertices)
        np.testing.assert_array_equal(mesh.faces, alone.faces)
        np.testing.assert_array_equal(mesh.colors, alone.colors)


def test_surfaces_are_the_meshes_without_colours_and_colour_alike_later(renderer):
    latents = make_latents(batch=2, seed=1)
    coloured = decode.decode_latents(renderer, latents, grid_size=GRID, query_batch=4096)
    surfaces = decode.decode_surfaces(renderer, latents, grid_size=GRID, query_batch=4096)
    assert len(surfaces) == 2
    for mesh, surface in zip(coloured, surfaces):
        assert surface.mesh.colors is None
        np.testing.assert_array_equal(surface.mesh.vertices, mesh.vertices)
        np.testing.assert_array_equal(surface.mesh.faces, mesh.faces)
        # Queried later in other batches of whole 64-point blocks: the same bits.
        head = surface.colors
        split = mesh.vertex_count // 3 // 64 * 64
        later = np.concatenate([head(mesh.vertices[:split]), head(mesh.vertices[split:])])
        np.testing.assert_array_equal(later, mesh.colors)
        # Any other subset (what decimation keeps) rounds a product differently, no more.
        kept = np.arange(0, mesh.vertex_count, 7)
        np.testing.assert_allclose(head(mesh.vertices[kept]), mesh.colors[kept], atol=1e-5)


def test_a_surfaces_colour_head_reports_progress_in_the_phase_asked_and_cancels(renderer):
    (surface,) = decode.decode_surfaces(renderer, make_latents(), grid_size=GRID)
    calls = []
    surface.colors(
        surface.mesh.vertices[:200],
        progress=lambda *args: calls.append(args),
        phase=Phase.PROCESSING,
    )
    assert calls and {phase for phase, _, _ in calls} == {Phase.PROCESSING}
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        surface.colors(surface.mesh.vertices, cancel=cancel)


def test_colours_are_the_stf_head_at_each_vertex(renderer):
    (mesh,) = decode.decode_latents(renderer, make_latents(), grid_size=GRID)
    field = decode.project_latents(renderer, make_latents())
    expected = field.query(torch.from_numpy(mesh.vertices).float(), "rgb")[0].numpy()
    np.testing.assert_allclose(mesh.colors, expected, atol=1e-6)


def test_an_all_outside_field_raises_empty_surface_with_advice():
    renderer = make_renderer(sdf_bias=-50.0)
    with pytest.raises(EmptySurfaceError, match="no surface") as caught:
        decode.decode_latents(renderer, make_latents(), grid_size=GRID)
    assert "seed" in str(caught.value) and "steps" in str(caught.value)


def test_empty_surface_in_a_batch_names_the_sample(renderer, monkeypatch):
    real_query = decode.STFField.query

    def second_sample_empty(self, positions, head):
        out = real_query(self, positions, head)
        if head == "sdf" and self.batch_size == 2:
            out = out.clone()
            out[1] = -1.0
        return out

    monkeypatch.setattr(decode.STFField, "query", second_sample_empty)
    with pytest.raises(EmptySurfaceError, match=r"sample\(s\) 1 of 2"):
        decode.decode_latents(renderer, make_latents(batch=2), grid_size=GRID)


# --- marching-cubes conventions on a known field ---------------------------------------------


@pytest.mark.parametrize("grid_size", [24, 33])
def test_sphere_field_gives_closed_outward_sphere_of_the_right_radius(
    renderer, monkeypatch, grid_size
):
    radius = 0.6
    monkeypatch.setattr(decode.STFField, "query", sphere_field(radius))
    (mesh,) = decode.decode_latents(renderer, make_latents(), grid_size=grid_size)

    cell = 2.0 / (grid_size - 1)
    distances = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(distances - radius).max() < 0.05 * cell  # linear interpolation of an exact SDF
    solid = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert solid.is_watertight and solid.is_winding_consistent
    volume = signed_volume(mesh.vertices, mesh.faces)
    assert volume > 0, "faces must wind counter-clockwise seen from outside"
    assert volume == pytest.approx(4.0 / 3.0 * math.pi * radius**3, rel=0.02)
    # Centred on the origin: the grid spans [-1, 1] symmetrically in x, y and z.
    np.testing.assert_allclose(mesh.vertices.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(mesh.vertices.max(axis=0), radius, atol=0.05 * cell)
    np.testing.assert_allclose(mesh.colors, (mesh.vertices + 1) / 2, atol=1e-6)


def test_off_centre_sphere_lands_where_the_field_puts_it(renderer, monkeypatch):
    """Axis order and bounds: a sphere at (0.5, -0.25, 0) must come out there, not permuted."""
    centre = torch.tensor([0.5, -0.25, 0.0], dtype=torch.float64)

    def query(self, positions, head):
        positions = positions.double()
        return (0.3 - (positions - centre).norm(dim=-1))[None].expand(self.batch_size, -1)

    monkeypatch.setattr(decode.STFField, "query", query)
    grid = decode.sdf_grid(decode.project_latents(renderer, make_latents()), 32)
    vertices, faces = decode.marching_cubes_mesh(grid[0])
    np.testing.assert_allclose(vertices.mean(axis=0), centre.numpy(), atol=0.01)
    assert signed_volume(vertices, faces) > 0


def test_field_inside_everywhere_is_closed_by_the_border_one_half_cell_outside_the_box():
    grid_size = 16
    vertices, faces = decode.marching_cubes_mesh(np.ones((grid_size,) * 3, np.float32))
    half_cell = 1.0 / (grid_size - 1)
    # The last sample (+1) sits on the box face, the border (-1) one cell further: zero halfway.
    np.testing.assert_allclose(vertices.min(axis=0), -1.0 - half_cell)
    np.testing.assert_allclose(vertices.max(axis=0), 1.0 + half_cell)
    assert signed_volume(vertices, faces) == pytest.approx((2.0 + 2 * half_cell) ** 3, rel=0.01)


# --- query batches, progress, cancellation, out of memory ------------------------------------


def test_query_batch_size_does_not_change_the_mesh(renderer):
    small = decode.decode_latents(renderer, make_latents(batch=2), grid_size=GRID, query_batch=97)
    large = decode.decode_latents(renderer, make_latents(batch=2), grid_size=GRID)
    for a, b in zip(small, large):
        np.testing.assert_array_equal(a.faces, b.faces)
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.colors, b.colors)


def test_progress_is_reported_once_per_query_batch(renderer):
    calls = []
    query_batch = 1024  # a whole number of 64-point blocks, so batches are exactly this size
    (mesh,) = decode.decode_latents(
        renderer,
        make_latents(),
        grid_size=GRID,
        query_batch=query_batch,
        progress=lambda *args: calls.append(args),
    )
    sdf_batches = math.ceil(GRID**3 / query_batch)
    color_batches = math.ceil(mesh.vertex_count / query_batch)
    assert len(calls) == sdf_batches + color_batches
    assert {phase for phase, _, _ in calls} == {Phase.DECODING}
    assert [step for _, step, _ in calls] == list(range(1, len(calls) + 1))
    assert all(step <= total for _, step, total in calls)
    assert calls[-1][1:] == (len(calls), len(calls))


def test_cancel_between_query_batches_raises_cancelled(renderer):
    cancel = threading.Event()
    steps = []

    def progress(phase, step, total):
        steps.append(step)
        if step == 2:
            cancel.set()

    with pytest.raises(CancelledError):
        decode.decode_latents(
            renderer, make_latents(), grid_size=GRID, query_batch=500, progress=progress,
            cancel=cancel,
        )  # fmt: skip
    assert steps == [1, 2], "no batch may run after the cancel flag is set"


def test_out_of_memory_halves_the_query_batch_and_succeeds(renderer, monkeypatch):
    real_query = decode.STFField.query
    sizes = []

    def limited(self, positions, head):
        sizes.append(len(positions))
        if len(positions) > 1500:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real_query(self, positions, head)

    (expected,) = decode.decode_latents(renderer, make_latents(), grid_size=GRID)
    monkeypatch.setattr(decode.STFField, "query", limited)
    (mesh,) = decode.decode_latents(renderer, make_latents(), grid_size=GRID, query_batch=4096)

    assert sizes[:3] == [4096, 2048, 1024]
    assert max(sizes[2:]) <= 1024
    np.testing.assert_array_equal(mesh.faces, expected.faces)
    np.testing.assert_array_equal(mesh.vertices, expected.vertices)


def test_out_of_memory_at_the_smallest_batch_raises_device_error(renderer, monkeypatch):
    def always_oom(self, positions, head):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(decode.STFField, "query", always_oom)
    with pytest.raises(DeviceError, match="grid size") as caught:
        decode.decode_latents(renderer, make_latents(), grid_size=GRID, query_batch=8192)
    assert str(decode.MIN_QUERY_BATCH) in str(caught.value)


def test_other_errors_inside_a_query_are_not_mistaken_for_out_of_memory(renderer, monkeypatch):
    def broken(self, positions, head):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(decode.STFField, "query", broken)
    with pytest.raises(RuntimeError, match="shapes"):
        decode.decode_latents(renderer, make_latents(), grid_size=GRID)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "latents",
    [np.zeros((2, 100), np.float32), np.zeros((0, TOKENS * WIDTH)), np.zeros((1, 2, 3, 4))],
    ids=["wrong-size", "empty-batch", "too-many-dims"],
)
def test_latents_of_the_wrong_shape_raise_latents_error(renderer, latents):
    with pytest.raises(LatentsError, match=str(TOKENS * WIDTH)):
        decode.decode_latents(renderer, latents, grid_size=GRID)


def test_non_finite_latents_raise_latents_error(renderer):
    latents = make_latents()
    latents[0, 3] = float("nan")
    with pytest.raises(LatentsError, match="NaN"):
        decode.decode_latents(renderer, latents, grid_size=GRID)


@pytest.mark.parametrize(
    "kwargs", [{"grid_size": 4}, {"grid_size": 16.5}, {"query_batch": 0}, {"device": "gpu9"}]
)
def test_impossible_settings_raise_config_error(renderer, kwargs):
    kwargs = {"grid_size": GRID, **kwargs}
    with pytest.raises(ConfigError):
        decode.decode_latents(renderer, make_latents(), **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_asking_for_cuda_without_a_gpu_raises_device_error(renderer):
    with pytest.raises(DeviceError, match="cpu"):
        decode.decode_latents(renderer, make_latents(), grid_size=GRID, device="cuda")


# --- saving and loading latents --------------------------------------------------------------

METADATA = {
    "model": "openai/shap-e-img2img",
    "revision": "main",
    "seed": 7,
    "steps": 64,
    "guidance": 3.0,
    "schedule": "shap-e",
    "image": "chair.png",
}


def test_saved_latents_load_back_exactly_with_metadata(tmp_path):
    latents = make_latents(batch=2)
    path = save_latents(tmp_path / "chair.npy", latents, METADATA)

    array, metadata = load_latents(path, expected_dim=TOKENS * WIDTH)

    assert array.dtype == np.float32 and array.shape == (2, TOKENS * WIDTH)
    np.testing.assert_array_equal(array, latents.numpy())
    assert metadata == METADATA
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chair.npy", "chair.npy.json"]


def test_loaded_latents_decode_at_two_grid_sizes(renderer, tmp_path):
    path = save_latents(tmp_path / "chair.npy", make_latents(), METADATA)
    array, _ = load_latents(path)
    (coarse,) = decode.decode_latents(renderer, array, grid_size=12)
    (fine,) = decode.decode_latents(renderer, array, grid_size=24)
    (direct,) = decode.decode_latents(renderer, make_latents(), grid_size=24)
    assert fine.vertex_count > coarse.vertex_count > 0
    np.testing.assert_array_equal(fine.faces, direct.faces)
    np.testing.assert_array_equal(fine.vertices, direct.vertices)


def test_saving_over_old_latents_replaces_both_files(tmp_path):
    path = tmp_path / "x.npy"
    save_latents(path, make_latents(seed=1), {"seed": 1})
    save_latents(path, make_latents(seed=2), {"seed": 2})
    array, metadata = load_latents(path)
    np.testing.assert_array_equal(array, make_latents(seed=2).numpy())
    assert metadata == {"seed": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "x.npy.json"]


def test_unserialisable_metadata_writes_nothing(tmp_path):
    with pytest.raises(LatentsError, match="JSON"):
        save_latents(tmp_path / "x.npy", make_latents(), {"image": object()})
    assert list(tmp_path.iterdir()) == []


def test_missing_latents_file_raises_latents_error(tmp_path):
    with pytest.raises(LatentsError, match="No latents file"):
        load_latents(tmp_path / "nothing.npy")


def test_corrupt_latents_file_raises_latents_error(tmp_path):
    path = save_latents(tmp_path / "x.npy", make_latents(), METADATA)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(LatentsError, match="damaged"):
        load_latents(path)


def test_text_posing_as_latents_raises_latents_error(tmp_path):
    path = tmp_path / "x.npy"
    path.write_text("not an array")
    with pytest.raises(LatentsError):
        load_latents(path)


def test_latents_for_another_model_raise_latents_error(tmp_path):
    path = save_latents(tmp_path / "x.npy", np.zeros((1, 100), np.float32))
    with pytest.raises(LatentsError, match="another model"):
        load_latents(path, expected_dim=TOKENS * WIDTH)


def test_wrongly_shaped_array_raises_latents_error(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((2, 3, 4), np.float32))
    with pytest.raises(LatentsError, match="shape"):
        load_latents(path)


def test_missing_sidecar_loads_with_empty_metadata(tmp_path, caplog):
    path = save_latents(tmp_path / "x.npy", make_latents(), METADATA)
    sidecar_path(path).unlink()
    array, metadata = load_latents(path)
    assert metadata == {} and array.shape == (1, TOKENS * WIDTH)
    assert "no sidecar" in caplog.text


def test_corrupt_sidecar_raises_latents_error(tmp_path):
    path = save_latents(tmp_path / "x.npy", make_latents(), METADATA)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(LatentsError, match="damaged"):
        load_latents(path)


def test_sidecar_of_other_latents_raises_latents_error(tmp_path):
    path = save_latents(tmp_path / "x.npy", make_latents(seed=1), METADATA)
    other = save_latents(tmp_path / "y.npy", make_latents(seed=2), METADATA)
    sidecar_path(path).write_text(sidecar_path(other).read_text())
    with pytest.raises(LatentsError, match="mixed up"):
        load_latents(path)


def test_save_into_a_missing_folder_fails_cleanly(tmp_path):
    from blender_img3d.core.errors import ExportError

    with pytest.raises(ExportError, match="does not exist"):
        save_latents(tmp_path / "no" / "x.npy", make_latents())
    assert list(tmp_path.iterdir()) == []


def test_sidecar_is_plain_json_naming_the_model(tmp_path):
    path = save_latents(tmp_path / "x.npy", make_latents(), METADATA)
    data = json.loads(sidecar_path(path).read_text())
    assert data["metadata"]["model"] == "openai/shap-e-img2img"
    assert data["shape"] == [1, TOKENS * WIDTH]


# --- coarse-to-fine SDF ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["chair", "sphere"])
def test_adaptive_decode_equals_the_dense_decode_on_calibrated_shapes(renderer, shape):
    from benchmarks import fields

    grid = 96
    field = fields.calibrated(decode.project_latents(renderer, make_latents()), shape)
    dense = decode.sdf_grid(field, grid)
    adaptive = decode.sdf_grid(field, grid, adaptive=True)
    dense_mesh = decode.marching_cubes_mesh(dense[0])
    adaptive_mesh = decode.marching_cubes_mesh(adaptive[0])
    # The same vertices and faces bit for bit: Hausdorff 0 (<= 1 voxel), same topology.
    np.testing.assert_array_equal(adaptive_mesh[0], dense_mesh[0])
    np.testing.assert_array_equal(adaptive_mesh[1], dense_mesh[1])
    assert ((adaptive > 0) == (dense > 0)).all()


def test_adaptive_decode_skips_most_points_and_records_how_many(renderer, monkeypatch):
    from benchmarks import fields

    real_project = decode.project_latents
    monkeypatch.setattr(
        decode,
        "project_latents",
        lambda *a, **k: fields.calibrated(real_project(*a, **k), "sphere"),
    )
    grid = 96
    (dense,) = decode.decode_latents(renderer, make_latents(), grid_size=grid)
    (mesh,) = decode.decode_latents(renderer, make_latents(), grid_size=grid, adaptive=True)
    assert mesh.metadata["sdf_points"] < 0.5 * grid**3 == 0.5 * dense.metadata["sdf_points"]
    np.testing.assert_array_equal(mesh.faces, dense.faces)
    np.testing.assert_array_equal(mesh.colors, dense.colors)


def test_adaptive_decode_of_a_noisy_field_refines_everything_and_still_matches(renderer):
    # The random tiny renderer's field is a sponge: its steep slope refines every cell.
    latents = make_latents(batch=2)
    dense = decode.decode_latents(renderer, latents, grid_size=48)
    adaptive = decode.decode_latents(renderer, latents, grid_size=48, adaptive=True)
    for a, b in zip(adaptive, dense):
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.faces, b.faces)


def test_query_batch_none_picks_the_devices_default(renderer):
    from blender_img3d.core import settings

    runner = decode._QueryRunner(None, None, None, torch.device("cpu"))
    assert runner.query_batch == settings.QUERY_BATCH_BY_DEVICE["cpu"]
    (auto,) = decode.decode_latents(renderer, make_latents(), grid_size=GRID, query_batch=None)
    (explicit,) = decode.decode_latents(renderer, make_latents(), grid_size=GRID, query_batch=97)
    np.testing.assert_array_equal(auto.vertices, explicit.vertices)
