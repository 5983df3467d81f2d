"""The server's settings, its token, and the rule that keeps it off the network by default.

A server bound to loopback (127.0.0.1, ::1, localhost) serves only this
machine and may run without a token. Any other address exposes it to the
LAN, so :func:`check_bind` refuses to start unless a token is set; with a
token every endpoint needs ``Authorization: Bearer`` (``/v1/health`` answers
without one, but says only "ok" and the version).

Tokens come from ``--token-file`` (one token: one client, named ``default``)
or ``--tokens-file`` (one client per line, ``name token``; see
:func:`read_tokens_file`). Jobs belong to the client whose token made them.

:meth:`ServerConfig.validate` refuses every value ``serve`` can't honour
(NaN, infinities, a TLS key that doesn't match its certificate) with
:class:`OptionError` before anything is loaded, so a supervisor never sees a
"Ready" line from a server that is about to die.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import ConfigError
from ..settings import MAX_FILE_BYTES

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_QUEUE = 8
DEFAULT_MAX_UPLOAD_MB = MAX_FILE_BYTES / 2**20
DEFAULT_KEEP_RESULTS_MINUTES = 60.0
DEFAULT_CLIENT = "default"  # the one client of a single --token-file
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0  # a request's line and headers must arrive within this
DEFAULT_BODY_IDLE_SECONDS = 30.0  # a body that stops arriving for this long is dropped
KEEP_ALIVE_SECONDS = 5  # an idle kept-alive connection is closed after this (uvicorn's own)
MAX_CLIENT_NAME = 64
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,%d}$" % MAX_CLIENT_NAME)
MIN_TOKEN_LENGTH = 16
MAX_SETTINGS_BYTES = 64 * 1024  # a settings object is a few hundred bytes
MAX_JSON_BYTES = 256 * 1024  # a prompt job's whole JSON body
TOKEN_ADVICE = (
    'make one with: python -c "import secrets; print(secrets.token_urlsafe(32))" > token.txt'
)


@dataclass
class ServerConfig:
    """Everything ``serve`` decides; the model fields replace a client's (see ``protocol``)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: Optional[str] = None
    max_queue: int = DEFAULT_MAX_QUEUE
    max_upload_bytes: int = MAX_FILE_BYTES
    keep_results_seconds: float = DEFAULT_KEEP_RESULTS_MINUTES * 60
    jobs_dir: Optional[Path] = None  # None: a temporary folder, removed at shutdown
    image_model: Optional[str] = None  # None: the hub id for images (settings.IMAGE_MODEL_ID)
    text_model: Optional[str] = None
    revision: Optional[str] = None
    cache_dir: Optional[str] = None
    allow_download: bool = False
    device: str = "auto"
    dtype: str = "auto"
    warm_modes: tuple[str, ...] = ("image", "text")
    tls_cert: Optional[Path] = None
    tls_key: Optional[Path] = None
    sweep_interval_seconds: float = 30.0
    # name -> token for several clients (--tokens-file); ``token`` alone is one client
    tokens: Optional[dict[str, str]] = None
    max_connections: Optional[int] = None  # None: from the descriptor limit (see limits)
    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    body_idle_seconds: float = DEFAULT_BODY_IDLE_SECONDS
    viewer_script: Optional[Path] = None  # None: where vendor_install.py --dev puts it (web.py)

    def validate(self) -> None:
        """Refuse impossible numbers, bad TLS files and an exposed bind without a token."""
        if not 0 <= self.port <= 65535:
            raise OptionError(f"--port must be between 0 and 65535, got {self.port}.")
        if self.max_queue < 1:
            raise OptionError(f"--max-queue must be 1 or more, got {self.max_queue}.")
        if self.max_upload_bytes < 1024:
            raise OptionError("--max-upload-mb must allow at least 1 KB.")
        check_finite("--keep-results", self.keep_results_seconds / 60, "minutes")
        check_finite("--header-timeout", self.header_timeout_seconds, "seconds")
        check_finite("--body-timeout", self.body_idle_seconds, "seconds")
        if self.max_connections is not None and self.max_connections < 16:
            raise OptionError(f"--max-connections must be 16 or more, got {self.max_connections}.")
        if self.token and self.tokens:
            raise OptionError("Give --token-file or --tokens-file, not both.")
        check_tls_files(self.tls_cert, self.tls_key)
        check_bind(self.host, next(iter(self.clients.values()), None))

    @property
    def clients(self) -> dict[str, str]:
        """Client name -> token; empty when the server runs without a token."""
        if self.tokens:
            return dict(self.tokens)
        return {DEFAULT_CLIENT: self.token} if self.token else {}

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


class OptionError(ConfigError):
    """An option of ``serve`` has a value it can't run with (exit code 2, like argparse's)."""


def check_finite(option: str, value: float, unit: str) -> float:
    """``value`` if it is a positive finite number; NaN and infinity would never expire."""
    if not math.isfinite(value) or value <= 0:
        raise OptionError(f"{option} must be a positive number of {unit}, got {value:g}.")
    return value


def upload_bytes(megabytes: float) -> int:
    """``--max-upload-mb`` in bytes; NaN, infinity and absurd sizes are an OptionError."""
    if not math.isfinite(megabytes) or not 0 < megabytes <= 2**20:
        raise OptionError(
            f"--max-upload-mb must be a number of megabytes between 0 and 1048576, "
            f"got {megabytes:g}."
        )
    return int(megabytes * 2**20)


def check_tls_files(cert: Optional[Path], key: Optional[Path]) -> None:
    """Load the certificate and key as the server will, so a bad pair fails before Ready."""
    if (cert is None) != (key is None):
        raise OptionError("TLS needs both --tls-cert and --tls-key.")
    if cert is None or key is None:
        return
    for path in (cert, key):
        if not Path(path).is_file():
            raise OptionError(f"No TLS file at {path}: check the path.")
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as error:
        reason = (error.reason or str(error)).replace("_", " ").lower()
        raise OptionError(
            f"The TLS files {cert} and {key} can't be used ({reason}): give a PEM certificate "
            "and the private key it was made with."
        ) from None
    except OSError as error:
        raise OptionError(f"Can't read the TLS files: {error.strerror or error}.") from None


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (the name ``localhost`` included)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to a LAN address


def check_bind(host: str, token: Optional[str]) -> None:
    """Refuse to serve beyond this machine without a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"Refusing to listen on {host} without a token: anyone on the network could use "
            f"this GPU. Pass --token-file FILE ({TOKEN_ADVICE}), or keep the default "
            f"--host {DEFAULT_HOST}."
        )


def read_token_file(path: Path | str) -> str:
    """The token in ``path`` (surrounding whitespace ignored); a short or missing one is refused."""
    path = Path(path).expanduser()
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"No token file at {path}: {TOKEN_ADVICE}.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"Can't read the token file {path}: {error}.") from None
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise ConfigError(
            f"The token in {path} must be one word of at least {MIN_TOKEN_LENGTH} characters; "
            f"{TOKEN_ADVICE}."
        )
    if not token.isascii() or not token.isprintable():
        raise ConfigError(f"The token in {path} must be printable ASCII; {TOKEN_ADVICE}.")
    _warn_if_readable_by_others(path)
    return token


def _warn_if_readable_by_others(path: Path) -> None:
    if os.name != "posix":
        return
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("The token file %s is readable by other users: chmod 600 it.", path)


def read_tokens_file(path: Path | str) -> dict[str, str]:
    """Client name -> token from ``path``: one ``name token`` pair per line.

    Blank lines and lines starting with ``#`` are skipped. Names are letters,
    digits and ``._-``; tokens follow :func:`read_token_file`'s rules, and no
    name or token may appear twice (two clients with one token would share jobs).
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"No tokens file at {path}: write one 'name token' line per client."
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"Can't read the tokens file {path}: {error}.") from None
    tokens: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"{path} line {number}"
        if len(parts) != 2:
            raise ConfigError(f"{where}: write 'name token' (two words), e.g. 'anna {'x' * 8}...'.")
        name, token = parts
        if not _CLIENT_NAME.match(name):
            raise ConfigError(
                f"{where}: a client name is 1 to {MAX_CLIENT_NAME} letters, digits or ._-."
            )
        if len(token) < MIN_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
            raise ConfigError(
                f"{where}: the token must be printable ASCII of at least {MIN_TOKEN_LENGTH} "
                f"characters; {TOKEN_ADVICE}."
            )
        if name in tokens:
            raise ConfigError(f"{where}: the client {name!r} is named twice.")
        if token in tokens.values():
            raise ConfigError(f"{where}: {name!r} has another client's token; give each its own.")
        tokens[name] = token
    if not tokens:
        raise ConfigError(f"The tokens file {path} names no client: add 'name token' lines.")
    _warn_if_readable_by_others(path)
    return tokens
