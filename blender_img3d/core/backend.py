"""The one seam every entry point generates through: ``backend.submit(request, progress, cancel)``.

The panel's worker thread, the headless operator, the Python API, the CLI, a
farm worker and the GPU server all hold a :class:`Backend` and call ``submit``;
none of them calls ``pipeline.run`` directly. Where the work happens is the
backend's business:

- ``local`` (:class:`LocalBackend`): ``pipeline.run`` in this process, owning
  the policy of keeping the model warm between runs or freeing it after each.
- ``remote`` (:class:`~.server.client.RemoteBackend`): the job runs on a GPU
  server started with ``serve``; the files and the Result come back here.
- other backends register a factory under a name with :func:`register_backend`;
  callers pick one with :func:`get_backend`.

A backend takes a validated-on-entry :class:`~.settings.Request` and returns a
:class:`~.pipeline.Result`; it raises the core's typed errors
(:class:`~.errors.CancelledError` when ``cancel`` is set) and reports progress
through the same ``(update)`` callback the pipeline uses.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from .errors import ConfigError
from .progress import ProgressCallback

if TYPE_CHECKING:
    from .pipeline import Result
    from .settings import Request


class Backend(Protocol):
    """Anything that turns a :class:`Request` into a :class:`Result`."""

    name: str

    def submit(
        self,
        request: "Request",
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[threading.Event] = None,
    ) -> "Result":
        """Run one generation to the end; raise a typed ``Img3DError`` on failure."""
        ...

    def release(self) -> None:
        """Free whatever the backend keeps warm (models, connections)."""
        ...


class LocalBackend:
    """``pipeline.run`` in this process.

    ``keep_model_loaded`` is the "Keep model loaded" preference: when false, the
    model is released after every run (success, failure or cancel) so the memory
    goes back to Blender; when true it stays cached for the next click.
    """

    name = "local"

    def __init__(self, keep_model_loaded: bool = True) -> None:
        self.keep_model_loaded = keep_model_loaded

    def submit(
        self,
        request: "Request",
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[threading.Event] = None,
    ) -> "Result":
        from . import pipeline

        try:
            return pipeline.run(request, progress=progress, cancel=cancel)
        finally:
            if not self.keep_model_loaded:
                self.release()

    def release(self) -> None:
        from .shap_e.loading import release

        release()


def _remote_backend(**options: Any) -> Backend:
    """A job on a GPU server (``serve``); options as :class:`~.server.client.RemoteBackend`."""
    from .server.client import RemoteBackend

    return RemoteBackend(**options)


BackendFactory = Callable[..., Backend]
_FACTORIES: dict[str, BackendFactory] = {"local": LocalBackend, "remote": _remote_backend}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``get_backend(name, **options)`` build backends with ``factory(**options)``."""
    _FACTORIES[name] = factory


def backend_names() -> tuple[str, ...]:
    return tuple(_FACTORIES)


def get_backend(name: str = "local", **options: Any) -> Backend:
    """A backend by name; an unknown name is a :class:`ConfigError` listing the known ones."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ConfigError(
            f"Unknown backend {name!r}: use one of {', '.join(backend_names())}."
        ) from None
    return factory(**options)
