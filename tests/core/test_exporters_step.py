"""STEP writer: OpenCascade reads one valid, closed solid with the mesh's volume."""

from __future__ import annotations

import re

import numpy as np
import pytest

from blender_img3d.core.errors import ExportError
from blender_img3d.core.exporters.brep_mesh import brep_mesh, planar_faces
from blender_img3d.core.exporters.step import step_string, write_step
from blender_img3d.core.mesh.meshdata import MeshData
from blender_img3d.core.mesh.topology import is_closed
from tests.fixtures.meshes import (
    combine,
    cube,
    cube_with_pocket,
    icosphere,
    inverted,
    open_box,
    torus,
    two_cubes,
)

pytest.importorskip("OCP", reason="OpenCascade (cadquery-ocp-novtk) checks STEP files")
from OCP.BRepCheck import BRepCheck_Analyzer  # noqa: E402
from OCP.BRepGProp import BRepGProp  # noqa: E402
from OCP.GProp import GProp_GProps  # noqa: E402
from OCP.IFSelect import IFSelect_RetDone  # noqa: E402
from OCP.ShapeAnalysis import ShapeAnalysis_FreeBounds  # noqa: E402
from OCP.StepBasic import StepBasic_Product  # noqa: E402
from OCP.STEPControl import STEPControl_Reader  # noqa: E402
from OCP.TopAbs import TopAbs_EDGE, TopAbs_FACE, TopAbs_SHELL, TopAbs_SOLID  # noqa: E402
from OCP.TopExp import TopExp_Explorer  # noqa: E402

UNICODE_NAME = "Stuhl «Ö» 'x' \"y\" 椅子"


def read_step(path):
    reader = STEPControl_Reader()
    assert reader.ReadFile(str(path)) == IFSelect_RetDone
    assert reader.TransferRoots() >= 1
    return reader, reader.OneShape()


def count(shape, kind) -> int:
    explorer = TopExp_Explorer(shape, kind)
    n = 0
    while explorer.More():
        n += 1
        explorer.Next()
    return n


def occ_volume(shape) -> float:
    props = GProp_GProps()
    BRepGProp.VolumeProperties_s(shape, props)
    return props.Mass()


def free_edge_count(shape) -> int:
    bounds = ShapeAnalysis_FreeBounds(shape)
    return sum(
        count(wires, TopAbs_EDGE) for wires in (bounds.GetClosedWires(), bounds.GetOpenWires())
    )


def mesh_volume(mesh: MeshData) -> float:
    c = mesh.vertices[mesh.faces]
    return float(np.einsum("ij,ij->i", c[:, 0], np.cross(c[:, 1], c[:, 2])).sum() / 6.0)


def assert_valid_solid(path, mesh: MeshData, solids: int = 1, mm_per_unit: float = 1000.0):
    _, shape = read_step(path)
    assert BRepCheck_Analyzer(shape).IsValid()
    assert count(shape, TopAbs_SOLID) == solids
    assert free_edge_count(shape) == 0
    expected = mesh_volume(mesh) * mm_per_unit**3
    assert occ_volume(shape) == pytest.approx(expected, rel=0.01)
    return shape


def cube_with_cap() -> MeshData:
    """A closed cube whose edge (a, b) carries a zero-area triangle (b, a, m), m its midpoint."""
    mesh = cube()
    faces = mesh.faces.tolist()
    a, b, c = faces[0]  # first triangle; its edge a -> b is shared with the face b -> a -> d
    other = next(
        i for i, f in enumerate(faces) for k in range(3) if (f[k], f[(k + 1) % 3]) == (b, a)
    )
    f = faces[other]
    d = next(v for v in f if v not in (a, b))
    m = len(mesh.vertices)
    vertices = np.vstack([mesh.vertices, (mesh.vertices[a] + mesh.vertices[b]) / 2])
    faces[other] = [b, a, m]  # the cap: flat, on edge a-b
    faces += [[m, a, d], [b, m, d]]
    return MeshData(vertices, faces, name="cube_with_cap")


@pytest.mark.parametrize(
    "mesh, planar_faces",
    [(cube(), 6), (icosphere(4), 5120), (torus(), 512)],
    ids=["cube", "sphere-5k", "torus"],
)
def test_closed_mesh_is_one_valid_solid_with_the_mesh_volume(tmp_path, mesh, planar_faces):
    mesh.name = UNICODE_NAME
    path = write_step(mesh, tmp_path / "part.step")
    shape = assert_valid_solid(path, mesh)
    # Coplanar triangles merge (the cube's 12 into 6, the torus's planar quads into one face
    # each); the sphere's curved facets stay one face per triangle.
    assert count(shape, TopAbs_FACE) == planar_faces
    assert count(shape, TopAbs_SHELL) == 1
    unmerged = write_step(mesh, tmp_path / "soup.step", merge_coplanar=False)
    assert count(assert_valid_solid(unmerged, mesh), TopAbs_FACE) == mesh.face_count


def test_two_separate_cubes_become_two_solids(tmp_path):
    mesh = two_cubes()
    assert_valid_solid(write_step(mesh, tmp_path / "two.step"), mesh, solids=2)


def test_inner_void_is_taken_away_from_its_solid_not_added_as_another(tmp_path):
    # Marching cubes of a body with a cavity: an outer shell and an inward-wound inner one.
    mesh = combine(cube_with_pocket(), MeshData(cube(0.5).vertices + 3.0, cube(0.5).faces))
    path = write_step(mesh, tmp_path / "pocket.step")
    text = path.read_text()
    assert text.count("=BREP_WITH_VOIDS(") == 1 and text.count("=MANIFOLD_SOLID_BREP(") == 1
    assert "ORIENTED_CLOSED_SHELL('',*," in text and ",.F.);" in text
    shape = assert_valid_solid(path, mesh, solids=2)  # volume 8 - 0.125 + 0.125
    assert count(shape, TopAbs_SHELL) == 3


def test_inside_out_piece_that_nothing_encloses_is_written_as_a_proper_solid(tmp_path):
    mesh = combine(cube(), MeshData(inverted(cube()).vertices + 3.0, inverted(cube()).faces))
    topo = brep_mesh(mesh.vertices, mesh.faces, 9)
    turned = MeshData(topo.points, topo.faces)
    assert mesh_volume(turned) == pytest.approx(2.0)  # both pieces wound outwards now
    assert (topo.void_of == -1).all()
    path = write_step(mesh, tmp_path / "inside_out.step")
    assert "BREP_WITH_VOIDS" not in path.read_text()
    _, shape = read_step(path)
    assert BRepCheck_Analyzer(shape).IsValid() and count(shape, TopAbs_SOLID) == 2
    assert occ_volume(shape) == pytest.approx(2 * 1000.0**3, rel=1e-6)


def test_open_mesh_becomes_a_surface_model_with_its_boundary_free(tmp_path):
    mesh = open_box()
    path = write_step(mesh, tmp_path / "open.step")
    assert "OPEN_SHELL" in path.read_text() and "SHELL_BASED_SURFACE_MODEL" in path.read_text()
    _, shape = read_step(path)
    assert BRepCheck_Analyzer(shape).IsValid()
    assert count(shape, TopAbs_SOLID) == 0
    assert count(shape, TopAbs_FACE) == 5  # the box's five sides, each merged from two triangles
    assert free_edge_count(shape) == 4  # the square rim of the missing top


def test_zero_area_cap_is_flipped_away_and_solid_stays_valid(tmp_path):
    mesh = cube_with_cap()
    assert is_closed(mesh.faces, mesh.vertex_count)
    path = write_step(mesh, tmp_path / "cap.step")
    shape = assert_valid_solid(path, mesh)
    assert count(shape, TopAbs_FACE) == 6  # the flipped cap leaves the cube's six sides
    unmerged = write_step(mesh, tmp_path / "soup.step", merge_coplanar=False)
    assert count(assert_valid_solid(unmerged, mesh), TopAbs_FACE) == mesh.face_count


def test_duplicated_and_near_coincident_vertices_are_welded(tmp_path):
    # Two unwelded halves of a cube (corner copies 1e-12 m apart) and a collapsed triangle.
    base = cube()
    jitter = base.vertices + 1e-12
    top = base.faces[np.all(base.vertices[base.faces][:, :, 2] > 0, axis=1)]
    rest = base.faces[~np.all(base.vertices[base.faces][:, :, 2] > 0, axis=1)]
    vertices = np.vstack([base.vertices, jitter])
    faces = np.vstack([rest, top + base.vertex_count, [[0, 8, 1]]])  # 0 and 8 coincide
    mesh = MeshData(vertices, faces)
    assert not is_closed(mesh.faces, mesh.vertex_count)
    shape = assert_valid_solid(write_step(mesh, tmp_path / "weld.step"), cube())
    assert count(shape, TopAbs_FACE) == 6


def hourglass(neck: float) -> MeshData:
    """A closed square tube, 1 wide and 2 tall, squeezed at half height to 0.5 x ``neck``."""
    rings = [(1.0, 1.0, 0.0), (0.5, neck, 1.0), (1.0, 1.0, 2.0)]
    vertices = [
        (sx * wx / 2, sy * wy / 2, z)
        for wx, wy, z in rings
        for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
    ]
    faces = [(0, 2, 1), (0, 3, 2), (8, 9, 10), (8, 10, 11)]  # bottom and top caps
    for ring in (0, 4):
        for k in range(4):
            a, b = ring + k, ring + (k + 1) % 4
            faces += [(a, b, b + 4), (a, b + 4, a + 4)]
    return MeshData(np.asarray(vertices, dtype=np.float64), np.asarray(faces))


def test_a_neck_thinner_than_the_weld_tolerance_is_kept_and_the_solid_stays_closed(tmp_path):
    # Marching cubes makes such necks where a thin part is nearly cut; welding across
    # the neck (1e-6 of the size here) would tear the surface into an open shell.
    mesh = hourglass(neck=1e-6)
    assert is_closed(mesh.faces, mesh.vertex_count)
    topo = brep_mesh(mesh.vertices * 1000.0, mesh.faces, 9)
    assert topo.closed and len(topo.points) == mesh.vertex_count
    assert_valid_solid(write_step(mesh, tmp_path / "neck.step"), mesh)


def test_brep_mesh_gives_each_edge_once_with_senses_that_cancel():
    topo = brep_mesh(torus().vertices * 1000.0, torus().faces, decimals=9)
    assert topo.closed and topo.component_count == 1
    assert len(topo.edges) == 3 * len(topo.faces) // 2
    # each edge is used once forwards and once backwards in a closed, consistent shell
    forward = np.bincount(topo.face_edges[topo.face_edge_forward], minlength=len(topo.edges))
    backward = np.bincount(topo.face_edges[~topo.face_edge_forward], minlength=len(topo.edges))
    assert (forward == 1).all() and (backward == 1).all()


@pytest.mark.parametrize("units, mm_per_unit", [("m", 1000.0), ("cm", 10.0), ("in", 25.4)])
def test_declared_units_give_the_same_solid_in_millimetres(tmp_path, units, mm_per_unit):
    mesh = torus()
    path = write_step(mesh, tmp_path / f"t_{units}.step", units=units)
    _, shape = read_step(path)  # OpenCascade converts to millimetres
    assert occ_volume(shape) == pytest.approx(mesh_volume(mesh) * 1000.0**3, rel=0.01)
    text = path.read_text()
    x_max = float(re.findall(r"CARTESIAN_POINT\('',\(([-0-9.]+),", text)[0])
    assert abs(x_max) <= np.abs(mesh.vertices).max() * 1000.0 / mm_per_unit * (1 + 1e-9)


def test_millimetres_are_declared_as_si_milli_metre(tmp_path):
    text = write_step(cube(), tmp_path / "c.stp").read_text()
    assert "SI_UNIT(.MILLI.,.METRE.)" in text
    assert "UNCERTAINTY_MEASURE_WITH_UNIT(LENGTH_MEASURE(" in text
    assert "FILE_SCHEMA(('AUTOMOTIVE_DESIGN" in text


def test_names_are_escaped_to_ascii_and_read_back_exactly(tmp_path):
    name = UNICODE_NAME + " \\ 😀"
    assert step_string(name) == (
        "'Stuhl \\X2\\00AB00D600BB\\X0\\ ''x'' \"y\" "
        "\\X2\\69055B50\\X0\\ \\\\ \\X4\\0001F600\\X0\\'"
    )
    mesh = cube()
    mesh.name = name
    mesh.metadata = {"prompt": "Stuhl «Ö» 'x'", "seed": 1}
    path = write_step(mesh, tmp_path / "named.step")
    path.read_bytes().decode("ascii")  # pure ASCII, as ISO 10303-21 requires
    reader, _ = read_step(path)
    model = reader.WS().Model()
    products = [model.Value(i) for i in range(1, model.NbEntities() + 1)]
    names = [p.Name().ToCString() for p in products if isinstance(p, StepBasic_Product)]
    assert names == [name]


def test_reals_always_carry_a_decimal_point(tmp_path):
    text = write_step(icosphere(1), tmp_path / "s.step", units="in").read_text()
    real = re.compile(r"-?\d+\.\d*(E[-+]\d+)?")
    values = re.findall(r"(?:CARTESIAN_POINT|DIRECTION)\('',\(([^)]*)\)\)", text)
    values = [v for group in values for v in group.split(",")]
    values += re.findall(r"VECTOR\('',#\d+,([^)]*)\)", text)
    values += re.findall(r"LENGTH_MEASURE\(([^)]*)\)", text)
    assert len(values) > 100
    assert [v for v in values if not real.fullmatch(v)] == []


@pytest.mark.slow
def test_100k_face_solid_is_parsed_by_opencascade(tmp_path):
    sphere = icosphere(6)  # 81920 faces
    extra = icosphere(5)  # + 20480 = 102400 faces, 2 solids
    mesh = combine(sphere, MeshData(extra.vertices + 3.0, extra.faces))
    path = write_step(mesh, tmp_path / "big.step")  # speed: benchmarks/
    # Parsing takes ~8 s; OpenCascade's shape transfer (~60 s here) is left to the
    # 5k-face tests above, which check the same writer code paths.
    reader = STEPControl_Reader()
    assert reader.ReadFile(str(path)) == IFSelect_RetDone
    assert reader.NbRootsForTransfer() == 1
    text = path.read_text()
    assert text.count("=ADVANCED_FACE(") == mesh.face_count
    assert text.count("=MANIFOLD_SOLID_BREP(") == 2


def manifold_mesh(solid) -> MeshData:
    raw = solid.to_mesh()
    return MeshData(np.asarray(raw.vert_properties)[:, :3], np.asarray(raw.tri_verts))


def box_chair() -> MeshData:
    """Seat, four inset legs and an inset back, united into one solid (manifold3d)."""
    manifold3d = pytest.importorskip("manifold3d")

    def block(lo, hi):
        return manifold3d.Manifold.cube(tuple(np.subtract(hi, lo)), False).translate(tuple(lo))

    solid = block((-0.5, -0.5, 0.45), (0.5, 0.5, 0.55))
    for x in (-0.45, 0.35):
        for y in (-0.45, 0.35):
            solid = solid + block((x, y, 0.0), (x + 0.1, y + 0.1, 0.45))
    return manifold_mesh(solid + block((-0.4, 0.3, 0.55), (0.4, 0.4, 1.5)))


def test_box_chair_gives_its_box_faces_as_one_valid_solid(tmp_path):
    mesh = box_chair()
    shape = assert_valid_solid(write_step(mesh, tmp_path / "chair.step"), mesh)
    # Seat: 4 sides, a top around the back's foot, a bottom around the legs' tops (6);
    # each leg 4 sides and a foot (20); the back 4 sides and a top (5).
    assert count(shape, TopAbs_FACE) == 31


def test_flat_face_with_a_hole_is_one_face_with_an_inner_bound(tmp_path):
    manifold3d = pytest.importorskip("manifold3d")
    cube_of = manifold3d.Manifold.cube
    mesh = manifold_mesh(cube_of((1.0, 1.0, 0.2), True) - cube_of((0.5, 0.5, 1.0), True))
    path = write_step(mesh, tmp_path / "frame.step")
    shape = assert_valid_solid(path, mesh)
    # Top and bottom (each with a square hole), four outer and four inner sides.
    assert count(shape, TopAbs_FACE) == 10
    assert path.read_text().count("=FACE_BOUND(") == 2
    # A millimetre-scale tolerance merges nothing more here; a negative one is refused.
    tight = write_step(mesh, tmp_path / "tight.step", coplanar_tolerance=1e-3)
    assert count(assert_valid_solid(tight, mesh), TopAbs_FACE) == 10
    with pytest.raises(ExportError, match="coplanar_tolerance must be a positive length"):
        write_step(mesh, tmp_path / "bad.step", coplanar_tolerance=-1.0)


def flat_spiral(turns: float = 1.25, steps: int = 60) -> MeshData:
    """A flat ribbon winding past a full turn: every triangle faces up, but in its plane the
    ribbon lies over itself, so one merged face's boundary would cross itself."""
    angle = np.linspace(0.0, 2 * np.pi * turns, steps)
    radius = 1.0 + 0.05 * angle  # the second turn overlaps the first (ribbon 0.4 wide)
    inner = np.stack([radius * np.cos(angle), radius * np.sin(angle), 0 * angle], 1)
    outer = np.stack([(radius + 0.4) * np.cos(angle), (radius + 0.4) * np.sin(angle), 0 * angle], 1)
    vertices = np.vstack([inner, outer])
    i = np.arange(steps - 1)
    faces = np.concatenate(
        [np.stack([i, i + 1, i + steps + 1], 1), np.stack([i, i + steps + 1, i + steps], 1)]
    )
    return MeshData(vertices, faces, name="spiral")


def test_a_merged_face_whose_loop_would_cross_itself_falls_back_to_triangles(tmp_path):
    mesh = flat_spiral()
    topo = brep_mesh(mesh.vertices * 1000, mesh.faces, 6)
    faces = planar_faces(topo, topo.tolerance)
    assert faces.count == mesh.face_count  # the region is not provably simple: triangles
    _, shape = read_step(write_step(mesh, tmp_path / "spiral.step"))
    assert BRepCheck_Analyzer(shape).IsValid()
    # Less than a turn: the same ribbon is one face with one loop.
    one_turn = flat_spiral(turns=0.8)
    topo = brep_mesh(one_turn.vertices * 1000, one_turn.faces, 6)
    assert planar_faces(topo, topo.tolerance).count == 1


def test_closed_and_open_parts_in_one_file_are_solids_and_shells(tmp_path):
    mesh = combine(cube(), MeshData(open_box().vertices + 3.0, open_box().faces))
    path = write_step(mesh, tmp_path / "mixed.step")
    text = path.read_text()
    assert text.count("=MANIFOLD_SOLID_BREP(") == 1 and text.count("=OPEN_SHELL(") == 1
    assert "SHAPE_REPRESENTATION_RELATIONSHIP" in text
    _, shape = read_step(path)
    assert BRepCheck_Analyzer(shape).IsValid()
    assert count(shape, TopAbs_SOLID) == 1 and count(shape, TopAbs_SHELL) == 2
    solid = TopExp_Explorer(shape, TopAbs_SOLID).Current()
    assert occ_volume(solid) == pytest.approx(1000.0**3, rel=1e-6)


def test_cubes_sharing_an_edge_are_two_valid_solids(tmp_path):
    """Two bodies touching along an edge (four faces on it) are each closed on their own."""
    second = MeshData(cube().vertices + [1.0, 1.0, 0.0], cube().faces)
    mesh = combine(cube(), second)
    path = write_step(mesh, tmp_path / "touching.step")
    shape = assert_valid_solid(path, mesh, solids=2)
    assert count(shape, TopAbs_SHELL) == 2


def test_unwelded_triangles_with_one_flipped_are_one_closed_solid(tmp_path):
    """STL-like storage (no shared vertex) and a triangle wound the wrong way: still a solid."""
    mesh = cube()
    corners = mesh.vertices[mesh.faces].reshape(-1, 3)
    faces = np.arange(len(corners)).reshape(-1, 3)
    faces[0] = faces[0, ::-1]
    soup = MeshData(corners, faces)
    assert_valid_solid(write_step(soup, tmp_path / "soup.step"), mesh)
