"""Preferences: registered under the package, persisted by Save Preferences, and their buttons."""

from __future__ import annotations

import sys
from pathlib import Path

import bpy
import pytest


@pytest.fixture
def prefs(installed_extension):
    preferences = bpy.context.preferences.addons[installed_extension].preferences
    saved = {
        name: getattr(preferences, name)
        for name in (
            "cache_dir",
            "allow_download",
            "torch_build",
            "device",
            "image_model",
            "text_model",
            "show_system",
            "preload_engine",
            "backend",
        )
    }
    online = bpy.context.preferences.system.use_online_access
    yield preferences
    for name, value in saved.items():
        setattr(preferences, name, value)
    bpy.context.preferences.system.use_online_access = online


def test_preferences_have_the_documented_settings_and_defaults(prefs, installed_extension):
    assert type(prefs).bl_idname == installed_extension
    assert (prefs.device, prefs.keep_model_loaded, prefs.allow_download) == ("auto", True, False)
    assert prefs.torch_build == "auto"
    # Empty cache folder: the extension's own user folder.
    # Hugging Face's standard cache: shared with diffusers and across Blender versions.
    from blender_img3d.core.system.model_store import default_cache_dir

    assert prefs.resolved_cache_dir() == default_cache_dir()


def test_saved_preferences_hold_the_values_set(prefs, blender_user_home, tmp_path):
    marker = str(tmp_path / "img3d-cache-marker-7f3a")
    prefs.cache_dir = marker
    prefs.torch_build = "cuda"
    assert prefs.resolved_cache_dir() == Path(marker)
    assert bpy.ops.wm.save_userpref() == {"FINISHED"}
    userpref = next(blender_user_home.rglob("userpref.blend"))
    assert marker.encode() in userpref.read_bytes()


def test_downloads_need_the_preference_and_blenders_online_access(prefs):
    prefs.allow_download = True
    bpy.context.preferences.system.use_online_access = False
    assert not prefs.downloads_allowed()
    bpy.context.preferences.system.use_online_access = True
    assert prefs.downloads_allowed()
    prefs.allow_download = False
    assert not prefs.downloads_allowed()


def test_download_button_with_downloads_off_says_how_to_turn_them_on(prefs):
    bpy.context.preferences.system.use_online_access = True
    prefs.allow_download = False
    with pytest.raises(RuntimeError, match="Downloads are off.*Allow Online Access"):
        bpy.ops.img3d.download_models()


def test_download_without_a_reachable_hub_fails_with_a_clear_message(prefs, tmp_path):
    pytest.importorskip("huggingface_hub")
    prefs.allow_download = True
    prefs.cache_dir = str(tmp_path)
    bpy.context.preferences.system.use_online_access = True
    # The test session runs with HF_HUB_OFFLINE=1: exactly the "no hub" case.
    with pytest.raises(RuntimeError, match="openai/shap-e-img2img.*unreachable"):
        bpy.ops.img3d.download_models(which="IMAGE")


def test_release_model_runs_with_nothing_loaded(installed_extension):
    assert bpy.ops.img3d.release_model() == {"FINISHED"}


def test_system_check_lists_versions_models_disk_and_online_without_a_gpu(
    installed_extension, prefs, tmp_path
):
    prefs.cache_dir = str(tmp_path)
    assert bpy.ops.img3d.system_check() == {"FINISHED"}
    entries = {e.name: e for e in bpy.context.window_manager.img3d_tasks.system_check}
    assert entries["Blender"].detail == bpy.app.version_string
    assert entries["Python"].detail.startswith("3.11")
    assert entries["numpy"].ok and entries["numpy"].detail == "1.26.4"
    assert "CPU build" in entries["torch build"].detail
    assert entries["CUDA"].ok  # no GPU is not an error: generation falls back to the CPU
    image_model = entries["image model openai/shap-e-img2img"]
    assert not image_model.ok and "Download Models" in image_model.advice
    assert entries["disk free"].detail.endswith(str(tmp_path))
    assert entries["online access"].ok == bool(bpy.app.online_access)
    assert "dependency folder" in entries


def test_preferences_page_draws_every_section_and_button(prefs, installed_extension):
    from tests.blender.ui_layout import PreferencesView, RecordingLayout

    bpy.ops.img3d.system_check()
    prefs.show_system = True
    layout = RecordingLayout()
    type(prefs).draw(PreferencesView(prefs, layout), bpy.context)
    operators = set(layout.texts("operator"))
    assert {
        "img3d.download_models",
        "img3d.open_cache_folder",
        "img3d.release_model",
        "img3d.install_dependencies",
        "img3d.system_check",
    } <= operators
    assert {"image_model", "cache_dir", "allow_download", "device", "keep_model_loaded"} <= set(
        layout.texts("prop")
    )
    assert any(text.startswith("Blender: ") for text in layout.texts("label"))


def test_a_running_install_shows_a_progress_bar_with_cancel(prefs, installed_extension):
    from tests.blender.ui_layout import PreferencesView, RecordingLayout

    status = bpy.context.window_manager.img3d_tasks.install
    status.running, status.progress, status.message = True, 0.4, "Collecting torch"
    try:
        layout = RecordingLayout()
        type(prefs).draw(PreferencesView(prefs, layout), bpy.context)
    finally:
        status.running, status.message = False, ""
    assert "Collecting torch" in layout.texts("progress")
    assert "img3d.cancel_task" in layout.texts("operator")


@pytest.fixture
def downloads_on(prefs, tmp_path):
    prefs.allow_download = True
    prefs.cache_dir = str(tmp_path)
    bpy.context.preferences.system.use_online_access = True
    return prefs


def test_download_progress_reaches_the_status_and_finishes(
    downloads_on, installed_extension, monkeypatch, tmp_path
):
    models = sys.modules[f"{installed_extension}.blender.operators.models"]
    tasks = sys.modules[f"{installed_extension}.blender.tasks"]
    seen = []

    def fake_download(repo_id, *, mode, cache_dir, revision, progress, cancel):
        progress("downloading", 50, 100)
        seen.append((repo_id, mode, cache_dir, tasks.active("download").fraction))
        return tmp_path / repo_id

    monkeypatch.setattr(models.model_store, "download_model", fake_download)
    assert bpy.ops.img3d.download_models() == {"FINISHED"}
    assert [(r, m, c) for r, m, c, _ in seen] == [
        ("openai/shap-e-img2img", "image", tmp_path),
        ("openai/shap-e", "text", tmp_path),
        ("onnx-community/BiRefNet_lite-ONNX", "background", tmp_path),  # the learned remover
    ]
    # Half of each third.
    assert [fraction for *_, fraction in seen] == pytest.approx([1 / 6, 3 / 6, 5 / 6])
    status = bpy.context.window_manager.img3d_tasks.download
    assert (status.running, status.progress, status.message) == (False, 1.0, "Models downloaded")


def test_a_cancelled_download_says_it_can_be_resumed(
    downloads_on, installed_extension, monkeypatch
):
    models = sys.modules[f"{installed_extension}.blender.operators.models"]
    errors = sys.modules[f"{installed_extension}.core.errors"]

    def cancelled(*_args, cancel, **_kwargs):
        cancel.set()  # as the Cancel button does
        raise errors.CancelledError()

    monkeypatch.setattr(models.model_store, "download_model", cancelled)
    assert bpy.ops.img3d.download_models(which="TEXT") == {"CANCELLED"}
    assert "Download again to resume" in bpy.context.window_manager.img3d_tasks.download.last_error


def test_local_model_folders_are_not_downloaded(downloads_on, tmp_path):
    from tests.fixtures.background_model import install_in_cache

    downloads_on.image_model = str(tmp_path)
    downloads_on.text_model = str(tmp_path)
    install_in_cache(tmp_path)  # the background remover is already in the cache folder
    assert bpy.ops.img3d.download_models() == {"CANCELLED"}  # "nothing to download"


def test_the_panel_preloads_the_engine_once_without_blocking_the_draw(
    prefs, installed_extension, monkeypatch
):
    """First draw of the tab starts the background import; not when off, remote or missing."""
    import threading
    from types import SimpleNamespace

    from tests.blender.ui_layout import RecordingLayout

    warmup = sys.modules[f"{installed_extension}.core.shap_e.warmup"]
    panel_module = sys.modules[f"{installed_extension}.blender.ui.panel"]
    release = threading.Event()
    imports = []

    def slow_import() -> None:
        imports.append(threading.current_thread().name)
        assert release.wait(30)

    def draw_main_panel() -> None:
        view = SimpleNamespace(layout=RecordingLayout())
        panel_module.IMG3D_PT_main.draw(view, bpy.context)

    for preload, backend, missing in (
        (False, "LOCAL", []),
        (True, "REMOTE", []),
        (True, "LOCAL", ["torch"]),
    ):
        job = warmup.ImportWarmup(slow_import)
        monkeypatch.setattr(warmup, "_PROCESS_WARMUP", job)
        monkeypatch.setattr(panel_module, "missing_modules", lambda missing=missing: missing)
        prefs.preload_engine, prefs.backend = preload, backend
        draw_main_panel()
        assert job.state == warmup.IDLE, (preload, backend, missing)

    job = warmup.ImportWarmup(slow_import)
    monkeypatch.setattr(warmup, "_PROCESS_WARMUP", job)
    monkeypatch.setattr(panel_module, "missing_modules", lambda: [])
    prefs.preload_engine, prefs.backend = True, "LOCAL"
    draw_main_panel()
    assert job.state == warmup.RUNNING  # the draw came back while the import still runs
    draw_main_panel()
    draw_main_panel()
    release.set()
    assert job.wait(30) is True
    assert (job.state, imports) == (warmup.DONE, ["img3d-warm-imports"])
