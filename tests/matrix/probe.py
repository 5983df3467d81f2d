"""The artist's loop in one Blender line, run by that line's bare ``bpy`` venv.

    python probe.py <config.json>     → one ``__CASE__{json}`` line per case, as it ends

Nothing of the dev venv is on the path: this Python has ``bpy`` and what the bpy
wheel brings (what Blender bundles), then the built zip (Blender's installer, its
bundled exporter wheels) and, halfway, what the add-on's own installer puts in its
vendor folder from a local wheelhouse. The order is the artist's: install, remote
generation with an empty vendor folder, Install Dependencies, then the local loop.
A case that raises is reported as failed and the next one runs; the test decides.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

CONFIG = json.loads(Path(sys.argv[1]).read_text())
PACKAGE = "bl_ext.user_default.blender_img3d"
# Never on the bpy side before Install Dependencies (the zip bundles scipy, ezdxf and
# fast-simplification for the exporters; Blender bundles numpy and requests).
HEAVY = ("torch", "diffusers", "transformers", "PIL", "skimage", "trimesh", "xatlas")

import bpy  # noqa: E402


def emit(case: str, ok: bool, seconds: float, **detail) -> None:
    line = {"line": CONFIG["line"], "bpy": bpy.app.version_string, "case": case, "ok": ok}
    line.update(seconds=round(seconds, 2), **detail)
    print("__CASE__" + json.dumps(line, default=str), flush=True)


def case(name: str):
    """Run the decorated function now as one case; it returns (ok, detail)."""

    def run(function):
        start = time.monotonic()
        try:
            ok, detail = function()
        except Exception as error:  # noqa: BLE001 - the test reads what failed
            ok, detail = False, {"raised": f"{type(error).__name__}: {error}"}
            detail["traceback"] = traceback.format_exc()[-2000:]
        emit(name, ok, time.monotonic() - start, **detail)
        return function

    return run


def addon_module(name: str):
    return sys.modules[f"{PACKAGE}.{name}"]


def operator(call, **kwargs) -> tuple[list[str], str]:
    """Run an operator; background mode raises its ERROR report as RuntimeError."""
    try:
        return sorted(call(**kwargs)), ""
    except RuntimeError as error:
        return ["CANCELLED"], str(error)


def generate_case(call=None, **kwargs) -> tuple[bool, dict]:
    """Generate (or a Results operator); one new object per variant, nothing else."""
    call = call or bpy.ops.img3d.generate
    before = set(bpy.data.objects.keys())
    outcome, raised = operator(call, **kwargs)
    new = [bpy.data.objects[name] for name in set(bpy.data.objects.keys()) - before]
    state = addon_module("blender.tasks").state_of("generate")
    detail = {
        "result": outcome,
        "raised": raised,
        "error": state.last_error,
        "objects": len(new),
        "faces": [len(obj.data.polygons) for obj in new],
    }
    if new:
        select(new[0])
    return outcome == ["FINISHED"] and bool(new) and all(detail["faces"]), detail


def generate_again_case() -> tuple[bool, dict]:
    """Generate Again with the same seed: one new object (remote or local, as set up)."""
    ok, detail = generate_case(bpy.ops.img3d.generate_again, same_seed=True)
    return ok and detail["objects"] == 1, detail


def variations_case() -> tuple[bool, dict]:
    """Two variations: two new objects."""
    ok, detail = generate_case(bpy.ops.img3d.variations, count=2)
    return ok and detail["objects"] == 2, detail


def select(obj) -> None:
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj


def heavy_loaded() -> list[str]:
    return sorted(name for name in HEAVY if name in sys.modules)


def scene_for(mode: str, **settings) -> None:
    props = bpy.context.scene.img3d
    props.mode = mode
    if mode == "image":
        props.image_source, props.image_path = "FILE", CONFIG["image"]
    else:
        props.prompt = "a small stool"
    props.random_seed, props.seed = False, 3
    props.steps, props.grid_size, props.target_faces = 2, 16, 0
    props.model = CONFIG["models"][mode] if CONFIG["local_models"] else ""
    props.bake_texture = False
    for key, value in settings.items():
        setattr(props, key, value)


def exports_case(stem: str) -> tuple[bool, dict]:
    sizes = {}
    for fmt, suffix in (("GLB", "glb"), ("OBJ", "obj"), ("DXF", "dxf"), ("STEP", "step")):
        path = Path(CONFIG["out_dir"]) / f"{stem}.{suffix}"
        outcome, raised = operator(bpy.ops.img3d.export, filepath=str(path), format=fmt)
        sizes[fmt] = [outcome, raised, path.stat().st_size if path.exists() else 0]
    ok = all(outcome == ["FINISHED"] and size > 0 for outcome, _, size in sizes.values())
    return ok, {"exports": sizes}


def mesh_tools_case() -> tuple[bool, dict]:
    results = {}
    for tool, kwargs in (
        ("mesh_clean", {}),
        ("mesh_smooth", {"iterations": 2}),
        ("mesh_decimate", {"target_faces": 40}),
        ("quality_report", {}),
    ):
        results[tool] = operator(getattr(bpy.ops.img3d, tool), **kwargs)
    ok = all(outcome == ["FINISHED"] for outcome, _ in results.values())
    return ok, {"tools": results}


# --- install ------------------------------------------------------------------------------
@case("install_zip")
def install_zip():
    result = bpy.ops.extensions.package_install_files(
        filepath=CONFIG["zip"], repo="user_default", enable_on_install=True
    )
    bpy.ops.wm.read_homefile(app_template="")
    enabled = PACKAGE in bpy.context.preferences.addons
    # FINISHED is returned even when Blender refused the package: enabled is the proof.
    registered = hasattr(bpy.types, "IMG3D_OT_generate") or "generate" in dir(bpy.ops.img3d)
    return enabled and registered, {
        "result": sorted(result),
        "enabled": enabled,
        "registered": registered,
    }


if PACKAGE not in bpy.context.preferences.addons:
    sys.exit(3)  # nothing else can run; the install case says why

prefs = bpy.context.preferences.addons[PACKAGE].preferences
bpy.context.preferences.system.use_online_access = True
prefs.preload_engine = False  # a test drives the imports itself
prefs.image_model, prefs.text_model = CONFIG["models"]["image"], CONFIG["models"]["text"]


# --- remote, with an empty vendor folder (no torch, no Pillow) --------------------------
prefs.backend = "REMOTE"
prefs.server_url, prefs.server_token = CONFIG["server"]["url"], CONFIG["server"]["token"]
CONFIG["local_models"] = False


@case("remote_picture")
def remote_picture():
    scene_for("image")
    ok, detail = generate_case()
    detail["heavy_loaded"] = heavy_loaded()
    return ok and not detail["heavy_loaded"] and detail["objects"] == 1, detail


@case("remote_prompt")
def remote_prompt():
    scene_for("text")
    ok, detail = generate_case()
    detail["heavy_loaded"] = heavy_loaded()
    return ok and not detail["heavy_loaded"] and detail["objects"] == 1, detail


case("remote_generate_again")(generate_again_case)
case("remote_variations")(variations_case)


@case("remote_exports")
def remote_exports():
    ok, detail = exports_case("remote")
    detail["heavy_loaded"] = heavy_loaded()
    return ok and not detail["heavy_loaded"], detail


@case("remote_mesh_tools")
def remote_mesh_tools():
    ok, detail = mesh_tools_case()
    detail["heavy_loaded"] = heavy_loaded()
    return ok and not detail["heavy_loaded"], detail


@case("draw_panels")
def draw_panels():
    """Every panel and the preferences draw with nothing installed, importing nothing heavy."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ui_layout", CONFIG["ui_layout"])
    ui_layout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ui_layout)
    drawn = []
    for module in ("blender.ui.panel", "blender.ui.tools_panel"):
        for name, panel in vars(addon_module(module)).items():
            if not name.startswith("IMG3D_PT") or (
                hasattr(panel, "poll") and not panel.poll(bpy.context)
            ):
                continue
            layout = ui_layout.RecordingLayout()
            panel.draw(type("View", (), {"layout": layout})(), bpy.context)
            drawn.append(name)
    layout = ui_layout.RecordingLayout()
    type(prefs).draw(ui_layout.PreferencesView(prefs, layout), bpy.context)
    drawn.append("preferences")
    loaded = heavy_loaded()
    return "IMG3D_PT_main" in drawn and not loaded, {"drawn": drawn, "heavy_loaded": loaded}


@case("preview_needs_install")
def preview_needs_install():
    """Preview Input needs Pillow: greyed out with one line saying so, never a traceback."""
    scene_for("image")
    outcome, raised = operator(bpy.ops.img3d.preview_input)
    ok = outcome == ["CANCELLED"] and "Install Dependencies" in raised
    return ok and "Traceback" not in raised, {"result": outcome, "raised": raised}


# --- the add-on's own installer, from the wheelhouse -------------------------------------
@case("install_dependencies")
def install_dependencies():
    prefs.wheelhouse = CONFIG["wheelhouse"]
    prefs.torch_build = "cpu"
    outcome, raised = operator(
        bpy.ops.img3d.install_dependencies, packages=" ".join(CONFIG["packages"] or ())
    )
    state = addon_module("blender.tasks").state_of("install")
    folder = addon_module("blender.prefs").vendor_folder()
    return outcome == ["FINISHED"], {
        "result": outcome,
        "raised": raised,
        "error": state.last_error,
        "summary": state.last_summary,
        "log": state.log.splitlines()[-15:],
        "vendor": str(folder),
        "vendor_bytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()),
    }


prefs.backend = "LOCAL"
CONFIG["local_models"] = True


@case("system_check")
def system_check():
    outcome, raised = operator(bpy.ops.img3d.system_check)
    entries = bpy.context.window_manager.img3d_tasks.system_check
    problems = [f"{e.name}: {e.detail} {e.advice}".strip() for e in entries if not e.ok]
    expected = [] if CONFIG["local_generation"] else ["torch"]
    unexpected = [p for p in problems if not any(p.lower().startswith(x) for x in expected)]
    return outcome == ["FINISHED"] and not unexpected, {"problems": problems}


@case("preview_input")
def preview_input():
    scene_for("image")
    outcome, raised = operator(bpy.ops.img3d.preview_input)
    state = bpy.context.window_manager.img3d_tasks
    report = state.preview_report
    return outcome == ["FINISHED"] and "Covers" in report, {
        "result": outcome,
        "raised": raised,
        "report": report,
    }


@case("preview_busy_photo")
def preview_busy_photo():
    """A real photo (scikit-image's coffee, from the installed wheel) through the offline
    remover for busy photos, in this Blender: saliency on SLIC superpixels, then GrabCut."""
    import skimage.data

    scene_for("image", background="classic")
    bpy.context.scene.img3d.image_path = str(Path(skimage.data.__file__).parent / "coffee.png")
    outcome, raised = operator(bpy.ops.img3d.preview_input)
    state = bpy.context.window_manager.img3d_tasks
    report, warning = state.preview_report, state.preview_warning
    ok = outcome == ["FINISHED"] and "offline remover" in report
    return ok and warning.startswith("the cut-out is doubtful (saliency"), {
        "result": outcome,
        "raised": raised,
        "report": report,
        "warning": warning,
    }


if CONFIG["local_generation"]:

    @case("local_picture")
    def local_picture():
        scene_for("image")
        return generate_case()

    @case("local_prompt")
    def local_prompt():
        scene_for("text")
        return generate_case()

    case("generate_again")(generate_again_case)
    case("variations")(variations_case)

    @case("redecode")
    def redecode():
        ok, detail = generate_case(bpy.ops.img3d.redecode, grid_size=20)
        obj = bpy.context.view_layer.objects.active
        detail["grid_size"] = obj.get("img3d_grid_size")
        return ok and detail["grid_size"] == 20, detail

else:  # no torch for this Python here: the loop goes through the server
    prefs.backend = "REMOTE"
    CONFIG["local_models"] = False


@case("bake_texture")
def bake_texture():
    scene_for("text", bake_texture=True, texture_size=64)
    ok, detail = generate_case()
    obj = bpy.context.view_layer.objects.active
    nodes = obj.data.materials[0].node_tree.nodes if ok and obj.data.materials else []
    images = [n.image.size[0] for n in nodes if n.bl_idname == "ShaderNodeTexImage" and n.image]
    detail.update(uv_layers=len(obj.data.uv_layers) if ok else 0, texture_sizes=images)
    return ok and detail["uv_layers"] > 0 and images == [64], detail


@case("exports")
def exports():
    scene_for("text")
    ok, detail = generate_case()
    if not ok:
        return ok, detail
    return exports_case("local")


@case("mesh_tools")
def mesh_tools():
    return mesh_tools_case()


print("__DONE__", flush=True)
