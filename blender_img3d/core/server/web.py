"""The browser page ``serve`` shows at ``/``: its files, its settings schema and one result file.

A designer without Blender opens ``http://gpu-box:8765/``, picks a picture (or
types a prompt), and gets the same jobs API the CLI and the add-on use: the
page is plain HTML, CSS and one JavaScript module shipped in ``web/`` beside
this file, talking to ``/v1`` with ``fetch``.

- ``GET /`` and ``GET /static/<file>``: the page and its assets, no token
  needed (they hold no data), each with the headers a page handling a token
  needs: a Content-Security-Policy allowing only this origin's own scripts
  (no inline script, no eval, no third-party origin; ``blob:`` for the result
  files the page fetches with its token and hands to the viewer),
  ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.
  No CORS header is ever sent, so no other origin can read a response.
- ``GET /static/vendor/model-viewer.min.js``: Google's ``<model-viewer>``
  (npm ``@google/model-viewer``, pinned in ``core.system.requirements``),
  read from where ``vendor_install.py --dev`` put it (``--viewer-script``
  overrides). Without it the page says why it shows no preview and still
  offers every download.
- ``GET /v1/settings-schema``: the settings the page offers, with their
  bounds, defaults and presets read from ``core.settings`` (the one source:
  the JavaScript restates none of them), the formats from the exporter
  registry and the server's upload limit.
- ``GET /v1/jobs/{id}/files/{name}``: one member of a finished job's result
  archive (``result.json``, ``files/0/chair.glb``...), behind the same token
  check and with the same expiry as the archive itself. The name is only
  looked up among the archive's members, never joined to a path.

May import: the rest of ``core``; FastAPI only inside :func:`web_routes`.
"""

# No "from __future__ import annotations": FastAPI reads the route functions' annotations.
import asyncio
import logging
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from .. import choices
from .. import settings as defaults
from ..exporters import FORMATS
from ..system.requirements import MODEL_VIEWER_REQUIREMENT
from . import protocol
from .config import ServerConfig
from .jobstore import JobRecord, JobStore

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).with_name("web")
STATIC_PREFIX = "/static"
VIEWER_URL = f"{STATIC_PREFIX}/vendor/model-viewer.min.js"
SETTINGS_SCHEMA_PATH = f"{protocol.API_PREFIX}/settings-schema"
# Where ``vendor_install.py --dev`` installs the npm packages: ``<venv>/npm``.
VIEWER_IN_NPM = Path("node_modules", "@google", "model-viewer", "dist", "model-viewer.min.js")

# The page's own files; nothing else under /static is served.
PAGE_FILES: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        # model-viewer's bundled three.js compiles WebAssembly (its meshopt decoder) when it
        # loads; 'wasm-unsafe-eval' allows that and nothing else: no eval(), no inline script.
        "script-src 'self' 'wasm-unsafe-eval'",
        # model-viewer's shadow DOM sets style attributes; styles can't run code.
        "style-src 'self' 'unsafe-inline'",
        # The page shows the picked picture and hands the viewer the GLB as blob: URLs;
        # three.js reads a GLB's embedded textures through blob:/data: URLs.
        "img-src 'self' blob: data:",
        "connect-src 'self' blob: data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# A result file is data, never a page: if a browser ever renders one, it runs nothing.
FILE_HEADERS: dict[str, str] = {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
}

# An archive member name: up to three plain segments of the characters protocol.safe_filename
# keeps (letters and digits of any script, "._- ()"; no "..", no leading dot, no backslash);
# only ever compared with the archive's own names.
_SEGMENT = r"[\w()-][\w.() -]{0,119}"
MEMBER_NAME = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT}){{0,2}}$")
MEDIA_TYPES: dict[str, str] = {
    ".glb": "model/gltf-binary",
    ".obj": "model/obj",
    ".mtl": "model/mtl",
    ".dxf": "image/vnd.dxf",
    ".step": "model/step",
    ".stp": "model/step",
    ".json": "application/json",
    ".png": "image/png",
}
CHUNK_BYTES = 256 * 1024


def default_viewer_script() -> Path:
    """Where ``vendor_install.py --dev`` puts model-viewer for this Python: ``<venv>/npm/...``."""
    return Path(sys.prefix) / "npm" / VIEWER_IN_NPM


def viewer_advice() -> str:
    """How to give the page its 3D preview, for the log and the missing file's 404."""
    return (
        f"run python3 vendor_install.py --dev, or npm install --prefix {Path(sys.prefix) / 'npm'} "
        f"{MODEL_VIEWER_REQUIREMENT}, or start serve with --viewer-script FILE"
    )


def viewer_script(config: ServerConfig) -> Optional[Path]:
    """The model-viewer file to serve, or None when it isn't installed."""
    path = Path(config.viewer_script) if config.viewer_script else default_viewer_script()
    return path if path.is_file() else None


def _integer(name: str, label: str, low: int, high: int, default: int, hint: str) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "integer",
        "min": low,
        "max": high,
        "default": default,
        "hint": hint,
    }


def settings_schema(config: ServerConfig) -> dict[str, Any]:
    """What the page offers, each setting with the core's own bounds and default."""
    gen, mesh = defaults.GenerationSettings(), defaults.MeshSettings()
    image = defaults.ImageSettings()
    return {
        "presets": {
            "default": defaults.DEFAULT_PRESET,
            "settings": list(defaults.PRESET_SETTINGS),
            "values": defaults.GENERATION_PRESETS,
        },
        "fields": [
            _integer(
                "seed", "Seed", 0, defaults.MAX_SEED, gen.seed, "the same seed gives the same mesh"
            ),
            _integer(
                "batch", "Variants", 1, defaults.MAX_BATCH, gen.batch, "meshes made from one input"
            ),
            _integer(
                "target_faces",
                "Target faces",
                0,
                defaults.MAX_TARGET_FACES,
                mesh.target_faces,
                "0 keeps every face",
            ),
            {
                "name": "background",
                "label": "Background",
                "type": "choice",
                "choices": [
                    {"name": c.name, "label": c.label, "description": c.description}
                    for c in choices.BACKGROUNDS
                ],
                "default": image.background,
                "hint": "how the object is cut out of the picture",
                "mode": "image",
            },
        ],
        "advanced": [
            _integer("steps", "Sampling steps", 1, defaults.MAX_STEPS, gen.steps, "more is slower"),
            _integer(
                "grid_size",
                "Grid size",
                defaults.MIN_GRID_SIZE,
                defaults.MAX_GRID_SIZE,
                gen.grid_size,
                "surface detail",
            ),
            _integer(
                "smooth_iterations",
                "Smoothing passes",
                0,
                defaults.MAX_SMOOTH_ITERATIONS,
                mesh.smooth_iterations,
                "0 is off",
            ),
        ],
        "formats": [
            {
                "name": fmt.name,
                "label": fmt.label,
                "suffix": fmt.suffix,
                "description": fmt.description,
                "always": fmt.name == "glb",  # the server always makes the GLB (the preview's)
            }
            for fmt in FORMATS.values()
        ],
        "max_upload_bytes": config.max_upload_bytes,
        "viewer": viewer_script(config) is not None,
    }


def check_member_name(name: str) -> None:
    """Refuse a file name that is not a plain archive member name (HTTP 400)."""
    from fastapi import HTTPException

    if not MEMBER_NAME.match(name) or any(part.endswith((" ", ".")) for part in name.split("/")):
        raise HTTPException(
            400,
            f"{name[:120]!r} is not a result file name: use a name from the job's result.json "
            "(e.g. files/0/chair.glb).",
        )


def open_member(archive: Path, name: str, job_id: str) -> tuple[zipfile.ZipFile, zipfile.ZipInfo]:
    """The open archive and the member ``name``; HTTP 404 when either is gone."""
    from fastapi import HTTPException

    try:
        zf = zipfile.ZipFile(archive)
    except FileNotFoundError:  # the sweeper deleted it between the check and now
        raise HTTPException(404, f"Job {job_id}'s result was deleted: run the job again.") from None
    try:
        return zf, zf.getinfo(name)
    except KeyError:
        zf.close()
        raise HTTPException(
            404, f"Job {job_id}'s result has no file {name!r}: see its result.json."
        ) from None


def attachment(name: str) -> str:
    """A Content-Disposition for ``name``: ASCII fallback plus the UTF-8 name (RFC 6266)."""
    from urllib.parse import quote

    fallback = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def member_chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The member's bytes in chunks; closes the archive at the end or on disconnect."""
    try:
        with zf.open(info) as stream:
            while chunk := stream.read(CHUNK_BYTES):
                yield chunk
    finally:
        zf.close()


def web_routes(
    config: ServerConfig,
    store: JobStore,
    authenticated: Callable[..., Any],
    job_or_404: Callable[[str, Any], JobRecord],
) -> Any:
    """The page's routes as one APIRouter; ``authenticated`` (the server's per-client token
    dependency) guards every data route, and a job is looked up as its client's."""
    from fastapi import APIRouter, Depends
    from fastapi.responses import FileResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    router = APIRouter()
    guarded = [Depends(authenticated)]
    if viewer_script(config) is None:
        log.warning("The page will show no 3D previews (downloads work): %s.", viewer_advice())

    @router.get("/", include_in_schema=False)
    async def page():
        return FileResponse(
            WEB_DIR / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS
        )

    @router.get(STATIC_PREFIX + "/{name}", include_in_schema=False)
    async def page_file(name: str):
        if name not in PAGE_FILES:
            raise HTTPException(404, f"No file {name[:80]!r} here.")
        return FileResponse(WEB_DIR / name, media_type=PAGE_FILES[name], headers=PAGE_HEADERS)

    @router.get(VIEWER_URL, include_in_schema=False)
    async def viewer():
        path = viewer_script(config)
        if path is None:
            raise HTTPException(
                404, f"model-viewer is not installed on this server: {viewer_advice()}."
            )
        return FileResponse(path, media_type=PAGE_FILES["app.js"], headers=PAGE_HEADERS)

    @router.get(SETTINGS_SCHEMA_PATH, dependencies=guarded)
    async def schema() -> dict[str, Any]:
        return settings_schema(config)

    @router.get(protocol.JOBS_PATH + "/{job_id}/files/{name:path}")
    async def result_file(job_id: str, name: str, client: Any = Depends(authenticated)):
        record = job_or_404(job_id, client)
        archive = store.result_archive(record)  # the zip's own states and expiry
        check_member_name(name)
        zf, info = await asyncio.to_thread(open_member, archive, name, record.id)
        base = name.rsplit("/", 1)[-1]
        headers = {
            **FILE_HEADERS,
            "Content-Length": str(info.file_size),
            "Content-Disposition": attachment(base),
        }
        media = MEDIA_TYPES.get(Path(base).suffix.lower(), "application/octet-stream")
        return StreamingResponse(member_chunks(zf, info), media_type=media, headers=headers)

    return router
