"""core/model_store.py on a hub-cache layout built in the test: listing, sizes, status, offline."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from blender_img3d.core.errors import ModelNotFoundError
from blender_img3d.core.system import model_store

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


def image_model_files() -> dict[str, bytes]:
    """The smallest file set ``missing_components`` accepts for the image model."""
    config = b'{"x": 1}'
    return {
        "model_index.json": json.dumps({"_class_name": "ShapEImg2ImgPipeline"}).encode(),
        "prior/config.json": config,
        "prior/diffusion_pytorch_model.safetensors": b"p" * 1000,
        "image_encoder/config.json": config,
        "image_encoder/model.safetensors": b"e" * 500,
        "image_processor/preprocessor_config.json": config,
        "scheduler/scheduler_config.json": config,
        "shap_e_renderer/config.json": config,
        "shap_e_renderer/diffusion_pytorch_model.safetensors": b"r" * 250,
    }


def add_snapshot(
    cache: Path,
    repo_id: str,
    commit: str,
    files: dict[str, bytes],
    refs: tuple[str, ...] = ("main",),
) -> Path:
    """Lay files out as huggingface_hub does: content-addressed blobs, symlinked snapshots."""
    repo = cache / model_store.repo_folder_name(repo_id)
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = repo / "snapshots" / commit
    for name, content in files.items():
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def expected_size(files: dict[str, bytes]) -> int:
    return sum(len(content) for content in {c: None for c in files.values()})


def test_listing_reports_each_model_with_size_revisions_and_refs(tmp_path):
    files = image_model_files()
    add_snapshot(tmp_path, "openai/shap-e-img2img", COMMIT_A, files)
    add_snapshot(tmp_path, "openai/shap-e", COMMIT_B, {"model_index.json": b"{}"}, refs=())
    (tmp_path / "not-a-model").mkdir()
    models = model_store.list_cached_models(tmp_path)
    assert [m.repo_id for m in models] == ["openai/shap-e", "openai/shap-e-img2img"]
    image = models[1]
    assert image.size_bytes == expected_size(files)
    assert image.incomplete_bytes == 0
    (revision,) = image.revisions
    assert (revision.commit, revision.refs, revision.files) == (COMMIT_A, ("main",), len(files))
    assert revision.size_bytes == expected_size(files)
    assert image.revision("main") is revision and image.revision(COMMIT_A[:8]) is revision
    assert models[0].revision("main") is None  # a snapshot no ref points at


def test_blobs_shared_by_two_revisions_are_counted_once(tmp_path):
    files = image_model_files()
    add_snapshot(tmp_path, "openai/shap-e-img2img", COMMIT_A, files, refs=("v1",))
    newer = dict(files, **{"prior/config.json": b'{"x": 2}'})
    add_snapshot(tmp_path, "openai/shap-e-img2img", COMMIT_B, newer)
    model = model_store.find_cached_model("openai/shap-e-img2img", tmp_path)
    assert model is not None and len(model.revisions) == 2
    assert model.size_bytes == expected_size(files) + len(b'{"x": 2}')
    assert model.revision("v1").commit == COMMIT_A and model.revision("main").commit == COMMIT_B


def test_a_complete_snapshot_is_present_with_its_commit_and_size(tmp_path):
    files = image_model_files()
    snapshot = add_snapshot(tmp_path, "openai/shap-e-img2img", COMMIT_A, files)
    status = model_store.model_status("openai/shap-e-img2img", mode="image", cache_dir=tmp_path)
    assert status.present and status.problems == ()
    assert (status.path, status.revision) == (snapshot, COMMIT_A)
    assert status.size_bytes == expected_size(files)
    assert status.detail == f"1.8 KB, revision {COMMIT_A[:12]}"


def test_a_snapshot_missing_a_component_is_not_present_and_says_what_lacks(tmp_path):
    files = image_model_files()
    del files["image_encoder/model.safetensors"]
    add_snapshot(tmp_path, "openai/shap-e-img2img", COMMIT_A, files)
    status = model_store.model_status("openai/shap-e-img2img", mode="image", cache_dir=tmp_path)
    assert not status.present
    assert "image_encoder/ has no weights" in status.detail
    # The same files are the wrong model for text input.
    text = model_store.model_status("openai/shap-e-img2img", mode="text", cache_dir=tmp_path)
    assert not text.present and "image-to-3D" in text.detail


def test_an_interrupted_download_is_reported_as_resumable(tmp_path):
    repo = tmp_path / model_store.repo_folder_name("openai/shap-e")
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / ("c" * 64 + ".incomplete")).write_bytes(b"x" * 2048)
    status = model_store.model_status("openai/shap-e", mode="text", cache_dir=tmp_path)
    assert not status.present
    assert status.detail == "download interrupted (2.0 KB to resume)"
    assert model_store.find_cached_model("openai/shap-e", tmp_path).incomplete_bytes == 2048


def test_missing_models_and_missing_caches_are_plain_answers(tmp_path):
    assert model_store.list_cached_models(tmp_path / "nowhere") == []
    status = model_store.model_status("openai/shap-e", mode="text", cache_dir=tmp_path)
    assert (status.present, status.path, status.detail) == (False, None, "not downloaded")


def test_a_local_folder_is_checked_in_place(tmp_path):
    for name, content in image_model_files().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    status = model_store.model_status(tmp_path, mode="image")
    assert status.present and status.revision == "local" and status.path == tmp_path


def test_default_cache_follows_the_hub_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    assert model_store.default_cache_dir() == tmp_path / "hub-cache"
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert model_store.default_cache_dir() == tmp_path / "hf" / "hub"


def test_download_offline_raises_model_not_found_with_what_to_do(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the test session never reaches a hub
    with pytest.raises(ModelNotFoundError, match=r"openai/shap-e.*unreachable.*not in the cache"):
        model_store.download_model("openai/shap-e", mode="text", cache_dir=tmp_path)


def test_download_refuses_a_local_folder(tmp_path):
    with pytest.raises(ModelNotFoundError, match="nothing to download"):
        model_store.download_model(str(tmp_path), mode="image")


def test_system_check_lines_for_models_say_size_revision_or_what_to_do(tmp_path):
    from blender_img3d.core.system import sysinfo

    add_snapshot(tmp_path, "openai/shap-e-img2img", COMMIT_A, image_model_files())
    image, text = sysinfo.model_entries(
        [("image", "openai/shap-e-img2img"), ("text", "openai/shap-e")], cache_dir=tmp_path
    )
    assert (image.name, image.ok, image.advice) == ("image model openai/shap-e-img2img", True, "")
    assert image.detail.endswith(f"revision {COMMIT_A[:12]}")
    assert (text.ok, text.detail) == (False, "not downloaded")
    assert "Download Models" in text.advice
    offline = sysinfo.online_entry(False)
    assert not offline.ok and "Allow Online Access" in offline.advice
    names = [e.name for e in sysinfo.collect(False, tmp_path, [("text", "openai/shap-e")])]
    assert names[-2:] == ["text model openai/shap-e", "disk free"]
