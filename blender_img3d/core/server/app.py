"""The FastAPI application behind ``serve``, and ``serve()`` itself (uvicorn, optional TLS).

Routes (``/v1``; every error is JSON ``{"error": <one line>, "type": <error class>}``):

- ``GET  /v1/health``               version, devices, loaded models, queue (no token needed)
- ``POST /v1/jobs``                 multipart ``image`` + ``settings``, or JSON ``prompt`` +
                                    ``settings`` → 202 ``{"id", "position", "state"}``
- ``GET  /v1/jobs/{id}``            state, phase, step, total, eta, position, error
- ``GET  /v1/jobs/{id}/events``     the same as server-sent events, until the job ends
- ``DELETE /v1/jobs/{id}``          cancel (a running job stops at its next sampling step)
- ``GET  /v1/jobs/{id}/result``     the result archive (zip, see ``protocol``)
- ``GET  /`` and ``/static/...``     the browser page, ``/v1/settings-schema`` and
                                    ``/v1/jobs/{id}/files/{name}`` (see ``web``)

With a token configured, every route but health needs ``Authorization: Bearer <token>``,
compared in constant time before any of the body is read. Each request is logged
(client, method, path, status, time), never its headers.
"""

# No "from __future__ import annotations": FastAPI reads the route functions' annotations
# (Request) at definition time, inside create_app where they are imported.
import asyncio
import hmac
import json
import logging
import socket
import time
from typing import Any, Callable, Optional

from ..errors import ConfigError, DependencyError, ImageInputError, Img3DError
from ..version import __version__
from . import protocol
from .config import ServerConfig
from .jobstore import JobRecord, JobStore, QueueFullError, ResultNotReadyError
from .uploads import (
    BadRequestError,
    UnsupportedMediaError,
    UploadTooLargeError,
    image_source,
    read_job_body,
)
from .web import web_routes

log = logging.getLogger(__name__)
access_log = logging.getLogger(__name__ + ".access")

KEEPALIVE_SECONDS = 10.0
SERVER_EXTRA_HINT = (
    "The server needs FastAPI and uvicorn: pip install 'blender_img3d[server]' "
    "(or python vendor_install.py --dev)."
)


class AuthError(Img3DError):
    """No or wrong bearer token (HTTP 401)."""


class JobNotFoundError(Img3DError):
    """No job with that id: never existed, or its result was deleted (HTTP 404)."""


STATUS_BY_ERROR: tuple[tuple[type, int], ...] = (
    (AuthError, 401),
    (JobNotFoundError, 404),
    (QueueFullError, 429),
    (UploadTooLargeError, 413),
    (UnsupportedMediaError, 415),
    (BadRequestError, 400),
    (ResultNotReadyError, 409),
    (ImageInputError, 422),
    (ConfigError, 422),
)


def status_for(error: Img3DError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 500


def require_server_packages() -> None:
    """A DependencyError with the install line when FastAPI/uvicorn/python-multipart are missing."""
    missing = []
    for module in ("fastapi", "uvicorn", "python_multipart"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module.replace("_", "-"))
    if missing:
        raise DependencyError(f"Missing {', '.join(missing)}. {SERVER_EXTRA_HINT}")


def create_app(config: ServerConfig, store: JobStore) -> Any:
    """The ASGI app for ``store``; routes as in the module docstring."""
    require_server_packages()
    from fastapi import APIRouter, Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    token = config.token.encode("ascii") if config.token else None

    def check_token(request: Request) -> None:
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), token
        ):
            raise AuthError(
                "Missing or wrong token: send 'Authorization: Bearer <token>' with the token "
                "from the server's --token-file."
            )

    def job_or_404(job_id: str) -> JobRecord:
        record = store.get(job_id)
        if record is None:
            raise JobNotFoundError(
                f"No job {job_id!r} on this server: it never existed, or its result was "
                f"deleted after {config.keep_results_seconds / 60:g} minutes."
            )
        return record

    app = FastAPI(
        title="blender_img3d GPU server",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=f"{protocol.API_PREFIX}/openapi.json",
    )

    @app.exception_handler(Img3DError)
    async def typed_error(_request: Request, error: Img3DError):
        status = status_for(error)
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if status == 429:
            headers["Retry-After"] = "30"
        return JSONResponse(protocol.error_body(error), status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException):
        body = {"error": str(error.detail), "type": "ServerError"}
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        body = {"error": f"{where}: {first.get('msg', 'invalid')}", "type": "ConfigError"}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected_error(_request: Request, error: Exception):
        log.exception("Unexpected error in a request")
        body = {"error": f"Unexpected server error: {error!r}", "type": "ServerError"}
        return JSONResponse(body, status_code=500)

    @app.get(protocol.HEALTH_PATH)
    async def health() -> dict[str, Any]:
        return {
            "version": __version__,
            "api": protocol.API_PREFIX.strip("/"),
            "device": config.device,
            "auth": token is not None,
            "max_upload_bytes": config.max_upload_bytes,
            "keep_results_seconds": config.keep_results_seconds,
            **store.health(),
        }

    jobs = APIRouter(prefix=protocol.JOBS_PATH, dependencies=[Depends(check_token)])

    @jobs.post("", status_code=202)
    async def submit(request: Request) -> dict[str, Any]:
        record = store.new_job()
        try:
            prompt, image_path, settings = await read_job_body(
                request, record.folder, config.max_upload_bytes
            )
            image = None if image_path is None else image_source(image_path)
            job_request, options = protocol.request_from_settings(
                settings, prompt=prompt, image=image
            )
            store.prepare(record, job_request, options)
            if image is not None:
                await asyncio.to_thread(_check_image, job_request)
            position = store.enqueue(record)
        except BaseException:
            store.discard(record)
            raise
        return {"id": record.id, "state": protocol.QUEUED, "position": position}

    @jobs.get("/{job_id}")
    async def status(job_id: str) -> dict[str, Any]:
        return store.status(job_or_404(job_id))

    @jobs.delete("/{job_id}", status_code=202)
    async def cancel(job_id: str) -> dict[str, Any]:
        record = job_or_404(job_id)
        store.cancel(record)
        return store.status(record)

    @jobs.get("/{job_id}/result")
    async def result(job_id: str):
        record = job_or_404(job_id)
        archive = store.result_archive(record)
        return FileResponse(archive, media_type="application/zip", filename=f"{record.id}.zip")

    @jobs.get("/{job_id}/events")
    async def events(job_id: str, request: Request):
        record = job_or_404(job_id)
        seq = _resume_from(request.headers.get("last-event-id"))
        return StreamingResponse(
            _event_stream(store, record, request, seq),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    app.include_router(jobs)
    app.include_router(web_routes(config, store, check_token, job_or_404))
    return _AccessLog(app)


def _check_image(request: Any) -> None:
    """The core's own image checks before queueing: a bad image is a 422, not a failed job."""
    from ..images import load_image

    load_image(request.image, request.image_settings)


def _resume_from(last_event_id: Optional[str]) -> int:
    try:
        return int(last_event_id) + 1 if last_event_id else 0
    except ValueError:
        return 0


async def _event_stream(store: JobStore, record: JobRecord, request: Any, seq: int):
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake() -> None:
        loop.call_soon_threadsafe(woken.set)

    store.listen(record, wake)
    try:
        while True:
            woken.clear()
            snapshots, seq = store.events_since(record, seq)
            for snapshot in snapshots:
                yield f"id: {snapshot['seq']}\nevent: status\ndata: {json.dumps(snapshot)}\n\n"
            if record.final and (not snapshots or snapshots[-1]["state"] == record.state):
                return
            try:
                await asyncio.wait_for(woken.wait(), KEEPALIVE_SECONDS)
            except asyncio.TimeoutError:
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
    finally:
        store.unlisten(record, wake)


class _AccessLog:
    """ASGI wrapper logging one line per request: client, method, path, status, time."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 0}

        async def send_and_note(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            client = scope.get("client") or ("-", 0)
            access_log.info(
                '%s "%s %s" %s %.0f ms',
                client[0],
                scope.get("method", "-"),
                scope.get("path", "-"),  # the query string is left out, headers never logged
                status["code"] or "-",
                (time.perf_counter() - started) * 1000,
            )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one); ConfigError if taken."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        raise ConfigError(f"Can't listen on {host}:{port}: {error.strerror or error}.") from None
    sock.set_inheritable(True)
    return sock


def url_of(config: ServerConfig, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{config.scheme}://{shown}:{port}"


def serve(
    config: ServerConfig,
    announce: Optional[Callable[[str], None]] = None,
    store: Optional[JobStore] = None,
) -> None:
    """Run the server until SIGINT/SIGTERM: bind, warm the models, then answer requests."""
    config.validate()
    require_server_packages()
    import uvicorn

    sock = bind_socket(config.host, config.port)
    store = store or JobStore(config)
    try:
        store.start()
        store.wait_ready()
        app = create_app(config, store)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan="off",
                ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
                ssl_keyfile=str(config.tls_key) if config.tls_key else None,
                timeout_graceful_shutdown=5,
            )
        )
        if announce is not None:
            announce(url_of(config, sock))
        server.run(sockets=[sock])
    finally:
        store.stop()
        sock.close()
