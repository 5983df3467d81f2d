"""``python -m blender_img3d``: end to end on tiny models, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from blender_img3d.cli.main import main

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> int:
    return main([str(arg) for arg in args])


def test_generate_writes_a_glb_trimesh_reads(
    surface_image_model_dir, example_image, tmp_path, capsys
):
    out = tmp_path / "stool.glb"
    code = run_cli(
        "generate", "--image", example_image, "--model", surface_image_model_dir,
        "--steps", 2, "--grid-size", 16, "--out", out, "--quiet",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    import trimesh

    scene = trimesh.load(out)
    mesh = next(iter(scene.geometry.values())) if hasattr(scene, "geometry") else scene
    assert len(mesh.faces) > 0
    # trimesh keeps COLOR_0 as a vertex attribute when a material is present.
    assert len(mesh.visual.vertex_attributes["color"]) == len(mesh.vertices)
    assert f"wrote {out}" in capsys.readouterr().out


def test_generate_text_several_formats_latents_and_report(surface_text_model_dir, tmp_path, capsys):
    code = run_cli(
        "generate", "--prompt", "a lamp", "--model", surface_text_model_dir, "--steps", 2,
        "--grid-size", 16, "--schedule", "diffusers", "--batch", 2,
        "--out", tmp_path / "lamp.obj", "--out", tmp_path / "lamp.stl.step",
        "--latents-out", tmp_path / "lamp.npy", "--report", tmp_path / "lamp.json", "--quiet",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    for name in ("lamp_0.obj", "lamp_1.obj", "lamp.stl_0.step", "lamp.stl_1.step", "lamp.npy"):
        assert (tmp_path / name).is_file(), name
    report = json.loads((tmp_path / "lamp.json").read_text())
    assert len(report["variants"]) == 2
    assert report["settings"]["generation"]["schedule"] == "diffusers"


def test_decode_and_export_subcommands(surface_image_model_dir, example_image, tmp_path, capsys):
    latents = tmp_path / "z.npy"
    assert run_cli(
        "generate", "--image", example_image, "--model", surface_image_model_dir, "--steps", 2,
        "--grid-size", 16, "--out", tmp_path / "a.glb", "--latents-out", latents, "--quiet",
    ) == 0  # fmt: skip
    assert (
        run_cli(
            "decode",
            "--latents",
            latents,
            "--grid-size",
            20,
            "--out",
            tmp_path / "b.glb",
            "--quiet",
        )
        == 0
    )
    assert (
        run_cli("export", "--in", tmp_path / "b.glb", "--out", tmp_path / "b.dxf", "--quiet") == 0
    )
    assert (tmp_path / "b.dxf").stat().st_size > 0


@pytest.mark.parametrize("method", ["dense", "adaptive"])
def test_sdf_method_flag_chooses_how_the_decoder_queries_the_field(
    surface_text_model_dir, tmp_path, monkeypatch, capsys, method
):
    from blender_img3d.core.shap_e import decoding

    seen = []
    real_decode = decoding.decode_surfaces

    def spying_decode(*args, **kwargs):
        seen.append(kwargs["adaptive"])
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(decoding, "decode_surfaces", spying_decode)
    code = run_cli(
        "generate", "--prompt", "a lamp", "--model", surface_text_model_dir, "--steps", 1,
        "--grid-size", 16, "--sdf-method", method, "--out", tmp_path / "lamp.glb",
        "--report", tmp_path / "lamp.json", "--quiet",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert seen == [method == "adaptive"]
    report = json.loads((tmp_path / "lamp.json").read_text())
    assert report["settings"]["generation"]["sdf_method"] == method


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--out", "x.glb"], "one of the arguments --image --prompt is required"),
        (["decode", "--latents", "z.npy", "--out", "x.glb", "--sdf-method", "x"], "invalid choice"),
        (["generate", "--prompt", "x", "--image", "y.png", "--out", "x.glb"], "not allowed with"),
        (["generate", "--prompt", "x", "--steps", "many", "--out", "x.glb"], "invalid int value"),
        (["generate", "--prompt", "x"], "--out"),
        (["generate", "--prompt", "x", "--out", "x.glb", "--schedule", "ddim"], "invalid choice"),
    ],
)
def test_bad_flags_exit_2_with_argparse_message(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--image", "missing.png", "--out", "x.glb"], "No image file at missing.png"),
        (["generate", "--prompt", "x", "--out", "x.fbx"], "use one of .glb"),
        (["generate", "--prompt", "x", "--out", "x.glb", "--steps", "0"], "steps must be"),
        (["generate", "--prompt", "x", "--out", "x.glb", "--seed", "-1"], "seed must be"),
        (["generate", "--prompt", "x", "--out", "x.glb", "--model", "/nonexistent/model"], "model"),
        (["decode", "--latents", "none.npy", "--out", "x.glb"], "none.npy"),
        (["export", "--in", "none.glb", "--out", "x.step"], "none.glb"),
    ],
)
def test_user_errors_print_one_line_and_exit_1(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli(*args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err[-1:]) == 1 and err[-1].startswith("error: ")
    assert message in err[-1]
    assert not any("Traceback" in line for line in err)


def test_module_entry_point_runs_as_a_real_process():
    completed = subprocess.run(
        [sys.executable, "-m", "blender_img3d", "info", "--json", "--no-devices"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    entries = {entry["name"]: entry for entry in json.loads(completed.stdout)}
    assert entries["torch"]["ok"] and entries["bpy" if "bpy" in entries else "numpy"]["ok"]
