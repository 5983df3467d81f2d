"""Property-based fuzzing: image bytes, mesh arrays and GLB bytes.

The property is the same for each: a valid result, or the typed error of that
input (ImageInputError, MeshInputError) with a one-line message; never another
exception, never a partial file. A few hundred cases each in CI; ``--nightly``
(or ``IMG3D_NIGHTLY=1``) runs 10,000 each. Derandomised, so a failure reruns.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from blender_img3d.core.errors import ExportError, MeshInputError
from blender_img3d.core.exporters import export_mesh
from blender_img3d.core.mesh.gltf_check import check_gltf_bytes
from blender_img3d.core.mesh.meshdata import MeshData
from blender_img3d.core.mesh.reading import read_mesh
from tests.core.test_images_fuzz import mutated_files, prepare_or_refuse
from tests.fixtures.meshes import cube, icosphere
from tests.reliability.conftest import peak_rss_mb, temporary_files

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")


def _settings(examples: int):
    return settings(
        max_examples=examples,
        # No per-case deadline: on a shared machine timings jitter; hangs show as a stuck run.
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def test_image_bytes(fuzz_examples):
    @_settings(fuzz_examples)
    @given(st.one_of(mutated_files().map(lambda sample: sample[1]), st.binary(max_size=4096)))
    def check(data: bytes) -> None:
        prepare_or_refuse(data)

    before = peak_rss_mb()
    check()
    assert peak_rss_mb() - before < 1024


# --- mesh arrays --------------------------------------------------------------

_coordinates = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 1e-300, 1e39, -1e39, 1e70, 1e71, 1e307, 3.4e38]),
)


@st.composite
def mesh_arrays(draw) -> MeshData:
    n = draw(st.integers(0, 12))
    vertices = draw(hnp.arrays(np.float64, (n, 3), elements=_coordinates))
    m = draw(st.integers(0, 12))
    faces = draw(hnp.arrays(np.int64, (m, 3), elements=st.integers(-2, max(n, 1) + 1)))
    colors = None
    if n and draw(st.booleans()):
        colors = draw(hnp.arrays(np.float32, (n, 3), elements=st.floats(-2, 2, width=32)))
    return MeshData(vertices, faces, colors)


def test_mesh_arrays_to_every_format(fuzz_examples, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mesh-fuzz")
    formats = ("glb", "obj", "dxf", "step")

    @_settings(max(50, fuzz_examples // 2))
    @given(mesh_arrays(), st.sampled_from(formats), st.sampled_from(["mm", "m", "in"]))
    def check(mesh: MeshData, fmt: str, units: str) -> None:
        path = folder / f"m.{fmt}"
        path.unlink(missing_ok=True)
        try:
            export_mesh(mesh, path, units=units)
        except (MeshInputError, ExportError) as error:
            assert str(error).strip() and "\n" not in str(error)
            assert not path.exists()
        else:
            text = path.read_bytes()
            if fmt in ("obj", "dxf", "step"):
                lowered = text.lower()
                assert b"nan" not in lowered and b" inf" not in lowered
        assert temporary_files(folder) == []

    check()


# --- GLB bytes ------------------------------------------------------------------


def _seed_glbs() -> list[bytes]:
    from blender_img3d.core.exporters.glb import glb_bytes

    return [glb_bytes(cube(colors=True)), glb_bytes(icosphere(1))]


SEED_GLBS = _seed_glbs()


@st.composite
def mutated_glbs(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEED_GLBS)))
    json_length = struct.unpack_from("<I", data, 12)[0]
    for _ in range(draw(st.integers(1, 4))):
        # Half the damage lands in the header and the JSON chunk, where the offsets live.
        end = draw(st.sampled_from([20 + json_length, len(data)]))
        position = draw(st.integers(0, max(0, min(end, len(data)) - 1)))
        kind = draw(st.sampled_from(["flip", "digit", "set", "delete", "truncate"]))
        if not data:
            break
        position = min(position, len(data) - 1)
        if kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "digit" and 20 <= position < 20 + json_length:
            data[position] = ord(draw(st.sampled_from("0123456789-")))
        elif kind == "set":
            data[position] = draw(st.integers(0, 255))
        elif kind == "delete":
            del data[position]
        else:
            del data[position:]
    return bytes(data)


def test_glb_bytes_read_or_refuse(fuzz_examples, tmp_path_factory):
    folder = tmp_path_factory.mktemp("glb-fuzz")
    path = folder / "fuzz.glb"

    @_settings(fuzz_examples)
    @given(st.one_of(mutated_glbs(), st.binary(max_size=512)))
    def check(data: bytes) -> None:
        path.write_bytes(data)
        try:
            mesh = read_mesh(path)
        except MeshInputError as error:
            assert str(error).strip() and "\n" not in str(error)
            return
        assert mesh.face_count > 0
        assert mesh.faces.min() >= 0 and mesh.faces.max() < mesh.vertex_count
        check_gltf_bytes(data)  # whatever was read passed the strict check

    before = peak_rss_mb()
    check()
    assert peak_rss_mb() - before < 1024
