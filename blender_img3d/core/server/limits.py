"""Connection limits that keep ``serve`` answering when strangers on the LAN hold sockets open.

Without a token a caller can't start a job, but it can still open TCP
connections and send half a request. uvicorn (0.54) times out only an idle
kept-alive connection: a request line and headers that never finish, or a
body that stops arriving, hold their socket for ever, and about a thousand of
them exhaust the process's file descriptors (``accept()`` then fails in a
loop and health stops answering). Three measures close that:

- the descriptor limit is raised to its hard ceiling at start-up, and the
  number of open connections is capped well below it (``connection_cap``);
- :class:`GuardedH11Protocol` (uvicorn's h11 protocol, subclassed) gives every
  connection a deadline for its request line and headers (counted from the
  connection or the previous response, not reset by each trickled byte) and
  drops a body that stalls, unless it is the server that stopped reading it;
- at the cap a new connection doesn't wait or fail: the oldest connection
  that is *waiting for a request* (half-sent headers, idle keep-alive) is
  dropped to make room, so a request that arrives whole is served, and only a
  connection that has a request in progress is never shed.

Headers are also capped at ``MAX_HEADER_BYTES`` (h11's incomplete-event limit).
The subclass uses uvicorn's ``H11Protocol`` attributes (``conn``, ``cycle``,
``flow``, ``connections``), which is why uvicorn is pinned (core/system/requirements.py);
``tests/reliability/test_server_hardening.py`` fails if an upgrade changes them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Optional

from .config import KEEP_ALIVE_SECONDS, ServerConfig

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 4096
FD_RESERVE = 256  # descriptors kept for model files, uploads, logs, threads and torch
FD_CEILING = 65536  # how far the soft descriptor limit is raised at most
MAX_HEADER_BYTES = 16 * 1024  # request line + headers; a job's headers are a few hundred bytes


def raise_open_file_limit(ceiling: int = FD_CEILING) -> int:
    """Raise the soft descriptor limit towards the hard one; the soft limit in force after."""
    try:
        import resource
    except ImportError:  # Windows: no RLIMIT_NOFILE; the C runtime's own limit applies
        return 8192
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as error:
            log.warning("Can't raise the open-file limit from %d: %s", soft, error)
    return ceiling if soft == resource.RLIM_INFINITY else soft


def connection_cap(config: ServerConfig, open_file_limit: int) -> int:
    """How many connections may be open at once: below the descriptor limit, always."""
    room = max(16, open_file_limit - FD_RESERVE)
    wanted = config.max_connections or DEFAULT_MAX_CONNECTIONS
    if wanted > room:
        log.warning(
            "--max-connections %d is more than the open-file limit allows; using %d "
            "(raise 'ulimit -n' for more).",
            wanted,
            room,
        )
    return min(wanted, room)


def guarded_protocol(config: ServerConfig, max_connections: int) -> type:
    """uvicorn's h11 protocol with this server's deadlines and connection cap."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    header_timeout = config.header_timeout_seconds
    body_idle = config.body_idle_seconds
    # Connections waiting for a request, oldest first: shedding at the cap is O(1), so a
    # flood of new connections can't make each accept scan thousands of others.
    waiting: OrderedDict[Any, None] = OrderedDict()

    class GuardedH11Protocol(H11Protocol):
        """One connection; see the module docstring for the three rules it adds."""

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            self._deadline: Optional[Any] = None
            super().connection_made(transport)
            waiting[self] = None
            if len(self.connections) > max_connections:
                self._make_room()
            if not self.transport.is_closing():
                self._arm(header_timeout)

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._disarm()
            waiting.pop(self, None)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.transport.is_closing():
                self._disarm()
            elif self.conn.their_state is h11.SEND_BODY:
                waiting.pop(self, None)
                self._arm(body_idle)  # an idle limit: each chunk earns more time
            elif self.conn.their_state is not h11.IDLE:
                waiting.pop(self, None)
                self._disarm()  # the whole request is in; the app's time is its own
            # IDLE: the header deadline keeps running from the connection's start

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                if self.waiting_for_request():
                    waiting[self] = None
                    waiting.move_to_end(self)  # idle from now: the newest waiting one
                self._arm(header_timeout)  # the next request's headers get the same deadline

        # --- the rules -------------------------------------------------------------
        def waiting_for_request(self) -> bool:
            """No request in progress: headers not complete yet, or an idle keep-alive."""
            cycle = self.cycle
            return (cycle is None or cycle.response_complete) and self.conn.their_state in (
                h11.IDLE,
                h11.DONE,
            )

        def _make_room(self) -> None:
            """Close the connection that has waited longest for a request (else this one)."""
            while waiting:
                oldest = next(iter(waiting))
                if oldest is self:  # the newest is the oldest: nothing else is waiting
                    break
                if oldest.transport.is_closing() or not oldest.waiting_for_request():
                    waiting.pop(oldest)  # stale: it has moved on
                    continue
                oldest._drop("the server is at its connection limit")
                return
            self._drop("the server is at its connection limit and every connection is busy")

        def _drop(self, why: str) -> None:
            log.debug("closing a connection from %s: %s", self.client, why)
            self._disarm()
            waiting.pop(self, None)
            self.connections.discard(self)  # counted out now, not when the loop gets to it
            self.transport.abort()

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._on_deadline)

        def _disarm(self) -> None:
            deadline = getattr(self, "_deadline", None)
            if deadline is not None:
                deadline.cancel()
                self._deadline = None

        def _on_deadline(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self.waiting_for_request():
                self._drop("its request line and headers did not arrive in time")
            elif self.conn.their_state is h11.SEND_BODY:
                if self.flow.read_paused and not (self.cycle and self.cycle.response_complete):
                    self._arm(body_idle)  # the server stopped reading, not the client sending
                else:
                    self._drop("its body stopped arriving")

    return GuardedH11Protocol


def uvicorn_options(config: ServerConfig) -> dict[str, Any]:
    """The uvicorn.Config keywords that bound connections (see the module docstring)."""
    cap = connection_cap(config, raise_open_file_limit())
    log.info("at most %d connections at once", cap)
    return {
        "http": guarded_protocol(config, cap),
        "limit_concurrency": cap + 1,  # requests beyond the cap get 503 (never reached: shed)
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "backlog": min(2048, cap),
    }
