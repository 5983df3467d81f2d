"""Reading a job's request body as it streams in: size limits on the way, files only in the job.

``POST /v1/jobs`` takes multipart (a file field ``image`` and a text field
``settings``) or JSON (``{"prompt": ..., "settings": {...}}``). Nothing is
spooled to a temporary folder: the image part is written straight into
``<job folder>/input/`` while the bytes are counted, and the request fails
with :class:`UploadTooLargeError` the moment the count passes the limit. The
client's file name is reduced to a plain base name (no folders, no ``..``,
no control or path characters, no device names) and used only as the name
of that file inside the job's own folder, so the job's report and objects are
labelled as a local run of the same file would be.

Parsing is strict, and every failure is a 4xx that names the field: a
multipart body must end with its closing boundary (a body cut inside
``settings`` is a 400, never a job with default settings); JSON may nest at
most ``MAX_JSON_DEPTH`` deep, hold no lone UTF-16 surrogate and no integer
beyond 64 bits; an uploaded image's declared size (a raster header, a
``.npy`` header's shape) is checked before any pixel is decoded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any, AsyncIterator, Optional

from ..errors import ConfigError, ImageInputError, Img3DError
from ..settings import MAX_PIXELS
from . import protocol
from .config import MAX_JSON_BYTES, MAX_SETTINGS_BYTES

MULTIPART_OVERHEAD = 16 * 1024  # boundaries and part headers around the image and settings
DRAIN_FACTOR = 2  # read (and drop) up to this many times the limit so the client sees the 413
NPY_MAGIC = b"\x93NUMPY"
MAX_JSON_DEPTH = 16  # settings nest two deep; anything deeper is not a job
MAX_JSON_INT = 2**63  # seeds and counts fit in 64 bits
MAX_NPY_HEADER = 64 * 1024


class BadRequestError(Img3DError):
    """The request body isn't what the route takes (HTTP 400)."""


class UnsupportedMediaError(Img3DError):
    """Neither multipart nor JSON (HTTP 415)."""


class UploadTooLargeError(Img3DError):
    """The body passed the server's upload limit (HTTP 413)."""


def too_large_message(limit: int) -> str:
    return (
        f"The upload is larger than this server's limit of {limit / 2**20:.1f} MB: send a "
        "smaller image, or start the server with a larger --max-upload-mb."
    )


def json_too_large_message(limit: int = MAX_JSON_BYTES) -> str:
    return (
        f"The JSON body is larger than {limit // 1024} KB, the most a prompt job takes (a "
        "prompt and its settings): shorten the prompt. --max-upload-mb is for images only."
    )


async def limited_chunks(
    request: Any, limit: int, message: Optional[str] = None
) -> AsyncIterator[bytes]:
    """The body's chunks; :class:`UploadTooLargeError` once more than ``limit`` bytes came.

    A body declared (Content-Length) or found too large is still read and
    dropped up to ``DRAIN_FACTOR`` times the limit before the error, because a
    client that is still sending when the connection closes may never read
    the 413; anything larger is cut off at once.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_size = int(declared)
        except ValueError:
            raise BadRequestError("The Content-Length header is not a number.") from None
        if declared_size > limit * DRAIN_FACTOR:
            raise UploadTooLargeError(message or too_large_message(limit))
    received = 0
    over = False
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            over = True
            if received > limit * DRAIN_FACTOR:
                break
            continue
        if chunk:
            yield chunk
    if over:
        raise UploadTooLargeError(message or too_large_message(limit))


class _MultipartJob:
    """python-multipart callbacks collecting the ``settings`` text and writing ``image``."""

    def __init__(self, input_dir: Path, image_limit: int) -> None:
        self.input_dir = input_dir
        self.image_limit = image_limit
        self.image_path: Optional[Path] = None
        self.settings_text: Optional[bytes] = None
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._part: Optional[str] = None
        self._file: Optional[IO[bytes]] = None
        self._buffer = bytearray()
        self._image_bytes = 0
        self.error: Optional[Img3DError] = None
        self.complete = False  # the closing boundary was read

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }

    def on_end(self) -> None:
        self.complete = True

    def unfinished(self) -> Optional[str]:
        """Why the body is incomplete (the part it ends in), or None when it is whole."""
        if self._part is not None:
            return f"The multipart body ends inside the '{self._part}' field: send it whole."
        if not self.complete:
            return "The multipart body has no closing boundary: send it whole."
        return None

    def on_part_begin(self) -> None:
        self._headers, self._part, self._buffer = {}, None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _kind, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name == protocol.IMAGE_FIELD:
            if self.image_path is not None:
                raise BadRequestError("Send one image per job (one 'image' field).")
            raw_name = params.get(b"filename", b"").decode("utf-8", "replace")
            self.input_dir.mkdir(exist_ok=True)
            path = self.input_dir / protocol.safe_filename(raw_name)
            if path.resolve().parent != self.input_dir.resolve():  # belt and braces
                path = self.input_dir / "image"
            self.image_path = path
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            self._file = os.fdopen(os.open(path, flags, 0o600), "wb")
        elif name == protocol.SETTINGS_FIELD:
            if self.settings_text is not None:
                raise BadRequestError("Send one 'settings' field per job.")
        else:
            raise BadRequestError(
                f"Unknown form field {name!r}: a job takes a file field "
                f"'{protocol.IMAGE_FIELD}' and a text field '{protocol.SETTINGS_FIELD}'."
            )
        self._part = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        if self._part == protocol.IMAGE_FIELD:
            self._image_bytes += size
            if self._image_bytes > self.image_limit:
                raise UploadTooLargeError(too_large_message(self.image_limit))
            assert self._file is not None
            self._file.write(data[start:end])
        else:
            self._buffer += data[start:end]
            if len(self._buffer) > MAX_SETTINGS_BYTES:
                raise UploadTooLargeError(
                    f"The 'settings' field is larger than {MAX_SETTINGS_BYTES // 1024} KB."
                )

    def on_part_end(self) -> None:
        if self._part == protocol.IMAGE_FIELD and self._file is not None:
            self._file.close()
            self._file = None
        elif self._part == protocol.SETTINGS_FIELD:
            self.settings_text = bytes(self._buffer)
        self._part = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def read_job_body(
    request: Any, folder: Path, max_upload_bytes: int
) -> tuple[Optional[str], Optional[Path], Any]:
    """``(prompt, image_path, settings)`` from a job request; the image saved under ``folder``."""
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        image_path, settings = await _read_multipart(request, folder, max_upload_bytes)
        if image_path is None:
            raise ConfigError(
                f"A multipart job needs a file field '{protocol.IMAGE_FIELD}'; "
                'send prompt jobs as JSON: {"prompt": ..., "settings": {...}}.'
            )
        if "prompt" in (settings or {}):
            raise ConfigError("Give either an image or a prompt, not both.")
        return None, image_path, settings
    if kind == "application/json":
        chunks = limited_chunks(request, MAX_JSON_BYTES, json_too_large_message())
        body = b"".join([chunk async for chunk in chunks])
        data = _parse_json(body, "The request body")
        if not isinstance(data, dict):
            raise BadRequestError(
                'The JSON body must be an object: {"prompt": ..., "settings": {...}}.'
            )
        unknown = sorted(set(data) - {"prompt", "settings"})
        if unknown:
            hint = " (send images as multipart)" if "image" in unknown else ""
            raise ConfigError(
                f"Unknown field(s) {', '.join(unknown)} in the job{hint}: "
                'a JSON job is {"prompt": ..., "settings": {...}}.'
            )
        prompt = data.get("prompt")
        if not isinstance(prompt, str):
            raise ConfigError("A JSON job needs a text 'prompt', e.g. \"a red chair\".")
        return prompt, None, data.get("settings")
    raise UnsupportedMediaError(
        "Send a job as multipart/form-data (fields 'image' and 'settings') or as JSON "
        f'({{"prompt": ..., "settings": {{...}}}}), not {kind or "no content type"}.'
    )


async def _read_multipart(request: Any, folder: Path, limit: int) -> tuple[Optional[Path], Any]:
    from python_multipart.multipart import MultipartParser, parse_options_header

    _kind, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequestError("The multipart body has no boundary.")
    collector = _MultipartJob(folder / "input", limit)
    parser = MultipartParser(boundary, collector.callbacks())
    error: Optional[Img3DError] = None
    try:
        body_limit = limit + MAX_SETTINGS_BYTES + MULTIPART_OVERHEAD
        async for chunk in limited_chunks(request, body_limit):
            if error is None:  # after an error the rest is read and dropped (see limited_chunks)
                error = _feed(parser, chunk)
        if error is None:
            error = _feed(parser, None)
        if error is None and collector.unfinished():
            error = BadRequestError(collector.unfinished())
    finally:
        collector.close()
    if error is not None:
        raise error
    settings = None
    if collector.settings_text is not None:
        settings = _parse_json(collector.settings_text, "The 'settings' field")
    return collector.image_path, settings


def image_source(path: Path) -> Any:
    """The uploaded image as the pipeline takes it: the file, or a ``.npy`` pixel array.

    Clients send pixel arrays (a Blender image's, say) as ``.npy`` so that the
    server reads exactly the array a local run would; ``allow_pickle=False``
    keeps that a plain array.
    """
    with open(path, "rb") as stream:
        magic = stream.read(6)
    if magic != NPY_MAGIC:
        return path
    import numpy as np

    try:
        pixels = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise ImageInputError(f"The uploaded pixel array can't be read: {error}.") from None
    if pixels.dtype.kind not in "uif" or pixels.ndim not in (1, 2, 3):
        raise ImageInputError(
            f"The uploaded pixel array must be numbers of 1 to 3 dimensions, got "
            f"{pixels.dtype} with shape {pixels.shape}."
        )
    return pixels


def _feed(parser: Any, chunk: Optional[bytes]) -> Optional[Img3DError]:
    """Feed (or with None, finish) the parser; the error it raised, as a typed error."""
    try:
        if chunk is None:
            parser.finalize()
        else:
            parser.write(chunk)
    except Img3DError as error:
        return error
    except Exception as error:  # python-multipart's own parse errors
        return BadRequestError(f"The multipart body can't be read: {error}.")
    return None


def _parse_json(data: bytes, what: str) -> Any:
    """Parsed JSON that the rest of the server can trust (see the module docstring)."""
    try:
        value = json.loads(data.decode("utf-8"), parse_int=_bounded_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequestError(f"{what} is not valid JSON: {error}.") from None
    except RecursionError:
        raise BadRequestError(f"{what} nests deeper than {MAX_JSON_DEPTH} levels.") from None
    except ValueError as error:  # _bounded_int's refusal
        raise BadRequestError(f"{what}: {error}") from None
    _check_json(value, what, "", 0)
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(int(text)) > MAX_JSON_INT:
        raise ValueError(f"the integer {text[:24]}{'...' if len(text) > 24 else ''} is too large.")
    return int(text)


def _check_json(value: Any, what: str, where: str, depth: int) -> None:
    """Depth and text checks on parsed JSON; the error names the field (``where``)."""
    if depth > MAX_JSON_DEPTH:
        raise BadRequestError(f"{what} nests deeper than {MAX_JSON_DEPTH} levels at {where!r}.")
    if isinstance(value, str):
        _check_text(value, what, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, what, where or "the top level")
            _check_json(item, what, f"{where}.{key}" if where else key, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, what, f"{where}[{index}]", depth + 1)


def _check_text(text: str, what: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequestError(
            f"{what}: {where!r} holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is "
            "not text: send valid Unicode."
        ) from None


def check_image_header(path: Path) -> None:
    """Refuse an upload whose header declares more pixels than the server takes, undecoded.

    A ``.npy`` header's shape and dtype must describe at most ``MAX_PIXELS``
    pixels of up to 4 channels and no more bytes than the file holds; a raster
    image's declared width × height is checked the same way (Pillow reads only
    the header here). Anything the header can't tell is left to the core's
    full checks, which run after this with a bounded number of decodes at once.
    """
    from ..images.limits import check_pixel_count

    with open(path, "rb") as stream:
        if stream.read(len(NPY_MAGIC)) == NPY_MAGIC:
            stream.seek(0)
            _check_npy_header(stream, os.fstat(stream.fileno()).st_size)
            return
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 - not an image Pillow knows: the core's checks name it
        return
    check_pixel_count(width, height, MAX_PIXELS)


def _check_npy_header(stream: IO[bytes], size: int) -> None:
    import numpy as np
    from numpy.lib import format as npy

    where = f"The '{protocol.IMAGE_FIELD}' field (a .npy pixel array)"
    try:
        version = npy.read_magic(stream)
        reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _fortran, dtype = reader(stream, max_header_size=MAX_NPY_HEADER)
    except (ValueError, OSError, SyntaxError, TypeError) as error:
        raise ImageInputError(f"{where} has an unreadable header: {error}.") from None
    if dtype.kind not in "uif" or dtype.hasobject or not 1 <= len(shape) <= 3:
        raise ImageInputError(
            f"{where} must hold numbers of 1 to 3 dimensions, got {dtype} with shape {shape}."
        )
    pixels = int(np.prod(shape[:2], dtype=object)) if len(shape) >= 2 else int(shape[0])
    channels = int(shape[2]) if len(shape) == 3 else 1
    if pixels > MAX_PIXELS or channels > 4:
        raise ImageInputError(
            f"{where} declares shape {shape}: at most {MAX_PIXELS:,} pixels of 1 to 4 "
            "channels are taken; downscale it first."
        )
    if pixels * channels * dtype.itemsize > size:
        raise ImageInputError(
            f"{where} declares shape {shape} but holds only {size:,} bytes: it is truncated."
        )
