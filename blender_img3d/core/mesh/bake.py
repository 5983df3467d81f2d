"""Vertex colours → a UV texture, for engines and viewers that ignore vertex colours.

Shap-E colours vertices; a game engine, a web viewer or a marketplace wants a
base-colour texture. :func:`bake_vertex_colors` cuts the mesh into charts and
packs them into one atlas with xatlas (vertices on a chart seam are split, so
positions repeat but each has one UV), then rasterises every triangle's
interpolated vertex colour into the atlas image and grows the charts a few
texels outward so filtering and mipmaps never reach the empty background.
The image is exactly ``size`` × ``size``: xatlas picks its atlas's aspect
itself (914 × 1196 for a 20k-face sphere asked for 1024), and the normalised
UVs are painted into the square the user asked for instead, so a power-of-two
size stays one (engines and WebGL mipmap those; the Khronos validator notes
any other); the charts' 4-texel gaps shrink by at most that aspect (measured
≥ 3.2 texels), still wider than a bilinear tap.

UVs follow glTF: ``(0, 0)`` is the image's top-left corner, ``v`` grows down
(the OBJ writer flips ``v``). Colours stay sRGB-encoded, as a base-colour PNG is.

xatlas runs in a child Python process: its packer dereferences a bad pointer
on some very regular meshes (measured: an icosphere subdivided 6 times, 82k
faces, with any pack options; marching-cubes and jittered meshes of that size
are fine), and a segfault inside Blender would take the artist's unsaved work
with it. A crashed child is retried once with positions nudged by 1e-5 of the
mesh's size (the layout only; the baked mesh keeps its positions), then
reported as one-line :class:`MeshProcessingError`.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from ..errors import DependencyError, MeshInputError, MeshProcessingError
from ..settings import DEFAULT_TEXTURE_SIZE, MAX_TEXTURE_SIZE, MIN_TEXTURE_SIZE
from ..version import __version__
from .meshdata import MeshData

__all__ = [
    "DEFAULT_TEXTURE_SIZE",
    "MAX_TEXTURE_SIZE",
    "MIN_TEXTURE_SIZE",
    "BakedTexture",
    "bake_texture",
    "bake_vertex_colors",
]
# The PNG's tEXt "Software" entry: how the output plan tells a texture we wrote from a
# user's picture of the same name (only ours may be replaced by the next export).
PNG_SOFTWARE = f"blender_img3d {__version__}"
CHART_PADDING_TEXELS = 4  # between charts in the atlas, and how far charts are grown
_EDGE_EPSILON = 1e-6
_RASTER_CHUNK_ELEMENTS = 2_000_000  # texel candidates evaluated at once (memory bound)
_NUDGE = 1e-5  # of the bounding-box diagonal: the retry's change to the layout's input
# The child: arrays in and out as .npz over stdin/stdout, nothing else on stdout.
_ATLAS_CHILD = """
import io, sys
import numpy as np
import xatlas
data = np.load(io.BytesIO(sys.stdin.buffer.read()))
atlas = xatlas.Atlas()
atlas.add_mesh(data["vertices"], data["faces"])
pack = xatlas.PackOptions()
pack.resolution = int(data["size"])
pack.padding = int(data["padding"])
pack.bilinear = True
atlas.generate(pack_options=pack)
vmapping, faces, uvs = atlas[0]
out = io.BytesIO()
np.savez(out, vmapping=vmapping, faces=faces, uvs=uvs, extent=[atlas.width, atlas.height])
sys.stdout.buffer.write(out.getvalue())
"""


@dataclass(eq=False)
class BakedTexture:
    """A mesh with one UV per vertex and its base-colour image."""

    mesh: MeshData  # seam vertices split; colours kept per (split) vertex
    uvs: np.ndarray  # (N, 2) float32, glTF convention
    image: np.ndarray  # (H, W, 3) uint8, sRGB
    # UVs outside [0, 1] repeat the image (a file's own texture, as glTF's default
    # sampler does); a baked atlas stays inside and clamps.
    repeat: bool = False

    def png_bytes(self) -> bytes:
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Software", PNG_SOFTWARE)
        buffer = io.BytesIO()
        Image.fromarray(self.image, "RGB").save(buffer, format="PNG", optimize=False, pnginfo=info)
        return buffer.getvalue()

    def sample(self, uvs: np.ndarray) -> np.ndarray:
        """Bilinear texture lookups at ``uvs`` as float sRGB in [0, 1] (for checks)."""
        height, width = self.image.shape[:2]
        if self.repeat:
            uvs = np.mod(uvs, 1.0)
        x = np.clip(uvs[:, 0] * width - 0.5, 0, width - 1)
        y = np.clip(uvs[:, 1] * height - 0.5, 0, height - 1)
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        image = self.image.astype(np.float32) / 255.0
        top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
        bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
        return top * (1 - fy) + bottom * fy


def bake_vertex_colors(mesh: MeshData, size: int = DEFAULT_TEXTURE_SIZE) -> BakedTexture:
    """UV-unwrap ``mesh`` and paint its vertex colours into a ``size`` × ``size`` texture."""
    if mesh.colors is None:
        raise MeshInputError(
            f"{mesh.name or 'The mesh'} has no vertex colours to bake into a texture: "
            "export it without baking, or give a mesh with vertex colours."
        )
    if not MIN_TEXTURE_SIZE <= int(size) <= MAX_TEXTURE_SIZE:
        raise MeshInputError(
            f"The texture size must be {MIN_TEXTURE_SIZE}..{MAX_TEXTURE_SIZE} px, got {size}."
        )
    if len(mesh.faces) == 0:
        raise MeshInputError("The mesh has no faces: there is nothing to bake.")
    try:
        import xatlas  # noqa: F401 - the child imports it; here only to say it's missing
    except ImportError:
        raise DependencyError(
            "Baking a texture needs the xatlas package: install the dependencies again "
            "(Preferences > Add-ons > Img3D, or 'python3 vendor_install.py --dev')."
        ) from None

    vmapping, faces, uvs, _extent = uv_atlas(mesh.vertices, mesh.faces, int(size))
    uvs = np.ascontiguousarray(uvs, dtype=np.float32)
    colors = mesh.colors[vmapping]
    image = rasterise(uvs, faces.astype(np.int64), colors, int(size), int(size))
    baked_mesh = MeshData(
        mesh.vertices[vmapping], faces, colors=colors, name=mesh.name, metadata=dict(mesh.metadata)
    )
    return BakedTexture(baked_mesh, uvs, image)


def bake_texture(source: BakedTexture, size: int = DEFAULT_TEXTURE_SIZE) -> BakedTexture:
    """A fresh ``size`` × ``size`` atlas for ``source.mesh``, painted from ``source``'s own
    texture: each texel takes the source image at the source UV interpolated there."""
    if not MIN_TEXTURE_SIZE <= int(size) <= MAX_TEXTURE_SIZE:
        raise MeshInputError(
            f"The texture size must be {MIN_TEXTURE_SIZE}..{MAX_TEXTURE_SIZE} px, got {size}."
        )
    mesh = source.mesh
    vmapping, faces, uvs, _extent = uv_atlas(mesh.vertices, mesh.faces, int(size))
    uvs = np.ascontiguousarray(uvs, dtype=np.float32)
    faces = faces.astype(np.int64)
    lookup = rasterise_values(uvs, faces, source.uvs[vmapping].astype(np.float32), size, size)
    image = source.sample(lookup.reshape(-1, 2)).reshape(size, size, 3)
    image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    colors = mesh.colors[vmapping] if mesh.colors is not None else None
    baked_mesh = MeshData(
        mesh.vertices[vmapping], faces, colors=colors, name=mesh.name, metadata=dict(mesh.metadata)
    )
    return BakedTexture(baked_mesh, uvs, image)


def uv_atlas(vertices: np.ndarray, faces: np.ndarray, size: int) -> tuple:
    """xatlas's charts packed into about ``size`` px: (vmapping, faces, uvs, (width, height)).

    Run in a child process (see the module docstring); a crash is retried once
    with nudged positions, a second one is a :class:`MeshProcessingError`.
    """
    positions = np.ascontiguousarray(vertices, dtype=np.float32)
    indices = np.ascontiguousarray(faces, dtype=np.uint32)
    outcome = _atlas_child(positions, indices, size)
    if isinstance(outcome, int):
        extent = float(np.linalg.norm(np.ptp(vertices, axis=0))) or 1.0
        noise = np.random.default_rng(0).uniform(-1.0, 1.0, positions.shape)
        nudged = (positions + noise * (_NUDGE * extent)).astype(np.float32)
        outcome = _atlas_child(nudged, indices, size)
    if isinstance(outcome, int):
        raise MeshProcessingError(
            f"The UV unwrapper (xatlas) crashed on this mesh ({len(faces)} faces, exit "
            f"{outcome}): decimate it (fewer target faces) and bake again, or export "
            "without baking."
        )
    return outcome


def _atlas_child(positions: np.ndarray, indices: np.ndarray, size: int):
    """The child's arrays, or its exit status when it died (a signal: negative)."""
    payload = io.BytesIO()
    np.savez(payload, vertices=positions, faces=indices, size=size, padding=CHART_PADDING_TEXELS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        done = subprocess.run(
            [sys.executable, "-c", _ATLAS_CHILD],
            input=payload.getvalue(),
            capture_output=True,
            env=env,
            check=False,
            # Inside Blender on Windows, no console window flashing up for the child.
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
    except OSError as error:
        raise MeshProcessingError(
            f"Can't start the UV unwrapper's process ({sys.executable}): {error.strerror or error}."
        ) from None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        if done.returncode > 0 and tail and "Error" in tail[0]:  # a Python error, not a crash
            raise MeshProcessingError(f"The UV unwrapper (xatlas) failed: {tail[0]}")
        return done.returncode
    result = np.load(io.BytesIO(done.stdout))
    return result["vmapping"], result["faces"], result["uvs"], tuple(result["extent"])


def rasterise(
    uvs: np.ndarray, faces: np.ndarray, colors: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Paint each triangle's barycentric colour blend into a ``height`` × ``width`` image."""
    total = rasterise_values(uvs, faces, colors, width, height)
    return np.round(np.clip(total, 0.0, 1.0) * 255.0).astype(np.uint8)


def rasterise_values(
    uvs: np.ndarray, faces: np.ndarray, colors: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Per texel, the barycentric blend of the per-vertex ``colors`` (any channel count),
    as float, with the charts grown outward (see :func:`grow_charts`).

    Triangles are grouped by the size of their texel bounding box and each group
    is evaluated at once on a K × K grid per triangle, in chunks that bound memory.
    """
    total = np.zeros((height, width, colors.shape[1]), dtype=np.float32)
    filled = np.zeros((height, width), dtype=bool)
    points = uvs.astype(np.float64) * (width, height) - 0.5  # texel centres are integers
    corners = points[faces]  # (F, 3, 2)
    lo = np.maximum(np.floor(corners.min(axis=1)).astype(np.int64), 0)
    hi = np.minimum(np.ceil(corners.max(axis=1)).astype(np.int64), (width - 1, height - 1))
    extent = (hi - lo + 1).max(axis=1)
    pa, pb, pc = corners[:, 0], corners[:, 1], corners[:, 2]
    area = (pb[:, 0] - pa[:, 0]) * (pc[:, 1] - pa[:, 1]) - (pb[:, 1] - pa[:, 1]) * (
        pc[:, 0] - pa[:, 0]
    )
    usable = (np.abs(area) > 1e-12) & (extent > 0)
    grid = 2
    while usable.any():
        group = np.flatnonzero(usable & (extent <= grid))
        usable[group] = False
        chunk = max(1, _RASTER_CHUNK_ELEMENTS // (grid * grid))
        offsets = np.arange(grid)
        for start in range(0, len(group), chunk):
            ids = group[start : start + chunk]
            xs = lo[ids, 0, None, None] + offsets[None, None, :]  # (T, 1, K)
            ys = lo[ids, 1, None, None] + offsets[None, :, None]  # (T, K, 1)
            xs, ys = np.broadcast_arrays(xs, ys)
            a, b, c = pa[ids, None, None], pb[ids, None, None], pc[ids, None, None]
            wa = ((b[..., 0] - xs) * (c[..., 1] - ys) - (b[..., 1] - ys) * (c[..., 0] - xs)) / area[
                ids, None, None
            ]
            wb = ((c[..., 0] - xs) * (a[..., 1] - ys) - (c[..., 1] - ys) * (a[..., 0] - xs)) / area[
                ids, None, None
            ]
            wc = 1.0 - wa - wb
            inside = (
                (wa >= -_EDGE_EPSILON)
                & (wb >= -_EDGE_EPSILON)
                & (wc >= -_EDGE_EPSILON)
                & (xs <= hi[ids, 0, None, None])
                & (ys <= hi[ids, 1, None, None])
            )
            tri, row, col = np.nonzero(inside)
            face = faces[ids[tri]]
            blend = (
                wa[tri, row, col, None] * colors[face[:, 0]]
                + wb[tri, row, col, None] * colors[face[:, 1]]
                + wc[tri, row, col, None] * colors[face[:, 2]]
            )
            total[ys[tri, row, col], xs[tri, row, col]] = blend
            filled[ys[tri, row, col], xs[tri, row, col]] = True
        grid *= 2
    grow_charts(total, filled, CHART_PADDING_TEXELS + 2)
    return total


def grow_charts(image: np.ndarray, filled: np.ndarray, texels: int) -> None:
    """Extend painted texels outward ``texels`` times (each empty texel: its neighbours' mean)."""
    for _ in range(texels):
        empty = ~filled
        if not empty.any():
            return
        sums = np.zeros_like(image)
        counts = np.zeros(filled.shape, dtype=np.float32)
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)):
            shifted_filled = _shift(filled, dy, dx)
            sums += _shift(image * filled[..., None], dy, dx)
            counts += shifted_filled
        grow = empty & (counts > 0)
        image[grow] = sums[grow] / counts[grow, None]
        filled |= grow


def _shift(array: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``array`` moved by (dy, dx) with zeros coming in (no wrap-around)."""
    out = np.zeros_like(array)
    height, width = array.shape[:2]
    ys = slice(max(dy, 0), height + min(dy, 0))
    xs = slice(max(dx, 0), width + min(dx, 0))
    yt = slice(max(-dy, 0), height + min(-dy, 0))
    xt = slice(max(-dx, 0), width + min(-dx, 0))
    out[ys, xs] = array[yt, xt]
    return out
