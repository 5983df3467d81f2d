"""The one pinned list of third-party packages, shared by every install path.

``vendor_install.py --dev`` builds the development venv from it, the Blender
mode installs ``RUNTIME_REQUIREMENTS`` into the extension's user folder, and
the system check / ``info`` command report the modules in ``RUNTIME_MODULES``.
Pure data: importing this module costs nothing.
"""

from __future__ import annotations

# torch is pinned to the CPU build that lies on this project's machines; the
# Blender mode can swap in a CUDA build of the same version.
TORCH_REQUIREMENT = "torch==2.13.0"

# What the add-on needs at run time, in Blender and outside it.
RUNTIME_REQUIREMENTS: tuple[str, ...] = (
    TORCH_REQUIREMENT,
    "diffusers==0.42.1",
    "transformers==5.24.0",
    "safetensors==0.8.0",
    "huggingface_hub==2.4.0",
    "trimesh==5.2.0",
    "scikit-image==0.26.0",
    "scipy==1.17.1",
    "fast-simplification==0.2.0",
    "manifold3d==3.5.4",
    "Pillow==13.0.0",
    "ezdxf==1.4.5",
)

# Blender 5.0's own numpy: bpy 5.0.1 is built against numpy 1.x.
NUMPY_REQUIREMENT = "numpy==1.26.4"

# Optional: the farm's Ray engine (``batch --engine ray``); the ``[farm]`` extra.
RAY_REQUIREMENT = "ray==2.60.0"

# Development only: Blender as a module, test tools, third-party readers, Ray for the farm tests.
DEV_REQUIREMENTS: tuple[str, ...] = (
    "bpy==5.0.1",
    RAY_REQUIREMENT,
    "pytest==9.2.0",
    "hypothesis==6.170.17",
    "ruff==0.17.6",
    "cadquery-ocp-novtk==8.0.1.1.0",
)

# Debian packages for tests (package -> the command it provides): assimp reads DXF files
# the way most non-Autodesk programs do.
DEBIAN_DEV_PACKAGES: dict[str, str] = {"assimp-utils": "assimp"}

# npm packages for tests (the Khronos glTF validator).
NPM_REQUIREMENTS: tuple[str, ...] = ("gltf-validator@2.0.0-dev.3.10",)

# Import name -> distribution name, for the runtime packages we check for.
RUNTIME_MODULES: dict[str, str] = {
    "numpy": "numpy",
    "torch": "torch",
    "diffusers": "diffusers",
    "transformers": "transformers",
    "safetensors": "safetensors",
    "huggingface_hub": "huggingface_hub",
    "trimesh": "trimesh",
    "skimage": "scikit-image",
    "scipy": "scipy",
    "fast_simplification": "fast-simplification",
    "manifold3d": "manifold3d",
    "PIL": "Pillow",
    "ezdxf": "ezdxf",
}

# Modules without which Generate can't run at all.
GENERATION_MODULES: tuple[str, ...] = ("torch", "diffusers", "transformers", "skimage", "PIL")
