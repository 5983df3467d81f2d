"""CLI and output plans: no two outputs on one file, no output on an input, checked before work.

The five silent data losses of issue #17 first, each as the user typed it; then
folders and names the file system refuses, links to inputs, and the plan's own
rules. ``generate`` cases point ``--model`` at a folder that doesn't exist: the
plan must refuse the outputs before the model is ever looked for.
"""

from __future__ import annotations

import os

import pytest

from blender_img3d.core.errors import OutputPathError
from blender_img3d.core.outputs import plan_outputs
from tests.reliability.conftest import one_error_line, run_cli, snapshot, temporary_files

NO_MODEL = "/nonexistent/model"


def test_report_on_the_glb_is_refused_before_any_work(tmp_path, capsys):
    code, out, err = run_cli(
        capsys, "generate", "--prompt", "a chair", "--model", NO_MODEL,
        "--out", tmp_path / "o.glb", "--report", tmp_path / "o.glb", "--quiet",
    )  # fmt: skip
    assert code == 1
    line = one_error_line(err)
    assert "GLB output and the report would both be written to" in line
    assert "wrote" not in out and list(tmp_path.iterdir()) == []


def test_export_report_on_the_input_mesh_never_overwrites_it(mesh_files, tmp_path, capsys):
    before = snapshot(tmp_path)
    code, out, err = run_cli(
        capsys, "export", "--in", mesh_files["obj"], "--out", tmp_path / "m.glb",
        "--report", mesh_files["obj"], "--quiet",
    )  # fmt: skip
    assert code == 1
    assert "would overwrite the input" in one_error_line(err)
    assert snapshot(tmp_path) == before


def test_latents_on_the_mesh_output_are_refused(tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "generate", "--prompt", "a chair", "--model", NO_MODEL,
        "--out", tmp_path / "o.glb", "--latents-out", tmp_path / "o.glb",
    )  # fmt: skip
    assert code == 1
    assert "the latents would both be written to" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_export_obj_onto_itself_keeps_the_users_obj_and_mtl(mesh_files, tmp_path, capsys):
    before = snapshot(tmp_path)
    code, _, err = run_cli(
        capsys, "export", "--in", mesh_files["obj"], "--out", mesh_files["obj"], "--quiet"
    )
    assert code == 1
    assert "would overwrite the input" in one_error_line(err)
    assert snapshot(tmp_path) == before


def test_export_obj_beside_the_input_keeps_the_inputs_material_library(
    mesh_files, tmp_path, capsys
):
    """A new chair.obj beside the user's chair.mtl would replace it: refused. In another
    folder the same name is fine, and the input's material library stays as it was."""
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path)
    code, _, err = run_cli(
        capsys, "export", "--in", mesh_files["glb"], "--out", tmp_path / "chair.obj", "--quiet"
    )
    assert code == 1
    assert "chair.mtl, which blender_img3d did not write" in one_error_line(err)
    assert snapshot(tmp_path) == before
    code, _, err = run_cli(
        capsys, "export", "--in", mesh_files["obj"], "--out", tmp_path / "out" / "chair.obj",
        "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "out" / "chair.mtl").read_bytes().startswith(b"# blender_img3d")
    assert mesh_files["mtl"].read_bytes() == before["chair.mtl"]


def test_an_unrelated_mtl_of_the_derived_name_is_never_replaced(mesh_files, tmp_path, capsys):
    foreign = tmp_path / "a_b.mtl"
    foreign.write_bytes(b"newmtl someone_elses\n")
    code, _, err = run_cli(
        capsys, "export", "--in", mesh_files["glb"], "--out", tmp_path / "a b.obj", "--quiet"
    )
    assert code == 1
    assert "a_b.mtl, which blender_img3d did not write" in one_error_line(err)
    assert foreign.read_bytes() == b"newmtl someone_elses\n"
    assert not (tmp_path / "a b.obj").exists()


def test_our_own_mtl_is_replaced_on_a_second_export(mesh_files, tmp_path, capsys):
    for _ in range(2):
        code, _, err = run_cli(
            capsys, "export", "--in", mesh_files["glb"], "--out", tmp_path / "a b.obj", "--quiet"
        )
        assert code == 0, err
    assert (tmp_path / "a_b.mtl").read_text().startswith("# blender_img3d")
    assert "mtllib a_b.mtl" in (tmp_path / "a b.obj").read_text()


def test_a_name_too_long_for_the_file_system_is_refused_before_generation(tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "generate", "--prompt", "a chair", "--model", NO_MODEL,
        "--out", tmp_path / ("x" * 300 + ".glb"),
    )  # fmt: skip
    assert code == 1
    line = one_error_line(err)
    assert "bytes long; this file system allows 255" in line
    assert "model" not in line.lower()  # refused before the model was looked for


def test_a_long_legal_name_gets_a_legal_temporary_file(mesh_files, tmp_path, capsys):
    name = "y" * 250 + ".glb"  # 254 bytes: legal, though ".name.XXXXXXXX.tmp" would not be
    code, _, err = run_cli(capsys, "export", "--in", mesh_files["glb"], "--out", tmp_path / name)
    assert code == 0, err
    assert (tmp_path / name).read_bytes()[:4] == b"glTF"
    assert temporary_files(tmp_path) == []


@pytest.mark.parametrize(
    "target, message",
    [
        ("missing/o.glb", "does not exist"),
        ("folder", "use one of .glb"),
        ("folder.glb", "is a folder"),
        ("afile.txt/o.glb", "is a file, not a folder"),
        ("o.fbx", "use one of .glb"),
    ],
)
def test_unusable_output_paths_are_one_line_errors(mesh_files, tmp_path, capsys, target, message):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder.glb").mkdir()
    (tmp_path / "afile.txt").write_text("x")
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "export", "--in", mesh_files["glb"], "--out", tmp_path / target)
    assert code == 1
    assert message in one_error_line(err)
    assert snapshot(tmp_path) == before


def test_the_same_output_twice_is_refused(mesh_files, tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "export", "--in", mesh_files["glb"],
        "--out", tmp_path / "o.step", "--out", tmp_path / "sub" / ".." / "o.step",
    )  # fmt: skip
    assert code == 1
    assert "would both be written to" in one_error_line(err)


def test_links_to_an_input_count_as_the_input(mesh_files, tmp_path, capsys):
    os.symlink(mesh_files["glb"], tmp_path / "soft.glb")
    os.link(mesh_files["glb"], tmp_path / "hard.glb")
    before = snapshot(tmp_path)
    for link in ("soft.glb", "hard.glb"):
        code, _, err = run_cli(
            capsys, "export", "--in", mesh_files["glb"], "--out", tmp_path / link
        )
        assert code == 1
        assert "would overwrite the input" in one_error_line(err)
    assert snapshot(tmp_path) == before


def test_batch_variant_names_are_planned_too(tmp_path):
    with pytest.raises(OutputPathError, match="would both be written to"):
        plan_outputs([tmp_path / "a.glb"], batch=2, report=tmp_path / "a_1.glb")
    plan = plan_outputs([tmp_path / "a.glb", tmp_path / "a.obj"], batch=2)
    assert [p.name for p in plan.paths] == ["a_0.glb", "a_0.obj", "a_0.mtl", "a_1.glb",
                                             "a_1.obj", "a_1.mtl"]  # fmt: skip


def test_latents_sidecar_and_decode_input_are_protected(tmp_path):
    with pytest.raises(OutputPathError, match="latents' sidecar"):
        plan_outputs([tmp_path / "z.npy.json.glb"], report=tmp_path / "z.npy.json",
                     latents=tmp_path / "z.npy")  # fmt: skip
    with pytest.raises(OutputPathError, match="would overwrite the input's sidecar"):
        plan_outputs([tmp_path / "m.glb"], report=tmp_path / "z.npy.json",
                     inputs=[tmp_path / "z.npy"])  # fmt: skip


def test_save_input_needs_an_image_suffix(tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "generate", "--image", tmp_path / "x.png", "--model", NO_MODEL,
        "--out", tmp_path / "o.glb", "--save-input", tmp_path / "seen.gif",
    )  # fmt: skip
    assert code == 1
    assert "use an image suffix" in one_error_line(err)


def test_generate_with_clean_outputs_gets_past_the_plan(tmp_path, capsys):
    """The control case: the same command with distinct names fails only at the model."""
    code, _, err = run_cli(
        capsys, "generate", "--prompt", "a chair", "--model", NO_MODEL,
        "--out", tmp_path / "o.glb", "--report", tmp_path / "o.json",
    )  # fmt: skip
    assert code == 1
    assert "No model folder" in one_error_line(err)


def test_one_variant_keeps_the_name_and_suffix_case_is_ignored(tmp_path):
    plan = plan_outputs([tmp_path / "a.glb"], save_input=tmp_path / "seen.PNG")
    assert plan.paths == [tmp_path / "a.glb", tmp_path / "seen.PNG"]
    assert [f.role for f in plan.files] == ["the GLB output", "the saved model input"]
    with pytest.raises(OutputPathError, match="The report and the saved model input"):
        plan_outputs([], report=tmp_path / "a.png", save_input=tmp_path / "a.png")


def test_a_renamed_objs_material_library_is_its_own_name_and_protected(tmp_path):
    """b.obj (once a.obj, written by us) still says ``mtllib a.mtl``: a new a.obj would
    replace that library, although its header is ours, so it is refused as an input's."""
    (tmp_path / "a.mtl").write_bytes(b"# blender_img3d 0.1.0\nnewmtl m\n")
    (tmp_path / "b.obj").write_bytes(b"# blender_img3d 0.1.0\nmtllib a.mtl\nv 0 0 0\n")
    with pytest.raises(OutputPathError, match="would overwrite the input's material library"):
        plan_outputs([tmp_path / "a.obj"], inputs=[tmp_path / "b.obj"])
    plan_outputs([tmp_path / "c.obj"], inputs=[tmp_path / "b.obj"])  # another name is fine


def test_a_material_library_with_a_non_utf8_name_is_protected_too(tmp_path):
    name = os.fsdecode(b"mat\xe9riau")  # Latin-1, as older Windows tools write it
    (tmp_path / f"{name}.mtl").write_bytes(b"# blender_img3d 0.1.0\nnewmtl m\n")
    (tmp_path / "scan.obj").write_bytes(b"mtllib mat\xe9riau.mtl\nv 0 0 0\n")
    with pytest.raises(OutputPathError, match="would overwrite the input's material library"):
        plan_outputs([tmp_path / f"{name}.obj"], inputs=[tmp_path / "scan.obj"])


def _refusal(**plan) -> str:
    with pytest.raises(OutputPathError) as info:
        plan_outputs(**plan)
    return str(info.value)


def test_each_unusable_path_reads_exactly(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "d.json").mkdir()
    report = tmp_path / "missing" / "r.json"
    assert _refusal(report=report) == (
        f"The report {report} can't be written: the folder {report.parent} does not exist; "
        "create it first or fix the path."
    )
    report = tmp_path / "afile" / "r.json"
    assert _refusal(report=report) == (
        f"The report {report} can't be written: {tmp_path / 'afile'} is a file, not a folder."
    )
    assert _refusal(report=tmp_path / "d.json") == (
        f"The report {tmp_path / 'd.json'} is a folder: give a file name."
    )
    assert _refusal(report="/") == "The report / names a folder: give a file name."
    assert _refusal(outputs=[tmp_path / "a.glb"], latents=tmp_path / "afile" / "z.npy") == (
        f"The latents {tmp_path / 'afile' / 'z.npy'} can't be written: {tmp_path / 'afile'} is a "
        "file, not a folder."
    )


def test_the_name_limit_is_the_file_systems_and_inclusive(tmp_path):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    longest = "n" * (name_max - len(".json")) + ".json"
    plan_outputs(report=tmp_path / longest)  # exactly at the limit: fine
    over = "é" + longest[1:]  # as many characters, one byte more: the limit counts bytes
    assert _refusal(report=tmp_path / over) == (
        f"The report name {over[:40]}… is {name_max + 1} bytes long; this file system allows "
        f"{name_max}: choose a shorter name."
    )


def test_a_path_past_the_systems_limit_is_refused_before_any_work(tmp_path):
    path_max = os.pathconf(tmp_path, "PC_PATH_MAX")
    folder = tmp_path
    while len(os.fsencode(str(folder))) < path_max - 250:  # leaves a name under 255 bytes
        folder = folder / ("d" * 200)
    folder.mkdir(parents=True)
    report = folder / ("r" * (path_max - len(os.fsencode(str(folder))) - 7) + ".json")
    assert len(os.fsencode(str(report))) == path_max - 1
    plan_outputs(report=report)  # one byte under the limit, with its NUL: fine
    longer = report.with_name("r" + report.name)
    assert _refusal(report=longer) == (
        f"The report path is longer than the {path_max} bytes this system allows: choose a "
        "shorter folder or name."
    )


def test_each_refused_plan_reads_exactly(tmp_path):
    from blender_img3d.core.exporters import SUFFIXES
    from blender_img3d.core.images.preparation import MODEL_INPUT_FORMATS

    suffixes = ", ".join(SUFFIXES)
    assert _refusal(outputs=[tmp_path / "o.fbx"]) == (
        f"Can't write {str(tmp_path / 'o.fbx')!r}: can't tell its format from the suffix .fbx; "
        f"use one of {suffixes}."
    )
    assert _refusal(outputs=[tmp_path / "o"]) == (
        f"Can't write {str(tmp_path / 'o')!r}: can't tell its format from the suffix (none); "
        f"use one of {suffixes}."
    )
    assert _refusal(outputs=[], save_input=tmp_path / "seen.gif") == (
        "Can't save the model's input as seen.gif: use an image suffix "
        f"({', '.join(MODEL_INPUT_FORMATS)})."
    )
    (tmp_path / "chair.png").write_bytes(b"picture")
    assert _refusal(outputs=[], report=tmp_path / "chair.png", inputs=[tmp_path / "chair.png"]) == (
        f"The report {tmp_path / 'chair.png'} would overwrite the input {tmp_path / 'chair.png'}: "
        "choose another output name (inputs are never overwritten)."
    )
    assert _refusal(outputs=[], latents=tmp_path / "z.npy", report=tmp_path / "z.npy.json") == (
        f"The report and the latents' sidecar would both be written to {tmp_path / 'z.npy.json'}: "
        "give each output its own file name."
    )


def test_a_requests_image_path_is_an_input_and_its_batch_sizes_the_variants(tmp_path):
    from blender_img3d.core.outputs import plan_for_request
    from blender_img3d.core.settings import GenerationSettings, Request

    (tmp_path / "chair.png").write_bytes(b"picture")
    request = Request(image=tmp_path / "chair.png", outputs=[tmp_path / "o.glb"],
                      save_input=tmp_path / "chair.png")  # fmt: skip
    with pytest.raises(OutputPathError, match="would overwrite the input"):
        plan_for_request(request)
    request = Request(outputs=[tmp_path / "o.glb"], generation=GenerationSettings(batch=2))
    assert [p.name for p in plan_for_request(request).paths] == ["o_0.glb", "o_1.glb"]
    assert [p.name for p in plan_for_request(request, batch=1).paths] == ["o.glb"]
