"""The GPU server's client, and the ``"remote"`` backend built on it.

:class:`RemoteBackend` is what ``core.backend.get_backend("remote", url=...)``
returns: ``submit(request, progress, cancel)`` uploads the job, follows its
server-sent events (reporting ``(phase, step, total)`` like a local run),
cancels it on the server when ``cancel`` is set, and turns the result archive
back into a :class:`~..pipeline.Result` — the same meshes, metrics, latents
and settings — while writing the request's output files locally, byte for byte
what the server wrote. Only ``requests`` and numpy are needed (both ship with
Blender); torch is never imported. Every failure is one line: a typed error
the server named, or :class:`~..errors.ServerError` for the network.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..errors import CancelledError, ConfigError, ImageInputError, Img3DError, ServerError
from ..progress import Phase, ProgressCallback
from . import protocol

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 30.0
EVENTS_READ_TIMEOUT_SECONDS = 60.0  # the server sends a keep-alive every 10 s
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0)
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


def normalise_url(url: str) -> str:
    """``host:port`` or a full URL → ``http(s)://host:port`` without a trailing slash."""
    text = (url or "").strip().rstrip("/")
    if not text:
        raise ConfigError("Give the server's address, e.g. http://gpu-box.local:8765.")
    if "://" not in text:
        text = "http://" + text
    scheme = text.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"The server address must start with http:// or https://, got {url!r}.")
    if text.endswith(protocol.API_PREFIX):
        text = text[: -len(protocol.API_PREFIX)]
    return text


def read_token(
    token: Optional[str] = None, token_file: Optional[str | Path] = None
) -> Optional[str]:
    """The token given, or the one in ``token_file``; None when neither."""
    if token:
        return token.strip()
    if token_file:
        path = Path(token_file).expanduser()
        try:
            return path.read_text(encoding="utf-8").strip() or None
        except OSError as error:
            raise ConfigError(f"Can't read the token file {path}: {error.strerror}.") from None
    return None


def _short_reason(error: BaseException) -> str:
    """The useful end of a requests/urllib3 error chain ("Connection refused")."""
    text = str(error)
    found = _ERRNO_TEXT.findall(text)
    if found:
        return found[-1].strip()
    for marker in ("Read timed out", "Connection aborted", "Connection reset", "Name or service"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:160] if text else type(error).__name__


class ServerClient:
    """HTTP calls to one server; each raises a typed error, never a requests exception."""

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        verify: Any = True,
        online: Optional[Callable[[], bool]] = None,
    ) -> None:
        import requests

        self.url = normalise_url(url)
        self.token = token
        self.timeout = timeout
        self.online = online
        self._requests = requests
        self.session = requests.Session()
        # Per request, not on the session: requests lets REQUESTS_CA_BUNDLE override a
        # session's verify, but not a request's. True keeps that variable's say.
        self.verify = verify
        self.session.headers["User-Agent"] = f"blender_img3d/{_version()}"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    # --- plumbing ----------------------------------------------------------------
    def is_online(self) -> bool:
        return self.online is None or bool(self.online())

    def _check_online(self) -> None:
        if not self.is_online():
            raise ServerError(
                "Online access is off (Blender Preferences > System > Network > Allow Online "
                "Access): turn it on to use the remote server."
            )

    def request(self, method: str, path: str, *, stream: bool = False, **kwargs: Any):
        """One call; a non-2xx answer becomes the typed error its JSON body names."""
        self._check_online()
        kwargs.setdefault("timeout", self.timeout)
        if self.verify is not True:
            kwargs.setdefault("verify", self.verify)
        exceptions = self._requests.exceptions
        try:
            response = self.session.request(method, self.url + path, stream=stream, **kwargs)
        except exceptions.SSLError as error:
            raise ServerError(
                f"TLS with {self.url} failed ({_short_reason(error)}): for a self-signed "
                "certificate, point REQUESTS_CA_BUNDLE at it."
            ) from None
        except exceptions.Timeout:
            raise ServerError(
                f"The server at {self.url} did not answer within {kwargs['timeout']} s."
            ) from None
        except exceptions.RequestException as error:
            raise ServerError(
                f"Can't reach the server at {self.url} ({_short_reason(error)}): is "
                "'python -m blender_img3d serve' running there, and is the address right?"
            ) from None
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def _error(self, response: Any) -> Img3DError:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        finally:
            response.close()
        if status == 401:
            error = ServerError(
                f"The server at {self.url} refused the token (401): use the token from its "
                "--token-file (add-on preferences, or generate --token-file FILE)."
            )
            error.status = status  # type: ignore[attr-defined]
            return error
        fallback = f"The server at {self.url} answered {status} {response.reason}."
        error = protocol.error_from_body(body, fallback)
        error.status = status  # type: ignore[attr-defined]  # lets callers tell HTTP from network
        return error

    # --- endpoints -----------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self.request("GET", protocol.HEALTH_PATH).json()

    def submit(self, request: Any) -> dict[str, Any]:
        """Upload a job for ``request``; the server's ``{"id", "position", "state"}``."""
        settings = protocol.settings_from_request(request)
        if request.image is None:
            body = {"prompt": request.prompt, "settings": settings}
            return self.request("POST", protocol.JOBS_PATH, json=body).json()
        name, payload = image_upload(request)
        try:
            files = {
                protocol.IMAGE_FIELD: (name, payload, "application/octet-stream"),
                protocol.SETTINGS_FIELD: (None, json.dumps(settings), "application/json"),
            }
            return self.request("POST", protocol.JOBS_PATH, files=files).json()
        finally:
            if hasattr(payload, "close"):
                payload.close()

    def status(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"{protocol.JOBS_PATH}/{job_id}").json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"{protocol.JOBS_PATH}/{job_id}").json()

    def events(self, job_id: str, after: Optional[int] = None) -> Iterator[dict[str, Any]]:
        """Status snapshots as the server sends them, until the job ends or the stream drops."""
        headers = {"Accept": "text/event-stream"}
        if after is not None:
            headers["Last-Event-ID"] = str(after)
        response = self.request(
            "GET",
            f"{protocol.JOBS_PATH}/{job_id}/events",
            stream=True,
            headers=headers,
            timeout=(self.timeout, EVENTS_READ_TIMEOUT_SECONDS),
        )
        exceptions = self._requests.exceptions
        try:
            buffer = ""
            data: list[str] = []
            for chunk in response.iter_content(chunk_size=None, decode_unicode=False):
                self._check_online()
                buffer += chunk.decode("utf-8")
                *lines, buffer = buffer.split("\n")
                for line in lines:
                    line = line.rstrip("\r")
                    if line.startswith("data:"):
                        data.append(line[5:].lstrip())
                    elif not line and data:
                        yield json.loads("\n".join(data))
                        data = []
        except (exceptions.RequestException, ValueError) as error:
            raise ServerError(
                f"Lost the connection to the server at {self.url} ({_short_reason(error)})."
            ) from None
        finally:
            response.close()

    def download_result(self, job_id: str, target: Any) -> None:
        """Stream the result archive of a finished job into the binary file ``target``."""
        response = self.request("GET", f"{protocol.JOBS_PATH}/{job_id}/result", stream=True)
        try:
            for chunk in response.iter_content(chunk_size=1 << 20):
                target.write(chunk)
        except self._requests.exceptions.RequestException as error:
            raise ServerError(
                f"The result download from {self.url} broke off ({_short_reason(error)})."
            ) from None
        finally:
            response.close()

    def close(self) -> None:
        self.session.close()


def _version() -> str:
    from ..version import __version__

    return __version__


def image_upload(request: Any) -> tuple[str, Any]:
    """``(file name, file object or bytes)`` for the request's image, whatever its kind.

    Files go as they are (the server runs the same checks on the same bytes);
    pixel arrays go as ``.npy`` so the server reads them exactly as a local
    run would; PIL images as PNG.
    """
    import numpy as np

    image = request.image
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise ImageInputError(f"No image file at {path}: check the path.")
        return path.name, open(path, "rb")  # noqa: SIM115 - closed by submit()
    if isinstance(image, (bytes, bytearray, memoryview)):
        return request.name or "image", bytes(image)
    if isinstance(image, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(image), allow_pickle=False)
        return f"{request.name or 'image'}.npy", buffer.getvalue()
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image
        buffer = io.BytesIO()
        plain = image if image.mode in ("L", "LA", "RGB", "RGBA") else image.convert("RGBA")
        plain.save(buffer, format="PNG")
        return f"{request.name or 'image'}.png", buffer.getvalue()
    raise ConfigError(f"Can't send an image of type {type(image).__name__} to the server.")


class RemoteBackend:
    """The backend seam over HTTP: a job on a ``serve`` GPU box, results written here."""

    name = "remote"

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        token_file: Optional[str | Path] = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        verify: Any = True,
        online: Optional[Callable[[], bool]] = None,
    ) -> None:
        self.client = ServerClient(
            url, read_token(token, token_file), timeout=timeout, verify=verify, online=online
        )

    @property
    def url(self) -> str:
        return self.client.url

    def health(self) -> dict[str, Any]:
        """The server's health (the preferences' "Test connection")."""
        return self.client.health()

    def submit(
        self,
        request: Any,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[threading.Event] = None,
    ) -> Any:
        request.validate()
        if cancel is not None and cancel.is_set():
            raise CancelledError()
        job_id = self.client.submit(request)["id"]
        log.info("job %s submitted to %s", job_id, self.url)
        try:
            final = self._follow(job_id, progress, cancel)
        except BaseException:
            self._cancel_quietly(job_id)
            raise
        if final["state"] == protocol.CANCELLED:
            raise CancelledError()
        if final["state"] == protocol.FAILED:
            raise protocol.error_from_body(
                {"error": final.get("error"), "type": final.get("error_type")},
                f"The job failed on the server at {self.url}.",
            )
        return self._fetch_result(job_id, request)

    def release(self) -> None:
        self.client.close()

    # --- following a job ------------------------------------------------------------
    def _follow(
        self, job_id: str, progress: Optional[ProgressCallback], cancel: Optional[threading.Event]
    ) -> dict[str, Any]:
        done = threading.Event()
        if cancel is not None:
            watcher = threading.Thread(
                target=self._cancel_when_set, args=(job_id, cancel, done), daemon=True
            )
            watcher.start()
        last_seq: Optional[int] = None
        last_progress: Optional[tuple] = None
        failures = 0
        try:
            while True:
                try:
                    for snapshot in self.client.events(job_id, after=last_seq):
                        failures = 0
                        last_seq = snapshot.get("seq", last_seq)
                        point = (snapshot.get("phase"), snapshot.get("step"), snapshot.get("total"))
                        if snapshot.get("state") == protocol.QUEUED:
                            point = (Phase.QUEUED, snapshot.get("position") or 0, 0)
                        if progress is not None and point[0] and point != last_progress:
                            progress(str(point[0]), int(point[1] or 0), int(point[2] or 0))
                            last_progress = point
                        if snapshot.get("state") in protocol.FINAL_STATES:
                            return snapshot
                    # the stream ended without a final state (server restarting): reconnect
                    raise ServerError(f"The server at {self.url} closed the event stream.")
                except ServerError as error:
                    answered = getattr(error, "status", None)  # None: the network, not the server
                    if answered is not None and answered < 500:
                        raise
                    if failures >= len(RECONNECT_DELAYS) or not self.client.is_online():
                        raise ServerError(
                            f"Lost job {job_id} on the server at {self.url}: {error}"
                        ) from None
                    time.sleep(RECONNECT_DELAYS[failures])
                    failures += 1
        finally:
            done.set()

    def _cancel_when_set(self, job_id: str, cancel: threading.Event, done: threading.Event) -> None:
        while not done.is_set():
            if cancel.wait(0.1):
                if not done.is_set():
                    self._cancel_quietly(job_id)
                return

    def _cancel_quietly(self, job_id: str) -> None:
        try:
            self.client.cancel(job_id)
        except Img3DError as error:
            log.warning("Could not cancel job %s on %s: %s", job_id, self.url, error)

    # --- the result --------------------------------------------------------------------
    def _fetch_result(self, job_id: str, request: Any) -> Any:
        with tempfile.TemporaryFile(prefix="img3d-result-") as archive:
            self.client.download_result(job_id, archive)
            archive.seek(0)
            try:
                with zipfile.ZipFile(archive) as zf:
                    return unpack_result(zf, request)
            except (zipfile.BadZipFile, KeyError, ValueError) as error:
                raise ServerError(
                    f"The result from {self.url} is damaged ({error}): generate again."
                ) from None


def unpack_result(zf: zipfile.ZipFile, request: Any) -> Any:
    """A Result from the archive, with the request's local output files written from it."""
    import numpy as np

    from ..exporters.atomic import atomic_write
    from ..pipeline import Result, output_paths, write_report
    from ..serialize import join_payloads

    document = json.loads(zf.read(protocol.ARCHIVE_DOCUMENT))
    files = {(entry["variant"], entry["output"]): entry["name"] for entry in document.pop("files")}
    companions = document.pop("companions", [])
    with np.load(io.BytesIO(zf.read(protocol.ARCHIVE_ARRAYS)), allow_pickle=False) as arrays:
        table: dict[str, Any] = {}
        for key in arrays.files:
            if key.startswith(protocol.BYTES_PREFIX):
                table[key[len(protocol.BYTES_PREFIX) :]] = arrays[key].tobytes()
            else:
                table[key] = arrays[key]
    if document.get("model_input") is not None and not _pil_available():
        document["model_input"] = None  # Blender without the add-on's packages: no preview
    result = Result.from_dict(join_payloads(document, table))
    result.outputs = []

    def write(path: Path, data: bytes) -> Path:
        with atomic_write(Path(path), "wb") as stream:
            stream.write(data)
        return Path(path)

    for variant, paths in enumerate(output_paths(request.outputs, len(result.meshes))):
        for wanted, path in enumerate(paths):
            result.outputs.append(write(path, zf.read(files[(variant, wanted)])))
    for entry in companions:  # e.g. an OBJ's .mtl, beside its output
        folder = Path(request.outputs[entry["output"]]).parent
        name = protocol.safe_filename(Path(entry["name"]).name, fallback="companion")
        write(folder / name, zf.read(entry["name"]))
    if request.latents_out is not None:
        write(request.latents_out, zf.read(protocol.ARCHIVE_LATENTS))
    if request.save_input is not None:
        write(request.save_input, zf.read(protocol.ARCHIVE_INPUT))
    if request.report_path is not None:
        write_report(result, request.report_path)
    return result


def _pil_available() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True
