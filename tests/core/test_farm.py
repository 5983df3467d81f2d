"""Farm batches on one machine, on tiny models: outputs, resume, failures, Ctrl-C, grouping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from blender_img3d.cli.main import main as cli_main
from blender_img3d.core import pipeline
from blender_img3d.core.errors import ConfigError, DependencyError
from blender_img3d.core.farm import runner
from blender_img3d.core.farm.manifest import ManifestError, read_manifest
from blender_img3d.core.farm.plan import ITEM_REPORT, LATENTS_FILE, SUMMARY_FILE
from blender_img3d.core.settings import GenerationSettings, MeshSettings, Request
from tests.fixtures.image_corpus import object_on

REPO_ROOT = Path(__file__).resolve().parents[2]
COLOURS = [
    (200, 30, 30),
    (30, 160, 40),
    (40, 60, 200),
    (220, 180, 20),
    (140, 40, 160),
    (20, 160, 170),
]


def base(model_dir, **generation) -> Request:
    settings = {"steps": 2, "grid_size": 16, **generation}
    return Request(
        generation=GenerationSettings(model=str(model_dir), **settings),
        mesh=MeshSettings(target_faces=0),
    )


def image_folder(folder: Path, count: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image, _ = object_on((255, 255, 255), colour=COLOURS[index % len(COLOURS)], seed=index)
        image.save(folder / f"part{index}.png")
    return folder


def reports(out_dir: Path) -> dict[str, int]:
    """Item name -> report mtime (ns): a rewrite changes it."""
    return {p.parent.name: p.stat().st_mtime_ns for p in sorted(out_dir.glob(f"*/{ITEM_REPORT}"))}


def summary_of(out_dir: Path) -> dict:
    return json.loads((out_dir / SUMMARY_FILE).read_text())


def temp_files(out_dir: Path) -> list[Path]:
    return sorted(out_dir.rglob(".*.tmp"))


@pytest.fixture(scope="module")
def six_images(tmp_path_factory) -> Path:
    return image_folder(tmp_path_factory.mktemp("images"))


def test_folder_of_images_makes_every_item_and_a_summary(
    surface_image_model_dir, six_images, tmp_path
):
    out = tmp_path / "out"
    summary = runner.run_batch(six_images, out, base(surface_image_model_dir), ["glb", "obj"])
    assert (summary.made, summary.skipped, summary.failures) == (6, 0, [])
    for index in range(6):
        folder = out / f"part{index}"
        names = {p.name for p in folder.iterdir()}
        assert {f"part{index}.glb", f"part{index}.obj", LATENTS_FILE, ITEM_REPORT} <= names
        report = json.loads((folder / ITEM_REPORT).read_text())
        assert report["farm"]["item"] == f"part{index}"
        assert report["variants"][0]["metrics"]["faces"] > 0
        assert set(report["farm"]["files"]) >= {f"part{index}.glb", LATENTS_FILE}
        assert report["settings"]["image"] == f"part{index}.png"
    written = summary_of(out)
    assert written["status"] == "complete"
    assert written["counts"] == {
        "items": 6, "done": 6, "made": 6, "skipped": 0, "failed": 0, "not_run": 0
    }  # fmt: skip
    assert written["throughput"]["items_per_hour"] > 0
    assert temp_files(out) == []


def test_rerun_does_no_work_and_a_deleted_output_redoes_only_its_item(
    surface_image_model_dir, six_images, tmp_path
):
    out = tmp_path / "out"
    request = base(surface_image_model_dir)
    runner.run_batch(six_images, out, request, ["glb"])
    before = reports(out)

    again = runner.run_batch(six_images, out, request, ["glb"])
    assert (again.made, again.skipped) == (0, 6)
    assert again.work_seconds == 0.0  # no item spent any time: nothing ran
    assert reports(out) == before
    assert summary_of(out)["counts"]["skipped"] == 6

    (out / "part3" / "part3.glb").unlink()
    redo = runner.run_batch(six_images, out, request, ["glb"])
    assert (redo.made, redo.skipped) == (1, 5)
    assert redo.items["part3"]["status"] == "made"
    after = reports(out)
    assert after["part3"] != before["part3"]
    assert {k: v for k, v in after.items() if k != "part3"} == {
        k: v for k, v in before.items() if k != "part3"
    }
    assert (out / "part3" / "part3.glb").is_file()


def test_truncated_output_counts_as_missing(surface_image_model_dir, tmp_path):
    images = image_folder(tmp_path / "images", 2)
    out = tmp_path / "out"
    request = base(surface_image_model_dir)
    runner.run_batch(images, out, request, ["glb"])
    glb = out / "part1" / "part1.glb"
    glb.write_bytes(glb.read_bytes()[:100])
    redo = runner.run_batch(images, out, request, ["glb"])
    assert redo.items["part1"]["status"] == "made" and redo.skipped == 1


def test_corrupt_image_is_recorded_and_the_others_are_made(
    surface_image_model_dir, tmp_path, capsys
):
    images = image_folder(tmp_path / "images", 3)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    out = tmp_path / "out"
    code = cli_main([
        "batch", str(images), "--out-dir", str(out), "--model", str(surface_image_model_dir),
        "--steps", "2", "--grid-size", "16", "--target-faces", "0", "--quiet",
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "failed broken (broken.png)" in captured.out
    written = summary_of(out)
    assert written["status"] == "failures"
    assert written["counts"]["made"] == 3 and written["counts"]["failed"] == 1
    (failure,) = written["failures"]
    assert failure["name"] == "broken" and failure["error"] == "ImageInputError"
    assert not (out / "broken" / ITEM_REPORT).exists()


def test_max_failures_stops_the_batch(surface_image_model_dir, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b"):
        (images / f"{name}.png").write_bytes(b"garbage")
    image_folder(images, 2)
    summary = runner.run_batch(
        images,
        tmp_path / "out",
        base(surface_image_model_dir),
        ["glb"],
        max_failures=1,
        group_rows=1,
    )
    assert summary.status == runner.STOPPED
    assert len(summary.failures) == 1 and summary.not_run == 3


def test_prompts_file_and_jsonl_overrides(surface_text_model_dir, tmp_path):
    prompts = tmp_path / "props.txt"
    prompts.write_text("# props\na red chair\n\na lamp\na red chair\n")
    out = tmp_path / "out"
    summary = runner.run_batch(prompts, out, base(surface_text_model_dir), ["glb"])
    assert sorted(summary.items) == ["a-lamp", "a-red-chair", "a-red-chair-2"]
    assert summary.items["a-lamp"]["where"] == "line 4"

    manifest = tmp_path / "items.jsonl"
    rows = [
        {"prompt": "a stool", "name": "stool", "seed": 5, "batch": 2, "steps": 3},
        {"prompt": "a vase", "target_faces": 50, "mesh.smooth_iterations": 1},
    ]
    manifest.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    summary = runner.run_batch(manifest, out, base(surface_text_model_dir), ["glb"])
    assert summary.made == 2, summary.failures
    stool = json.loads((out / "stool" / ITEM_REPORT).read_text())
    assert stool["settings"]["generation"]["seed"] == 5
    assert stool["settings"]["generation"]["steps"] == 3
    assert len(stool["variants"]) == 2
    assert (out / "stool" / "stool_0.glb").is_file() and (out / "stool" / "stool_1.glb").is_file()
    vase = json.loads((out / "a-vase" / ITEM_REPORT).read_text())
    assert vase["settings"]["mesh"]["target_faces"] == 50
    assert vase["settings"]["mesh"]["smooth_iterations"] == 1


def test_bad_manifest_rows_are_all_reported_before_any_work(tmp_path, tiny_text_model_dir):
    (tmp_path / "chair.png").write_bytes(b"")
    manifest = tmp_path / "items.csv"
    manifest.write_text(
        "prompt,image,name,seed,steps\n"
        "a chair,,chair,1,\n"
        ",missing.png,,,\n"  # line 3: no such image
        "a lamp,,,seven,\n"  # line 4: seed not a number
        "a box,,chair,,\n"  # line 5: name used twice
        "a cup,,,,0\n"  # line 6: steps out of range
    )
    out = tmp_path / "out"
    with pytest.raises(ManifestError) as caught:
        runner.run_batch(manifest, out, base(tiny_text_model_dir), ["glb"])
    wheres = [where for where, _ in caught.value.problems]
    assert wheres == ["line 3", "line 4"]  # reading problems come first, all of them
    assert "seven" in str(caught.value) and "line 3" in str(caught.value)
    assert not out.exists()

    manifest.write_text("prompt,name\na chair,chair\na box,chair\na cup,\n")
    with pytest.raises(ManifestError, match="line 3: the name 'chair' is used by line 2"):
        runner.run_batch(manifest, out, base(tiny_text_model_dir), ["glb"])

    manifest.write_text("prompt,sed,device\na chair,1,cpu\n")
    with pytest.raises(ManifestError, match="command line"):
        read_manifest(manifest)
    manifest.write_text("prompt,sed\na chair,1\n")
    with pytest.raises(ManifestError, match="unknown column 'sed'"):
        read_manifest(manifest)


def test_items_finished_with_other_settings_need_force(surface_text_model_dir, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a chair\n")
    out = tmp_path / "out"
    runner.run_batch(prompts, out, base(surface_text_model_dir), ["glb"])
    changed = base(surface_text_model_dir, seed=9)
    with pytest.raises(ConfigError, match="--force"):
        runner.run_batch(prompts, out, changed, ["glb"])
    forced = runner.run_batch(prompts, out, changed, ["glb"], force=True)
    assert forced.made == 1
    report = json.loads((out / "a-chair" / ITEM_REPORT).read_text())
    assert report["settings"]["generation"]["seed"] == 9


def test_grouped_prior_calls_give_the_latents_of_single_runs(surface_text_model_dir, tmp_path):
    """Items sampled together (different prompts, seeds, batch sizes) get their own runs' latents.

    The starting noise is bit-identical (each item draws its own seed). The
    results agree to float32 rounding, not bit for bit: CPU GEMM kernels pick
    their blocking by the number of rows, so one row's dot products are summed
    in another order inside a bigger matmul (measured ~1e-7 per prior call;
    8 Heun steps of the diffusers schedule keep it near 1e-5).
    """
    from blender_img3d.core.shap_e.loading import load_models
    from blender_img3d.core.shap_e.sampling import (
        initial_noise,
        sample_latents,
        sample_latents_grouped,
    )

    models = load_models(str(surface_text_model_dir), mode="text")
    prompts, seeds, batches = ["a chair", "a tall red lamp", "x"], [3, 9, 12], [1, 2, 1]
    grouped = sample_latents_grouped(models, prompts, seeds, batches, steps=8, schedule="diffusers")
    for prompt, seed, batch, latents in zip(prompts, seeds, batches, grouped):
        single = sample_latents(
            models, prompt=prompt, seed=seed, batch=batch, steps=8, schedule="diffusers"
        )
        assert latents.shape == single.shape
        np.testing.assert_allclose(latents.numpy(), single.numpy(), rtol=0, atol=2e-4)
    noise = initial_noise(9, 2, models.latent_shape)
    assert np.array_equal(noise.numpy(), initial_noise(9, 2, models.latent_shape).numpy())

    # The same through the batch runner: its grouped run's files hold those latents.
    manifest = tmp_path / "items.csv"
    manifest.write_text("prompt,seed,batch\na chair,3,1\na tall red lamp,9,2\nx,12,1\n")
    request = base(surface_text_model_dir, steps=8, schedule="diffusers")
    together = runner.run_batch(manifest, tmp_path / "g", request, ["glb"], group_rows=4)
    assert together.made == 3
    for name, single in zip(("a-chair", "a-tall-red-lamp", "x"), grouped):
        saved = np.load(tmp_path / "g" / name / LATENTS_FILE)
        np.testing.assert_allclose(saved, single.numpy(), rtol=0, atol=2e-4)


def test_run_group_keeps_one_bad_item_to_itself(surface_image_model_dir, tmp_path):
    image, _ = object_on((255, 255, 255))
    good = tmp_path / "good.png"
    image.save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    requests = [
        Request(image=path, generation=GenerationSettings(model=str(surface_image_model_dir),
                steps=2, grid_size=16), outputs=[tmp_path / f"{path.stem}.glb"])
        for path in (good, bad)
    ]  # fmt: skip
    good_result, bad_result = pipeline.run_group(requests)
    assert isinstance(good_result, pipeline.Result) and (tmp_path / "good.glb").is_file()
    assert type(bad_result).__name__ == "ImageInputError"


def test_ray_engine_without_ray_says_what_to_install(monkeypatch):
    import builtins

    from blender_img3d.core.farm import ray_engine

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(DependencyError, match=r"pip install 'ray==[\d.]+'.*--engine local"):
        ray_engine.import_ray()


def test_farm_extra_pins_the_same_ray_as_the_dev_requirements():
    import tomllib

    from blender_img3d.core.system.requirements import DEV_REQUIREMENTS, RAY_REQUIREMENT

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert project["project"]["optional-dependencies"]["farm"] == [RAY_REQUIREMENT]
    assert RAY_REQUIREMENT in DEV_REQUIREMENTS


@pytest.mark.slow
def test_ctrl_c_keeps_finished_items_and_a_rerun_completes(surface_text_model_dir, tmp_path):
    ITEMS = 4  # noqa: N806
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prop number {i}\n" for i in range(ITEMS)))
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "blender_img3d", "batch", str(prompts), "--out-dir", str(out),
        "--model", str(surface_text_model_dir), "--steps", "32", "--grid-size", "16",
        "--target-faces", "0", "--group", "1", "--format", "glb", "--format", "obj",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob(f"*/{ITEM_REPORT}")):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "no item finished in time"
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, stderr
    assert "stopping" in stderr
    finished = reports(out)
    assert 1 <= len(finished) < ITEMS, "the batch should stop part-way"
    assert temp_files(out) == []
    written = summary_of(out)
    assert written["status"] == "cancelled"
    assert written["counts"]["made"] == len(finished)

    rest = runner.run_batch(
        prompts, out, base(surface_text_model_dir, steps=32), ["glb", "obj"],
        group_rows=1,
    )  # fmt: skip
    assert (rest.skipped, rest.made) == (len(finished), ITEMS - len(finished))
    assert {k: v for k, v in reports(out).items() if k in finished} == finished
    assert len(reports(out)) == ITEMS
