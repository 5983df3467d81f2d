"""blender_img3d: image or text to a coloured 3D mesh with Shap-E, inside Blender.

Importing this package is cheap and works without Blender: bpy, torch and
diffusers are imported only by ``register()`` (Blender layer) and by the core
when a job runs.
"""

from .core.version import __version__

__all__ = ["__version__", "register", "unregister"]


def register() -> None:
    """Register the add-on's classes and handlers with Blender."""
    from .blender import addon

    addon.register()


def unregister() -> None:
    """Cancel any running job and remove everything ``register()`` added."""
    from .blender import addon

    addon.unregister()
