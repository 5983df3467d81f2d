"""The add-on in remote mode: a Blender process in which torch can't be imported generates
through a real GPU server, and a server that dies mid-job leaves one clear line, no object.

Blender runs in a child process (the bpy wheel) whose first act is a meta-path
blocker for torch and the other heavy packages, so the proof that nothing
imports them is the child's own ``sys.modules`` and the import errors it would
raise. The extension is the one the session built, installed with Blender's
own installer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

pytest.importorskip("fastapi", reason="the [server] extra is part of the dev set-up")

from blender_img3d.core import backend as backends  # noqa: E402
from blender_img3d.core.settings import GenerationSettings, MeshSettings, Request  # noqa: E402
from tests.fixtures.server import ServerProcess  # noqa: E402

TOKEN = "blender-test-token-0123456789"
BLOCKED = ("torch", "diffusers", "transformers", "PIL", "skimage", "trimesh", "scipy", "ezdxf")

CHILD = r"""
import importlib.abc, json, sys

BLOCKED = set(sys.argv[1].split(","))


class BlockHeavy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this Blender process")


sys.meta_path.insert(0, BlockHeavy())

import bpy

zip_path, url, token, dying_url = sys.argv[2:6]
assert bpy.ops.extensions.package_install_files(
    filepath=zip_path, repo="user_default", enable_on_install=True
) == {"FINISHED"}
package = "bl_ext.user_default.blender_img3d"
prefs = bpy.context.preferences.addons[package].preferences
tasks = sys.modules[package + ".blender.tasks"]
report = {}


def generate(**overrides):
    before = {obj.name for obj in bpy.data.objects}
    try:
        result = bpy.ops.img3d.generate(**overrides)
        raised = ""
    except RuntimeError as error:  # background mode raises an operator's ERROR report
        result, raised = {"CANCELLED"}, str(error)
    state = tasks.state_of("generate")
    new = [bpy.data.objects[n] for n in {o.name for o in bpy.data.objects} - before]
    return {
        "result": sorted(result),
        "error": state.last_error,
        "raised": raised,
        "objects": [
            {
                "name": obj.name,
                "vertices": [list(v.co) for v in obj.data.vertices],
                "faces": len(obj.data.polygons),
                "seed": obj.get("img3d_seed", obj.get("seed")),
            }
            for obj in new
        ],
        "meshes": len(bpy.data.meshes),
    }


prefs.backend = "REMOTE"
prefs.server_url = url
prefs.server_token = token
scene = bpy.context.scene.img3d
scene.mode = "text"
scene.prompt = "a lamp"
scene.random_seed = False
scene.seed = 4

bpy.context.preferences.system.use_online_access = False
report["offline"] = generate(steps=2, grid_size=16, target_faces=0)

bpy.context.preferences.system.use_online_access = True
bpy.ops.img3d.test_connection()
report["connection"] = sys.modules[package + ".blender.prefs"].last_connection_check()
report["poll_without_dependencies"] = bpy.ops.img3d.generate.poll()
report["remote"] = generate(steps=2, grid_size=16, target_faces=0)

prefs.server_url = dying_url
report["stopped"] = generate(steps=1000, grid_size=16, target_faces=0)
report["heavy_imported"] = sorted(m for m in BLOCKED if m in sys.modules)
print("REPORT " + json.dumps(report))
"""


def start_server(model_dir: Path, log_dir: Path, name: str) -> ServerProcess:
    token_file = log_dir / f"{name}-token.txt"
    token_file.write_text(TOKEN)
    return ServerProcess(
        ["--text-model", str(model_dir), "--device", "cpu", "--token-file", str(token_file)],
        log_dir / f"{name}.log",
    )


def kill_when_running(server: ServerProcess, stop: threading.Event) -> None:
    """Kill the server as soon as it is running a job (the child's long one)."""
    while not stop.is_set():
        try:
            health = requests.get(
                f"{server.url}/v1/health", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
            ).json()
        except requests.RequestException:
            return
        if health["running"]:
            time.sleep(0.3)  # a few sampling steps in
            server.process.kill()
            return
        time.sleep(0.05)


def test_remote_mode_generates_without_torch_and_a_dead_server_leaves_no_object(
    extension_zip, surface_text_model_dir, tmp_path
):
    server = start_server(surface_text_model_dir, tmp_path, "server")
    dying = start_server(surface_text_model_dir, tmp_path, "dying")
    stop = threading.Event()
    killer = threading.Thread(target=kill_when_running, args=(dying, stop), daemon=True)
    killer.start()
    try:
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        completed = subprocess.run(
            [
                sys.executable,
                str(script),
                ",".join(BLOCKED),
                str(extension_zip),
                server.url,
                TOKEN,
                dying.url,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    finally:
        stop.set()
        server.stop()
        dying.stop()
    lines = [line for line in completed.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT ") :])

    assert report["heavy_imported"] == []
    assert report["poll_without_dependencies"] is True

    offline = report["offline"]
    assert offline["result"] == ["CANCELLED"] and offline["objects"] == []
    assert "Online access is off" in offline["error"]

    ok, message = report["connection"]
    assert ok and "token required" in message and "text" in message

    remote = report["remote"]
    assert remote["result"] == ["FINISHED"], remote["error"]
    assert len(remote["objects"]) == 1
    local = backends.get_backend("local").submit(
        Request(
            prompt="a lamp",
            generation=GenerationSettings(
                model=str(surface_text_model_dir), device="cpu", steps=2, grid_size=16, seed=4
            ),
            mesh=MeshSettings(target_faces=0),
        )
    )
    got = np.array(remote["objects"][0]["vertices"])
    want = local.meshes[0].vertices
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-5)
    assert remote["objects"][0]["faces"] == len(local.meshes[0].faces)

    stopped = report["stopped"]
    assert stopped["result"] == ["CANCELLED"]
    assert stopped["objects"] == [] and stopped["meshes"] == remote["meshes"]
    assert stopped["error"].startswith("Lost job") and "\n" not in stopped["error"]
    assert "Can't reach the server" in stopped["error"]
