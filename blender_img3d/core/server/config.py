"""The server's settings, its token, and the rule that keeps it off the network by default.

A server bound to loopback (127.0.0.1, ::1, localhost) serves only this
machine and may run without a token. Any other address exposes it to the
LAN, so :func:`check_bind` refuses to start unless a token is set; with a
token every endpoint but ``/v1/health`` needs ``Authorization: Bearer``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
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
    viewer_script: Optional[Path] = None  # None: where vendor_install.py --dev puts it (web.py)

    def validate(self) -> None:
        """Refuse impossible numbers and an exposed bind without a token, before any work."""
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, got {self.port}.")
        if self.max_queue < 1:
            raise ConfigError(f"--max-queue must be 1 or more, got {self.max_queue}.")
        if self.max_upload_bytes < 1024:
            raise ConfigError("--max-upload-mb must allow at least 1 KB.")
        if self.keep_results_seconds <= 0:
            raise ConfigError("--keep-results must be a positive number of minutes.")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both --tls-cert and --tls-key.")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"No TLS file at {path}: check the path.")
        check_bind(self.host, self.token)

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


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
