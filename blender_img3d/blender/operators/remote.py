"""Test Connection: ask the GPU server chosen in the preferences for its health."""

from __future__ import annotations

import bpy

from ...core.errors import Img3DError, ServerError


def describe_health(url: str, health: dict) -> str:
    """One line: where, which version, on what, how busy, whether a token is needed."""
    if "workers" not in health:  # a server with tokens tells strangers only "ok" and its version
        return (
            f"{url}: blender_img3d {health.get('version', '?')} answers, but needs a token: "
            "set it in the add-on preferences"
        )
    devices = ", ".join(worker.get("device", "?") for worker in health.get("workers", [])) or "?"
    loaded = [m for m in health.get("models", []) if m.get("loaded")]
    modes = "/".join(sorted({m.get("mode", "?") for m in loaded})) or "no models loaded"
    queue = f"{health.get('queue', 0)}/{health.get('max_queue', '?')} queued"
    auth = "token required" if health.get("auth") else "no token"
    return (
        f"{url}: blender_img3d {health.get('version', '?')} on {devices}, {modes}, {queue}, {auth}"
    )


class IMG3D_OT_test_connection(bpy.types.Operator):
    """Ask the GPU server for its health: version, devices, loaded models and queue"""

    bl_idname = "img3d.test_connection"
    bl_label = "Test Connection"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if not bpy.app.online_access:
            cls.poll_message_set("Turn on Preferences > System > Allow Online Access first")
            return False
        return True

    def execute(self, context):
        from ..prefs import get_preferences, record_connection_check

        try:
            backend = get_preferences().remote_backend()
            health = backend.health()
            if "workers" not in health:  # what a server with tokens tells a caller without one
                raise ServerError(
                    f"{backend.url} answers (blender_img3d {health.get('version', '?')}) but "
                    "needs a token: enter it in the add-on preferences."
                )
            if health.get("auth"):
                check_token(backend)
        except Img3DError as error:
            record_connection_check(False, str(error))
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        message = describe_health(backend.url, health)
        record_connection_check(True, message)
        self.report({"INFO"}, message)
        return {"FINISHED"}


def check_token(backend) -> None:
    """Ask a job route too (servers before per-client tokens answered health to any token)."""
    try:
        backend.client.status("0" * 32)
    except Img3DError as error:
        if getattr(error, "status", None) != 404:
            raise


CLASSES = (IMG3D_OT_test_connection,)
