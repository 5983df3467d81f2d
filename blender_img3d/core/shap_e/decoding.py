"""Shap-E latents → coloured triangle meshes, without diffusers' marching-cubes tables.

For each latent:

1. ``renderer.params_proj`` turns the latent into the weights of the first layers of
   the NeRSTF MLP; the remaining layers and all biases come from the renderer
   checkpoint. We evaluate that MLP functionally, for the whole batch at once, and
   never write into ``renderer.mlp`` (diffusers' ``decode_to_mesh`` does, which makes
   it unsafe to share a renderer between threads and limits it to one latent).
2. The signed-distance head (``tanh`` of output channel 0) is queried on a
   ``grid_size``³ lattice whose first and last samples lie on the bounding box
   faces, [-1, 1]³, in chunks of at most ``query_batch`` points.
3. The grid gets a border of -1 (outside) so every surface is closed, and
   scikit-image's marching cubes extracts the zero level set. Shap-E's convention:
   field > 0 is inside. diffusers' ``MeshDecoder`` would need lookup tables that
   only a real checkpoint fills (they are zero-initialised buffers), so it is not used.
4. The STF colour head (``sigmoid`` of output channels 3-5, "R", "G", "B") is
   queried at the surface vertices only: :func:`decode_latents` at every
   marching-cubes vertex, or, through :func:`decode_surfaces`, later, at the
   vertices mesh processing keeps (the pipeline's way: a decimated mesh has
   a fraction of the vertices, and the colour pass costs as much per point as
   the SDF's).

Frame of the result: Shap-E's own, right-handed with +Z up (its pan cameras orbit
the Z axis and look slightly down; the front view looks along +Y), the object
inside [-1, 1]³. Converting to the product's frame is ``core.mesh.placement``'s job.
Triangles wind counter-clockwise seen from outside (positive signed volume).

Vertex placement differs slightly from the reference on purpose: OpenAI's and
diffusers' marching cubes map the *padded* (grid_size + 2)³ array onto [-1, 1]³,
which shrinks the mesh by (grid_size - 1) / (grid_size + 1) relative to where
the field was sampled (1.6 % at grid 128) and makes the size depend on the grid.
We place every vertex where the sampled field crosses zero, so colours are
queried exactly on the surface and decoding at another grid size keeps the size.

Colours are the network's own values, sRGB-encoded in [0, 1] (what
:class:`~.meshdata.MeshData` stores). The reference pipelines pass them through
sRGB → linear before attaching them to their meshes; exporters that need linear
colour (glTF) convert themselves.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import numpy as np

from .. import settings
from ..errors import (
    DeviceError,
    EmptySurfaceError,
    LatentsError,
    ModelLoadError,
)
from ..mesh.meshdata import MeshData
from ..progress import Phase, ProgressCallback, raise_if_cancelled, report

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

BBOX_MIN = -1.0
BBOX_MAX = 1.0
# Smallest query batch the out-of-memory back-off goes down to before giving up:
# below this the per-batch overhead dominates and the device is hopelessly full.
MIN_QUERY_BATCH = 1024

# Output channels of the NeRSTF MLP (diffusers' MLPNeRSTFModel.map_indices_to_keys).
_SDF_ROWS = slice(0, 1)
_STF_ROWS = slice(3, 6)
_POSENC_OCTAVES = 15  # NeRF encoding of the position: 2**0 ... 2**14
# Coarse-to-fine SDF (see _sdf_grid_adaptive): every 4th grid point first, then the
# fine points of coarse cells whose corners come within the margin of the surface.
ADAPTIVE_STRIDE = 4
ADAPTIVE_SAFETY = 1.5
_ALIGNED_POINTS = 8
# Points are queried in whole blocks of this many (see STFField.query).
_POINT_BLOCK = 64
FRAME = "shap-e: right-handed, +Z up, object inside [-1, 1]^3"

LatentsLike = Union["torch.Tensor", np.ndarray]
DeviceLike = Union[str, "torch.device", None]


class STFField:
    """The NeRSTF MLPs of a batch of latents, ready to query.

    ``layers`` holds one ``(weight, bias)`` pair per linear layer; a weight (or
    bias) with a leading batch dimension belongs to one latent each, one without
    is shared by the batch. Build it with :func:`project_latents`.
    """

    def __init__(self, layers: list, insert_direction_at: Optional[int], batch_size: int) -> None:
        self.layers = layers
        self.insert_direction_at = insert_direction_at
        self.batch_size = batch_size
        weight = layers[0][0]
        self.device = weight.device
        self.dtype = weight.dtype

    def select(self, index: int) -> "STFField":
        """The field of latent ``index`` alone (views, no copies)."""
        layers = [(_pick(weight, index, 3), _pick(bias, index, 2)) for weight, bias in self.layers]
        return STFField(layers, self.insert_direction_at, 1)

    def query(self, positions: "torch.Tensor", head: str) -> "torch.Tensor":
        """Evaluate every latent's MLP at ``positions`` (N, 3), shared by the batch.

        ``head`` is ``"sdf"`` → (B, N) signed distance in (-1, 1), positive inside,
        or ``"rgb"`` → (B, N, 3) sRGB colour in [0, 1].
        """
        import torch
        import torch.nn.functional as F  # noqa: N812 (the usual torch alias)

        rows = _SDF_ROWS if head == "sdf" else _STF_ROWS
        count = len(positions)
        positions = positions.to(self.device, self.dtype)
        # Pad to whole blocks of points: elementwise kernels finish a buffer's ragged
        # end with scalar code and matrix products take other paths for a few rows,
        # both rounding differently, so without this a point's value would depend on
        # where the query batches happened to split the grid.
        padding = -count % _POINT_BLOCK
        if padding:
            positions = torch.cat([positions, positions.new_zeros(padding, 3)])
        last = len(self.layers) - 1
        with torch.inference_mode():
            h = _encode_position(positions)
            # The last layer computes every output channel although one head is used:
            # a one-row product takes a matrix-vector path whose rounding depends on
            # the number of points.
            for i, (weight, bias) in enumerate(self.layers):
                if i == self.insert_direction_at:
                    # diffusers appends a direction encoding here; without a view direction
                    # it is all zeros, so only the weight's leading columns contribute.
                    weight = weight[..., : h.shape[-1]]
                h = _linear(h, weight, bias)
                if i < last:
                    h = F.silu(h, inplace=True)
            if h.dim() == 2:  # no per-latent layer at all: every latent is the same MLP
                h = h.unsqueeze(0).expand(self.batch_size, *h.shape)
            h = h[:, :count]
            if head == "sdf":
                return torch.tanh(h[..., rows.start])
            return torch.sigmoid(h[..., rows])


def latent_shape(renderer: Any) -> tuple[int, int]:
    """``(tokens, width)`` of one latent for ``renderer``: (1024, 1024) for Shap-E."""
    config = renderer.params_proj.config
    return int(sum(shape[0] for shape in config.param_shapes)), int(config.d_latent)


def project_latents(renderer: Any, latents: LatentsLike, device: DeviceLike = None) -> STFField:
    """Turn latents (B, D), (D,) or (B, tokens, width) into queryable MLPs on ``device``.

    The projection runs where the renderer lives; only the small per-latent
    weights travel to ``device``. It runs latent by latent: projecting the batch in
    one einsum costs the same but rounds differently by batch size, and the
    positional encoding (frequencies up to 2**14) amplifies a 1e-7 weight change
    into visible colour noise, so a seed would decode differently in a batch.
    """
    import torch

    _check_renderer(renderer)
    home = next(renderer.parameters()).device
    target = _resolve_device(device, home)
    dtype = next(renderer.mlp.parameters()).dtype
    batch = _latent_batch(renderer, latents)
    with torch.inference_mode():
        proj_dtype = next(renderer.params_proj.parameters()).dtype
        batch = batch.to(home, proj_dtype)
        singles = [renderer.params_proj(batch[i : i + 1]) for i in range(len(batch))]
        projected = {key: torch.cat([p[key] for p in singles]) for key in singles[0]}
    layers = []
    used = set()
    for i, layer in enumerate(renderer.mlp.mlp):
        pair = []
        for kind in ("weight", "bias"):
            key = f"nerstf.mlp.{i}.{kind}"
            shared = getattr(layer, kind)
            value = projected.get(key)
            if value is None:
                value = None if shared is None else shared.detach()
            else:
                used.add(key)
                if tuple(value.shape[1:]) != tuple(shared.shape):
                    raise ModelLoadError(
                        f"The renderer's latent projection makes {key} of shape "
                        f"{tuple(value.shape[1:])}, but the MLP expects {tuple(shared.shape)}: "
                        "the renderer files are inconsistent. Re-download the model."
                    )
            pair.append(None if value is None else value.to(target, dtype))
        layers.append(tuple(pair))
    unknown = sorted(set(projected) - used)
    if unknown:
        raise ModelLoadError(
            f"The renderer projects latents onto unknown parameters {unknown}: "
            "this renderer layout is not supported. Use a Shap-E (NeRSTF) model."
        )
    return STFField(layers, renderer.mlp.config.insert_direction_at, len(batch))


def grid_positions(grid_size: int, start: int, stop: int, device: Any = None) -> "torch.Tensor":
    """World positions of flat grid indices ``start:stop`` (x slowest, z fastest), float32.

    Index (i, j, k) sits at ``-1 + 2 * (i, j, k) / (grid_size - 1)``, as in Shap-E's
    ``volume_query_points``; the arithmetic matches it so the points are bit-identical.
    """
    import torch

    return _flat_positions(torch.arange(start, stop, device=device), grid_size)


def _flat_positions(index: "torch.Tensor", grid_size: int) -> "torch.Tensor":
    """World positions of flat grid indices (any order), with one arithmetic for every caller."""
    import torch

    xs = torch.div(index, grid_size * grid_size, rounding_mode="trunc")
    ys = torch.div(index, grid_size, rounding_mode="trunc") % grid_size
    zs = index % grid_size
    ijk = torch.stack([xs, ys, zs], dim=1).float()
    return ijk / (grid_size - 1) * (BBOX_MAX - BBOX_MIN) + BBOX_MIN


def sdf_grid(
    field: STFField,
    grid_size: int = settings.DEFAULT_GRID_SIZE,
    *,
    query_batch: Optional[int] = settings.DEFAULT_QUERY_BATCH,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
    adaptive: bool = False,
) -> np.ndarray:
    """Signed distance of every latent on the grid: float32 (B, G, G, G), indexed [x, y, z].

    ``adaptive`` evaluates the network only near the surface (see
    :func:`_sdf_grid_adaptive`); elsewhere the grid holds +1 or -1.
    """
    settings.check_decoding(grid_size, query_batch)
    runner = _QueryRunner(query_batch, progress, cancel, field.device)
    if adaptive:
        return _sdf_grid_adaptive(field, grid_size, runner, later_batches=0)
    return _sdf_grid(field, grid_size, runner, later_batches=0)


def marching_cubes_mesh(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Extract the closed surface field = 0 of one (G, G, G) grid sampled on [-1, 1]³.

    Returns float64 vertices (N, 3) in world units and int64 faces (M, 3) wound
    counter-clockwise seen from outside. Raises :class:`EmptySurfaceError` when no
    sample is inside (field > 0).
    """
    from skimage import measure

    grid = np.asarray(grid, dtype=np.float32)
    if grid.ndim != 3 or min(grid.shape) < 2:
        raise ValueError(f"expected a 3D grid of at least 2 samples a side, got {grid.shape}")
    if not np.isfinite(grid).all():
        raise DeviceError(
            "The decoder produced invalid numbers (NaN): half precision overflowed or "
            "the renderer weights are damaged. Decode in float32, or re-download the model."
        )
    if not (grid > 0).any():
        raise EmptySurfaceError(_empty_message(None, 1))
    # The -1 border closes surfaces that touch the bounding box.
    padded = np.pad(grid, 1, mode="constant", constant_values=-1.0)
    # Lewiner's method resolves ambiguous cubes consistently, so the mesh is closed.
    # "ascent": skimage's winding is then outward for an inside-positive field.
    verts, faces, _normals, _values = measure.marching_cubes(
        padded, level=0.0, method="lewiner", gradient_direction="ascent"
    )
    spacing = (BBOX_MAX - BBOX_MIN) / (np.asarray(grid.shape, dtype=np.float64) - 1.0)
    # Padded index 0 is one cell outside the box: shift by the border before scaling.
    vertices = (verts.astype(np.float64) - 1.0) * spacing + BBOX_MIN
    return vertices, faces.astype(np.int64)


def vertex_colors(
    field: STFField,
    vertices: np.ndarray,
    *,
    query_batch: Optional[int] = settings.DEFAULT_QUERY_BATCH,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
) -> np.ndarray:
    """sRGB colours in [0, 1], float32 (N, 3), of a one-latent ``field`` at ``vertices``."""
    if field.batch_size != 1:
        raise ValueError("vertex_colors takes the field of one latent: use field.select(i)")
    settings.check_decoding(settings.DEFAULT_GRID_SIZE, query_batch)
    runner = _QueryRunner(query_batch, progress, cancel, field.device)
    return _vertex_colors(field, vertices, runner, later_batches=0)


def decode_latents(
    renderer: Any,
    latents: LatentsLike,
    *,
    grid_size: int = settings.DEFAULT_GRID_SIZE,
    query_batch: Optional[int] = settings.DEFAULT_QUERY_BATCH,
    device: DeviceLike = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
    name: str = "img3d",
    adaptive: bool = False,
) -> list[MeshData]:
    """Decode latents (B, D) or (D,) with a diffusers ``ShapERenderer`` into B coloured meshes.

    ``query_batch`` bounds the points evaluated per MLP call across the whole batch
    (memory stays bounded at any grid size), in whole blocks of 64 points per
    latent; on out-of-memory it is halved down to :data:`MIN_QUERY_BATCH`, then
    :class:`DeviceError` is raised. The result does not depend on it, nor on the
    other latents in the batch: a latent decodes bit-identically alone. Progress is
    ``(Phase.DECODING, k, total)`` once per query batch; ``total`` grows if the
    batch is halved or once the vertex count is known. ``cancel`` is checked
    between batches. Any latent without a surface raises :class:`EmptySurfaceError`.
    Meshes are in Shap-E's frame (see the module docstring). ``query_batch``
    None picks :data:`settings.QUERY_BATCH_BY_DEVICE` for the device.
    ``adaptive`` queries the SDF coarse to fine: the mesh equals the dense
    decode wherever the coarse grid sees the surface (see :func:`_sdf_grid_adaptive`).

    Colours are queried at every marching-cubes vertex. A caller that thins the
    mesh first (the pipeline) uses :func:`decode_surfaces` and colours only the
    vertices it keeps.
    """
    surfaces, runner = _decode_surfaces(
        renderer, latents, grid_size, query_batch, device, progress, cancel, name, adaptive, True
    )
    meshes = []
    for index, surface in enumerate(surfaces):
        started = time.perf_counter()
        colors = _vertex_colors(
            surface.colors.field,
            surface.mesh.vertices,
            runner,
            later_batches=len(surfaces) - index - 1,
        )
        mesh = surface.mesh.replaced(colors=colors)
        mesh.metadata["timings"]["color_query_s"] = round(time.perf_counter() - started, 4)
        meshes.append(mesh)
    return meshes


def decode_surfaces(
    renderer: Any,
    latents: LatentsLike,
    *,
    grid_size: int = settings.DEFAULT_GRID_SIZE,
    query_batch: Optional[int] = settings.DEFAULT_QUERY_BATCH,
    device: DeviceLike = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
    name: str = "img3d",
    adaptive: bool = False,
) -> list["Surface"]:
    """:func:`decode_latents` without the colours: B uncoloured meshes, each with its colour head.

    The colour MLP costs as much per point as the SDF's, and marching cubes
    makes far more vertices (~100k at grid 128) than a decimated mesh keeps, so
    colouring after mesh processing saves most of that pass. The arguments and
    errors are :func:`decode_latents`'; progress covers the SDF pass only.
    """
    surfaces, _runner = _decode_surfaces(
        renderer, latents, grid_size, query_batch, device, progress, cancel, name, adaptive, False
    )
    return surfaces


@dataclass
class Surface:
    """One latent's surface: its mesh (no colours yet) and the colour head to colour it with."""

    mesh: MeshData
    colors: "VertexColors"


class VertexColors:
    """The STF colour head of one decoded latent, queryable at any points of Shap-E's frame.

    Kept by :func:`decode_surfaces` so colours are computed where the final
    mesh's vertices are (after cleanup, decimation, smoothing) rather than at
    every marching-cubes vertex. A point gets the same colour as in
    :func:`decode_latents` (the query does not depend on batching).
    """

    def __init__(self, field: STFField, query_batch: int) -> None:
        self.field = field
        self.query_batch = query_batch

    def __call__(
        self,
        vertices: np.ndarray,
        *,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[threading.Event] = None,
        phase: str = Phase.DECODING,
    ) -> np.ndarray:
        """sRGB colours in [0, 1], float32 (N, 3), at ``vertices`` (N, 3) in Shap-E's frame.

        Progress is ``(phase, k, total)`` once per query batch; ``cancel`` is
        checked between batches.
        """
        runner = _QueryRunner(self.query_batch, progress, cancel, self.field.device, phase)
        return _vertex_colors(self.field, vertices, runner, later_batches=0)


# --- internals ----------------------------------------------------------------


def _decode_surfaces(
    renderer: Any,
    latents: LatentsLike,
    grid_size: int,
    query_batch: Optional[int],
    device: DeviceLike,
    progress: Optional[ProgressCallback],
    cancel: Optional[threading.Event],
    name: str,
    adaptive: bool,
    colors_follow: bool,
) -> tuple[list[Surface], "_QueryRunner"]:
    """Project, query the SDF and run marching cubes; ``colors_follow`` counts colour batches."""
    import torch

    settings.check_decoding(grid_size, query_batch)
    raise_if_cancelled(cancel)
    field = project_latents(renderer, latents, device)
    count = field.batch_size
    runner = _QueryRunner(query_batch, progress, cancel, field.device)

    with torch.inference_mode():
        started = time.perf_counter()
        # One colour batch per mesh is the least still to come after the SDF pass.
        sdf = _sdf_grid_adaptive if adaptive else _sdf_grid
        grids = sdf(field, grid_size, runner, later_batches=count if colors_follow else 0)
        sdf_seconds = time.perf_counter() - started

        surfaces = []
        mc_seconds = []
        empty = []
        for index in range(count):
            raise_if_cancelled(cancel)
            started = time.perf_counter()
            try:
                surfaces.append(marching_cubes_mesh(grids[index]))
            except EmptySurfaceError:
                empty.append(index)
            mc_seconds.append(time.perf_counter() - started)
        if empty:
            raise EmptySurfaceError(_empty_message(empty, count))
        del grids

    result = []
    for index, (vertices, faces) in enumerate(surfaces):
        mesh = MeshData(
            vertices=vertices,
            faces=faces,
            name=name if count == 1 else f"{name}_{index}",
            metadata={
                "frame": FRAME,
                "color_space": "sRGB",
                "grid_size": int(grid_size),
                "sdf_points": int(runner.sdf_points),
                "sample_index": index,
                "timings": {
                    "sdf_query_s": round(sdf_seconds, 4),
                    "marching_cubes_s": round(mc_seconds[index], 4),
                },
            },
        )
        result.append(Surface(mesh, VertexColors(field.select(index), runner.query_batch)))
    log.info(
        "decoded %d surface(s) at grid %d: %s vertices, final query batch %d",
        count,
        grid_size,
        [surface.mesh.vertex_count for surface in result],
        runner.query_batch,
    )
    return result, runner


class _QueryRunner:
    """Runs query batches with progress, cancellation and out-of-memory back-off.

    One runner serves a whole decode, so a batch size halved during the SDF pass
    stays halved for the colours, and progress counts every batch of both.
    """

    def __init__(
        self,
        query_batch: Optional[int],
        progress: Optional[ProgressCallback],
        cancel: Optional[threading.Event],
        device: Any,
        phase: str = Phase.DECODING,
    ) -> None:
        if query_batch is None:
            kind = getattr(device, "type", str(device))
            query_batch = settings.QUERY_BATCH_BY_DEVICE.get(
                kind, settings.QUERY_BATCH_BY_DEVICE["cuda"]
            )
        self.query_batch = int(query_batch)
        self.sdf_points = 0  # grid points whose SDF was evaluated (per latent)
        self.progress = progress
        self.cancel = cancel
        self.device = device
        self.phase = phase
        self.done = 0

    def map(
        self,
        count: int,
        width: int,
        compute: Callable[[int, int], "torch.Tensor"],
        later_batches: int,
    ) -> list:
        """``compute(start, stop)`` over ``range(count)`` in chunks of query_batch // width."""
        results = []
        start = 0
        while start < count:
            raise_if_cancelled(self.cancel)
            # Whole blocks only, so no batch but the last is padded.
            chunk = max(_POINT_BLOCK, self.query_batch // width // _POINT_BLOCK * _POINT_BLOCK)
            stop = min(count, start + chunk)
            out_of_memory = None
            try:
                results.append(compute(start, stop))
            except Exception as error:  # noqa: BLE001 (only out-of-memory is handled)
                if not _is_out_of_memory(error):
                    raise
                out_of_memory = str(error).splitlines()[0]
            if out_of_memory is not None:
                # Outside the except block so the failed batch's tensors are freed first.
                self._back_off(out_of_memory)
                continue
            start = stop
            self.done += 1
            remaining = math.ceil((count - start) / chunk)
            report(self.progress, self.phase, self.done, self.done + remaining + later_batches)
        return results

    def _back_off(self, reason: str) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if self.query_batch <= MIN_QUERY_BATCH:
            raise DeviceError(
                f"Out of memory on {self.device} while decoding, even with {self.query_batch} "
                "points per query batch. Close other programs using the GPU, lower the grid "
                "size, decode fewer samples at once, or decode on the CPU."
            )
        self.query_batch = max(MIN_QUERY_BATCH, self.query_batch // 2)
        log.warning(
            "out of memory on %s (%s); retrying with query batch %d",
            self.device,
            reason,
            self.query_batch,
        )


def _sdf_grid(field: STFField, grid_size: int, runner: _QueryRunner, later_batches: int):
    import torch

    def compute(start: int, stop: int) -> "torch.Tensor":
        positions = grid_positions(grid_size, start, stop, device=field.device)
        return field.query(positions, "sdf").float().cpu()

    with torch.inference_mode():
        chunks = runner.map(grid_size**3, field.batch_size, compute, later_batches)
        values = torch.cat(chunks, dim=1)
    runner.sdf_points += grid_size**3
    return values.reshape(field.batch_size, grid_size, grid_size, grid_size).numpy()


def _sdf_grid_adaptive(field: STFField, grid_size: int, runner: _QueryRunner, later_batches: int):
    """The SDF grid, evaluated coarse to fine: a coarse lattice, then only cells near the surface.

    The coarse lattice is every ``ADAPTIVE_STRIDE``-th grid point (and the last).
    From it we take the field's steepest slope ``L`` (times ``ADAPTIVE_SAFETY``).
    Every point of a coarse cell lies within half the cell's diagonal ``h`` of a
    corner, so if all corners agree in sign and sit further than ``L * h`` from
    zero, the whole cell has their sign; every other cell (for any latent of the
    batch) is refined: all its fine points are evaluated exactly as the dense pass
    would (in aligned groups of 8 flat indices, so they round alike). Unrefined
    points get their cell's sign as +-1. Marching cubes reads only cells that change
    sign, so while the field's slope stays below the estimate the mesh is the dense
    one bit for bit; a noisy field (a steep slope) simply refines everything.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812 (the usual torch alias)

    g, stride = grid_size, ADAPTIVE_STRIDE
    if g < 4 * stride:
        return _sdf_grid(field, g, runner, later_batches)
    axis = torch.tensor(sorted(set(range(0, g, stride)) | {g - 1}))
    c = len(axis)
    coarse_ijk = torch.cartesian_prod(axis, axis, axis)
    coarse_flat = (coarse_ijk[:, 0] * g + coarse_ijk[:, 1]) * g + coarse_ijk[:, 2]
    coarse = _query_flat(field, coarse_flat, g, runner, later_batches + 1)
    coarse = coarse.reshape(field.batch_size, c, c, c)

    # Per coarse cell, over its 8 corners and the whole batch.
    corners = torch.stack(
        [
            coarse[:, i : c - 1 + i, j : c - 1 + j, k : c - 1 + k]
            for i in (0, 1)
            for j in (0, 1)
            for k in (0, 1)
        ]
    )
    low = corners.amin(dim=(0, 1))
    high = corners.amax(dim=(0, 1))
    # The field's steepest slope seen on the coarse lattice (per unit length), with a
    # safety factor: a cell whose corners all sit further than slope x half its
    # diagonal from zero holds no sign change (every point is that close to a corner).
    spacing = (BBOX_MAX - BBOX_MIN) / (g - 1) * torch.diff(axis).double()
    slope = 0.0
    for dim in (1, 2, 3):
        steps = coarse.diff(dim=dim).abs().double()
        shape = [1, 1, 1, 1]
        shape[dim] = -1
        slope = max(slope, float((steps / spacing.reshape(shape)).max()))
    half_diagonal = float(spacing.max()) * math.sqrt(3.0) / 2.0
    margin = min(ADAPTIVE_SAFETY * slope * half_diagonal, 2.0)  # 2: refine everything
    near = (low <= margin) & (high >= -margin)
    # Cells that are not refined are all inside (low > 0) or all outside (high < 0).
    inside = low > 0

    def per_point(cells: "torch.Tensor") -> "torch.Tensor":
        """Coarse-cell flags → fine-point flags (a point is in up to 8 fine cells)."""
        lengths = torch.diff(axis)
        fine = cells.repeat_interleave(lengths, 0).repeat_interleave(lengths, 1)
        fine = fine.repeat_interleave(lengths, 2)[None, None].float()
        return F.max_pool3d(F.pad(fine, (1, 1, 1, 1, 1, 1)), 2, stride=1)[0, 0] > 0

    values = torch.where(per_point(inside), 1.0, -1.0).reshape(-1)
    values = values.expand(field.batch_size, g**3).clone()
    # Whole aligned groups of flat indices: a small renderer's products round a point
    # differently with other neighbours (measured), so groups keep the dense pass's.
    wanted = per_point(near).reshape(-1)
    padding = -len(wanted) % _ALIGNED_POINTS
    groups = F.pad(wanted, (0, padding)).reshape(-1, _ALIGNED_POINTS).any(dim=1).nonzero()[:, 0]
    flat = (groups[:, None] * _ALIGNED_POINTS + torch.arange(_ALIGNED_POINTS)).reshape(-1)
    flat = flat[flat < g**3]
    if len(flat):
        values[:, flat] = _query_flat(field, flat, g, runner, later_batches)
    runner.sdf_points += c**3 + len(flat)
    return values.reshape(field.batch_size, g, g, g).numpy()


def _query_flat(
    field: STFField, flat: "torch.Tensor", grid_size: int, runner: _QueryRunner, later: int
) -> "torch.Tensor":
    """SDF (B, N) at flat grid indices ``flat``, float32 on the CPU."""
    import torch

    flat = flat.to(field.device)

    def compute(start: int, stop: int) -> "torch.Tensor":
        positions = _flat_positions(flat[start:stop], grid_size)
        return field.query(positions, "sdf").float().cpu()

    chunks = runner.map(len(flat), field.batch_size, compute, later)
    return torch.cat(chunks, dim=1)


def _vertex_colors(
    field: STFField, vertices: np.ndarray, runner: _QueryRunner, later_batches: int
) -> np.ndarray:
    import torch

    positions = torch.from_numpy(np.asarray(vertices, dtype=np.float32)).to(field.device)

    def compute(start: int, stop: int) -> "torch.Tensor":
        return field.query(positions[start:stop], "rgb")[0].float().cpu()

    with torch.inference_mode():
        chunks = runner.map(len(positions), 1, compute, later_batches)
        colors = torch.cat(chunks, dim=0).numpy() if chunks else np.zeros((0, 3), np.float32)
    # Reduced precision can round a sigmoid just past its range.
    return np.clip(colors, 0.0, 1.0).astype(np.float32)


def _encode_position(position: "torch.Tensor") -> "torch.Tensor":
    """NeRF encoding as the NeRSTF MLP was trained with: x, sin(2^k x), cos(2^k x) as sin(+π/2)."""
    import torch

    scales = 2.0 ** torch.arange(_POSENC_OCTAVES, dtype=position.dtype, device=position.device)
    scaled = (position[..., None, :] * scales[:, None]).reshape(*position.shape[:-1], -1)
    return torch.cat([position, torch.sin(torch.cat([scaled, scaled + math.pi / 2.0], -1))], -1)


def _linear(h: "torch.Tensor", weight: "torch.Tensor", bias: Optional["torch.Tensor"]):
    """A linear layer whose weight/bias may carry a leading per-latent batch dimension.

    ``h`` is (N, in) while shared by every latent, (B, N, in) once per-latent.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812 (the usual torch alias)

    per_latent_bias = bias is not None and bias.dim() == 2
    if weight.dim() == 2 and not per_latent_bias:
        return F.linear(h, weight, bias)
    count = len(weight) if weight.dim() == 3 else len(bias)
    out = h.new_empty(count, h.shape[-2], weight.shape[-2])
    # One product per latent rather than one batched product: the same FLOPs, and a
    # latent decodes bit-identically alone or in a batch. Written in place: no copies.
    for b in range(count):
        rows = h if h.dim() == 2 else h[b]
        w = (weight[b] if weight.dim() == 3 else weight).t()
        c = bias[b] if per_latent_bias else bias
        if c is None:
            torch.mm(rows, w, out=out[b])
        else:
            torch.addmm(c, rows, w, out=out[b])
    return out


def _pick(tensor: Optional["torch.Tensor"], index: int, batched_dims: int):
    if tensor is None or tensor.dim() < batched_dims:
        return tensor
    return tensor[index : index + 1]


def _check_renderer(renderer: Any) -> None:
    try:
        config = renderer.mlp.config
        latent_shape(renderer)
        n_output = int(config.n_output)
        act_fn = config.act_fn
    except AttributeError as error:
        raise ModelLoadError(
            f"{type(renderer).__name__} is not a Shap-E renderer (no NeRSTF MLP or latent "
            "projection): load the model's shap_e_renderer component."
        ) from error
    if n_output < _STF_ROWS.stop or act_fn != "swish":
        raise ModelLoadError(
            f"The renderer's MLP (n_output={n_output}, act_fn={act_fn!r}) is not Shap-E's "
            "NeRSTF layout: use a Shap-E model's shap_e_renderer."
        )


def _resolve_device(device: DeviceLike, home: "torch.device") -> "torch.device":
    """``None`` decodes where the renderer lives; anything else goes to the one resolver."""
    from .loading import resolve_device

    return home if device is None else resolve_device(device)


def _latent_batch(renderer: Any, latents: LatentsLike) -> "torch.Tensor":
    """Latents as a float32 CPU tensor (B, tokens, width), or :class:`LatentsError`."""
    import torch

    tokens, width = latent_shape(renderer)
    if isinstance(latents, torch.Tensor):
        tensor = latents.detach().to("cpu", torch.float32)
    else:
        try:
            tensor = torch.from_numpy(np.asarray(latents, dtype=np.float32))
        except (TypeError, ValueError) as error:
            raise LatentsError(
                f"Latents must be a numeric array, got {type(latents).__name__}."
            ) from error
    given = tuple(tensor.shape)
    if tensor.dim() == 1:
        tensor = tensor[None]
    if tensor.dim() == 2 and tensor.shape[-1] == tokens * width:
        tensor = tensor.reshape(len(tensor), tokens, width)
    if tensor.dim() != 3 or tuple(tensor.shape[1:]) != (tokens, width) or len(tensor) == 0:
        raise LatentsError(
            f"Latents of shape {given} don't fit this renderer, which expects "
            f"(batch, {tokens * width}) or ({tokens * width},): they were made by a different "
            "model. Decode them with the model named in their .json sidecar."
        )
    if not torch.isfinite(tensor).all():
        raise LatentsError(
            "The latents contain NaN or infinite values (the sampling diverged): "
            "sample again with another seed or a lower guidance scale."
        )
    return tensor


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error)
    # MPS and the CPU allocator raise plain RuntimeErrors.
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _empty_message(indices: Optional[list[int]], count: int) -> str:
    which = ""
    if indices is not None and count > 1:
        which = f" for sample(s) {', '.join(str(i) for i in indices)} of {count}"
    return (
        f"Decoding found no surface{which}: the model predicted empty space everywhere. "
        "Try another seed or more sampling steps; for an image input, use one where the "
        "object is large, centred and clearly separated from the background."
    )
