"""DXF writer: ezdxf's audit is clean and ezdxf.recover reads back the same mesh, in units."""

from __future__ import annotations

import time

import numpy as np
import pytest

from blender_img3d.core.errors import ExportError
from blender_img3d.core.exporters import dxf as dxf_module
from blender_img3d.core.exporters.dxf import layer_name, write_dxf
from blender_img3d.core.mesh.meshdata import MeshData
from tests.fixtures.meshes import cube, icosphere, open_box, torus

ezdxf = pytest.importorskip("ezdxf")
from ezdxf import recover  # noqa: E402

UNICODE_NAME = "Stuhl «Ö» 'x' \"y\" 椅子"


def read_back(path):
    doc, auditor = recover.readfile(str(path))
    assert not auditor.has_errors, [str(e.message) for e in auditor.errors]
    audit = doc.audit()
    assert not audit.has_errors and not audit.has_fixes, audit.errors
    return doc


def polyface_arrays(doc):
    """All POLYFACE entities of the modelspace joined into (vertices, faces)."""
    vertices, faces = [], []
    for entity in doc.modelspace().query("POLYLINE"):
        points, records = entity.indexed_faces()
        base = sum(len(v) for v in vertices)
        vertices.append([tuple(p.dxf.location) for p in points])
        faces.extend([[base + i for i in record.indices] for record in records])
    return np.concatenate(vertices), np.asarray(faces)


@pytest.mark.parametrize(
    "mesh",
    [cube(colors=True), icosphere(4, colors=True), torus(), open_box()],
    ids=["cube", "sphere-5k", "torus", "open-box"],
)
def test_mesh_entity_reads_back_with_same_counts_in_millimetres(tmp_path, mesh):
    path = write_dxf(mesh, tmp_path / "part.dxf", entity="mesh")
    doc = read_back(path)
    (entity,) = doc.modelspace().query("MESH")
    assert (len(entity.vertices), len(entity.faces)) == (mesh.vertex_count, mesh.face_count)
    np.testing.assert_allclose(np.asarray(entity.vertices), mesh.vertices * 1000.0, atol=1e-9)
    np.testing.assert_array_equal(np.asarray([list(f) for f in entity.faces]), mesh.faces)
    assert doc.units == 4  # $INSUNITS millimetres
    assert doc.header["$MEASUREMENT"] == 1


@pytest.mark.parametrize(
    "units, scale, code", [("m", 1.0, 6), ("cm", 100.0, 5), ("in", 1 / 0.0254, 1)]
)
def test_units_scale_coordinates_and_set_insunits(tmp_path, units, scale, code):
    mesh = cube()
    doc = read_back(write_dxf(mesh, tmp_path / "c.dxf", units=units, entity="mesh"))
    (entity,) = doc.modelspace().query("MESH")
    np.testing.assert_allclose(np.asarray(entity.vertices), mesh.vertices * scale, rtol=1e-12)
    assert doc.units == code


def test_unknown_unit_is_an_export_error(tmp_path):
    with pytest.raises(ExportError, match="Unknown length unit"):
        write_dxf(cube(), tmp_path / "c.dxf", units="furlong")
    assert list(tmp_path.iterdir()) == []


def test_layer_is_named_after_the_object_and_legal():
    mesh = torus(colors=True)
    mesh.name = UNICODE_NAME + " a/b:c*?<>|=`;,\\"
    legal = layer_name(mesh.name)
    assert legal.startswith("Stuhl «Ö» 'x' _y_ 椅子")
    assert not set('<>/\\":;?*=`|,') & set(legal)
    assert ezdxf.lldxf.validator.is_valid_layer_name(legal)
    assert layer_name("") == "img3d" and layer_name("0") == "img3d_0"
    assert len(layer_name("x" * 1000)) == 255


def test_layer_and_true_colour_are_written(tmp_path):
    mesh = torus(colors=True)
    mesh.name = UNICODE_NAME
    doc = read_back(write_dxf(mesh, tmp_path / "t.dxf", entity="mesh"))
    (entity,) = doc.modelspace().query("MESH")
    assert entity.dxf.layer == layer_name(UNICODE_NAME)
    assert doc.layers.has_entry(layer_name(UNICODE_NAME))
    expected = tuple(int(round(c * 255)) for c in mesh.colors.mean(axis=0))
    assert tuple(entity.rgb) == expected


def test_polyface_option_reads_back_same_faces_and_face_colours(tmp_path):
    mesh = icosphere(3, colors=True)
    doc = read_back(write_dxf(mesh, tmp_path / "p.dxf", entity="polyface"))
    vertices, faces = polyface_arrays(doc)
    assert len(faces) == mesh.face_count and len(vertices) == mesh.vertex_count
    np.testing.assert_allclose(vertices[faces], mesh.vertices[mesh.faces] * 1000.0, atol=1e-9)
    (entity,) = doc.modelspace().query("POLYLINE")
    first_record = next(entity.indexed_faces()[1]).face_record
    expected = tuple(int(round(c * 255)) for c in mesh.colors[mesh.faces[0]].mean(axis=0))
    assert tuple(first_record.rgb) == expected


def test_polyface_splits_meshes_beyond_16_bit_vertex_indices(tmp_path, monkeypatch):
    # The real limit is 10922 faces per entity (32767 vertices); a small one keeps this fast.
    monkeypatch.setattr(dxf_module, "_POLYFACE_MAX_FACES", 100)
    mesh = icosphere(3)  # 1280 faces: 13 entities
    doc = read_back(write_dxf(mesh, tmp_path / "p.dxf", entity="polyface"))
    polyfaces = doc.modelspace().query("POLYLINE")
    assert len(polyfaces) == 13
    assert all(p.dxf.n_count <= 100 for p in polyfaces)
    vertices, faces = polyface_arrays(doc)
    assert len(faces) == mesh.face_count
    np.testing.assert_allclose(vertices[faces], mesh.vertices[mesh.faces] * 1000.0, atol=1e-9)


def test_metadata_is_stored_as_custom_properties(tmp_path):
    mesh = cube()
    mesh.metadata = {"seed": 11, "prompt": "a chair", "steps": 64}
    doc = read_back(write_dxf(mesh, tmp_path / "c.dxf"))
    custom = dict(doc.header.custom_vars)
    assert custom["Generator"].startswith("blender_img3d ")
    assert custom["seed"] == "11" and custom["prompt"] == "a chair"


@pytest.mark.slow
def test_200k_triangles_write_fast(tmp_path):
    sphere = icosphere(6)  # 81920 faces; three copies make 245760
    copies = 3
    mesh = MeshData(
        np.concatenate([sphere.vertices + 3.0 * i for i in range(copies)]),
        np.concatenate([sphere.faces + sphere.vertex_count * i for i in range(copies)]),
    )
    start = time.perf_counter()
    path = write_dxf(mesh, tmp_path / "big.dxf", entity="mesh")
    elapsed = time.perf_counter() - start
    assert elapsed < 6.0
    # Reading 245k faces back with ezdxf takes ~8 s; the smaller meshes above check that.
    text = path.read_text(encoding="utf-8")
    assert text.endswith("EOF\n")
    assert f"\n 92\n{mesh.vertex_count}\n" in text


def big_sphere_over_the_polyface_split() -> MeshData:
    sphere = icosphere(6)  # 40962 vertices, 81920 faces: past 32767 vertices
    return MeshData(sphere.vertices, sphere.faces, name="big")


def test_default_entity_is_polyface_and_splits_past_32767_vertices(tmp_path):
    mesh = big_sphere_over_the_polyface_split()
    doc = read_back(write_dxf(mesh, tmp_path / "big.dxf"))
    polyfaces = doc.modelspace().query("POLYLINE")
    assert len(doc.modelspace().query("MESH")) == 0
    assert len(polyfaces) == -(-mesh.face_count // dxf_module._POLYFACE_MAX_FACES)
    assert all(len(p.vertices) <= 32767 + p.dxf.n_count for p in polyfaces)
    vertices, faces = polyface_arrays(doc)
    assert len(faces) == mesh.face_count
    assert len(np.unique(vertices, axis=0)) == mesh.vertex_count
    np.testing.assert_allclose(vertices[faces], mesh.vertices[mesh.faces] * 1000.0, atol=1e-9)


def test_writers_refuse_options_they_do_not_take(tmp_path):
    from blender_img3d.core.exporters import export_mesh

    with pytest.raises(ExportError, match="write_dxf doesn't take the option.* kind.*entity"):
        write_dxf(cube(), tmp_path / "c.dxf", kind="polyface")
    for suffix, option in ((".glb", "entity"), (".obj", "units_typo"), (".step", "kind")):
        with pytest.raises(ExportError, match=f"doesn't take the option.*{option}"):
            export_mesh(cube(), tmp_path / f"c{suffix}", **{option: 1})
    with pytest.raises(ExportError, match="DXF entity must be one of polyface, mesh"):
        write_dxf(cube(), tmp_path / "c.dxf", entity="3dface")
    assert list(tmp_path.iterdir()) == []


def assimp_counts(path) -> tuple[int, int]:
    """Vertices and faces assimp's command-line tool reports for ``path``."""
    import re
    import shutil
    import subprocess

    if shutil.which("assimp") is None:
        pytest.skip(
            "assimp (Debian's assimp-utils, installed by vendor_install.py --dev) is absent"
        )
    info = subprocess.run(
        ["assimp", "info", str(path)], capture_output=True, text=True, timeout=300
    )
    assert info.returncode == 0, info.stdout + info.stderr
    vertices = int(re.search(r"Vertices:\s+(\d+)", info.stdout).group(1))
    faces = int(re.search(r"Faces:\s+(\d+)", info.stdout).group(1))
    return vertices, faces


@pytest.mark.parametrize("big", [False, True], ids=["torus", "past-the-split"])
def test_assimp_reads_the_default_dxf_with_every_vertex_and_face(tmp_path, big):
    mesh = big_sphere_over_the_polyface_split() if big else torus()
    vertices, faces = assimp_counts(write_dxf(mesh, tmp_path / "m.dxf"))
    assert faces == mesh.face_count
    assert vertices in (mesh.vertex_count, 3 * mesh.face_count)  # joined or one per corner
