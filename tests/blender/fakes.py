"""Stand-ins the Blender tests share."""

from __future__ import annotations


class FakeBackend:
    """A ``core.backend`` backend whose ``submit`` runs ``work(request, progress, cancel)``."""

    name = "fake"

    def __init__(self, work) -> None:
        self.work = work

    def submit(self, request, progress=None, cancel=None):
        return self.work(request, progress, cancel)

    def release(self) -> None:
        pass
