"""The FastAPI application behind ``serve``, and ``serve()`` itself (uvicorn, optional TLS).

Routes (``/v1``; every error is JSON ``{"error": <one line>, "type": <error class>}``):

- ``GET  /v1/health``               "ok" and the version to anyone; with the token also
                                    devices, loaded models and the queue
- ``POST /v1/jobs``                 multipart ``image`` + ``settings``, or JSON ``prompt`` +
                                    ``settings`` → 202 ``{"id", "position", "state"}``
- ``GET  /v1/jobs/{id}``            state, phase, step, total, eta, position, error
- ``GET  /v1/jobs/{id}/events``     the same as server-sent events, until the job ends
- ``DELETE /v1/jobs/{id}``          cancel (a running job stops at its next sampling step)
- ``GET  /v1/jobs/{id}/result``     the result archive (zip, see ``protocol``)
- ``GET  /`` and ``/static/...``     the browser page, ``/v1/settings-schema`` and
                                    ``/v1/jobs/{id}/files/{name}`` (see ``web``)

- ``GET  /v1/openapi.json``         the API's schema (token needed, like the job routes)

With tokens configured (``auth``), every route but health needs ``Authorization:
Bearer <token>``, checked before any of the body is read; a job belongs to the
client whose token made it, and is 404 to every other client. Each request is
logged (client, method, path with control characters escaped, status, time),
never its headers. Connections are bounded by ``limits``, the log by ``logsafety``.
"""

# No "from __future__ import annotations": FastAPI reads the route functions' annotations
# (Request) at definition time, inside create_app where they are imported.
import asyncio
import json
import logging
import socket
import time
from typing import Any, Callable, Optional

from ..errors import ConfigError, DependencyError, ImageInputError, Img3DError
from ..version import __version__
from . import protocol
from .auth import Authenticator, AuthError, Client, auth_dependency
from .config import ServerConfig
from .jobstore import JobRecord, JobStore, QueueFullError, ResultNotReadyError
from .logsafety import escape_controls, install_log_guard
from .uploads import (
    BadRequestError,
    UnsupportedMediaError,
    UploadTooLargeError,
    check_image_header,
    image_source,
    read_job_body,
)
from .web import web_routes

log = logging.getLogger(__name__)
access_log = logging.getLogger(__name__ + ".access")

KEEPALIVE_SECONDS = 10.0
# Full image decodes at once in the upload checks; each worker decodes its own job's image too,
# so the server's peak is this many decodes plus one per GPU.
MAX_CONCURRENT_DECODES = 1
SERVER_EXTRA_HINT = (
    "The server needs FastAPI and uvicorn: pip install 'blender_img3d[server]' "
    "(or python vendor_install.py --dev)."
)


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
    from starlette.requests import ClientDisconnect

    authenticator = Authenticator(config.clients)
    authenticated = auth_dependency(authenticator)
    decodes = asyncio.Semaphore(MAX_CONCURRENT_DECODES)

    def job_or_404(job_id: str, client: Client) -> JobRecord:
        record = store.get(job_id)
        if record is None or record.owner != client.name:  # another client's job isn't there
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
        openapi_url=None,  # served below, behind the token
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

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_request: Request, _error: ClientDisconnect):
        # The client left (or was dropped for a stalled body) mid-request: no traceback in the
        # log, and nobody reads this answer.
        body = {"error": "The connection closed before the request ended.", "type": "ServerError"}
        return JSONResponse(body, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected_error(_request: Request, error: Exception):
        log.exception("Unexpected error in a request")
        body = {  # the details (which may name server paths) stay in the server's log
            "error": f"Unexpected server error ({type(error).__name__}): the server's log has "
            "the details; please report it.",
            "type": "ServerError",
        }
        return JSONResponse(body, status_code=500)

    @app.get(protocol.HEALTH_PATH)
    async def health(request: Request) -> dict[str, Any]:
        given = request.headers.get("authorization")
        if authenticator.required and given is None:
            return {"status": "ok", "version": __version__}  # nothing more for strangers
        authenticator.require(given)  # a wrong token is a 401, so Test Connection can say so
        return {
            "status": "ok",
            "version": __version__,
            "api": protocol.API_PREFIX.strip("/"),
            "device": config.device,
            "auth": authenticator.required,
            "max_upload_bytes": config.max_upload_bytes,
            "keep_results_seconds": config.keep_results_seconds,
            **store.health(),
        }

    @app.get(protocol.OPENAPI_PATH, dependencies=[Depends(authenticated)], include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    jobs = APIRouter(prefix=protocol.JOBS_PATH)

    @jobs.post("", status_code=202)
    async def submit(request: Request, client: Client = Depends(authenticated)) -> dict[str, Any]:
        record = store.new_job(client.name)  # holds a queue place: a full queue is 429 here
        try:
            prompt, image_path, settings = await read_job_body(
                request, record.folder, config.max_upload_bytes
            )
            image = None
            if image_path is not None:  # the header only: a size over the cap is never decoded
                check_image_header(image_path)
                async with decodes:
                    image = await asyncio.to_thread(image_source, image_path)
            job_request, options = protocol.request_from_settings(
                settings, prompt=prompt, image=image
            )
            store.prepare(record, job_request, options)
            if image is not None:
                async with decodes:
                    await asyncio.to_thread(_check_image, job_request)
            position = store.enqueue(record)
        except BaseException:
            store.discard(record)
            raise
        return {"id": record.id, "state": protocol.QUEUED, "position": position}

    @jobs.get("/{job_id}")
    async def status(job_id: str, client: Client = Depends(authenticated)) -> dict[str, Any]:
        return store.status(job_or_404(job_id, client))

    @jobs.delete("/{job_id}", status_code=202)
    async def cancel(job_id: str, client: Client = Depends(authenticated)) -> dict[str, Any]:
        record = job_or_404(job_id, client)
        store.cancel(record)
        return store.status(record)

    @jobs.get("/{job_id}/result")
    async def result(job_id: str, client: Client = Depends(authenticated)):
        record = job_or_404(job_id, client)
        archive = store.result_archive(record)
        return FileResponse(archive, media_type="application/zip", filename=f"{record.id}.zip")

    @jobs.get("/{job_id}/events")
    async def events(job_id: str, request: Request, client: Client = Depends(authenticated)):
        record = job_or_404(job_id, client)
        seq = _resume_from(request.headers.get("last-event-id"))
        return StreamingResponse(
            _event_stream(store, record, request, seq),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    app.include_router(jobs)
    app.include_router(web_routes(config, store, authenticated, job_or_404))
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
                # the query string is left out, headers never logged; %0A stays \\n
                escape_controls(scope.get("path", "-")),
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
        sock.listen(1024)
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

    from .limits import uvicorn_options

    install_log_guard()
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
                **uvicorn_options(config),
            )
        )
        if announce is not None:
            announce(url_of(config, sock))
        server.run(sockets=[sock])
    finally:
        store.stop()
        sock.close()
