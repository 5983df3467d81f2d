"""Who is asking: bearer tokens → client names, compared in constant time.

A server without a token (loopback only, see ``config.check_bind``) treats
every caller as one anonymous client. With tokens, each request's
``Authorization: Bearer <token>`` is compared against every client's token
with :func:`hmac.compare_digest`, all of them every time, so neither the
answer's timing nor an early exit tells a caller how much of a token it got
right or which client's it resembles.

:func:`auth_dependency` makes the FastAPI dependency the job routes (and any
other route that must not answer strangers) declare; it returns the
:class:`Client`, whose ``name`` owns the jobs it makes.
"""

# No "from __future__ import annotations": FastAPI reads the dependency's Request annotation.
import hmac
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..errors import Img3DError

ANONYMOUS = ""  # the one client of a server without tokens


class AuthError(Img3DError):
    """No or wrong bearer token (HTTP 401)."""


@dataclass(frozen=True)
class Client:
    """The caller a token identified; ``name`` is ``ANONYMOUS`` on a server without tokens."""

    name: str


AUTH_ADVICE = (
    "Missing or wrong token: send 'Authorization: Bearer <token>' with your token from the "
    "server's --token-file or --tokens-file."
)


class Authenticator:
    """Client name → token; ``identify`` turns an Authorization header into a Client."""

    def __init__(self, clients: dict[str, str]) -> None:
        self._tokens = [(name, token.encode("ascii")) for name, token in clients.items()]

    @property
    def required(self) -> bool:
        return bool(self._tokens)

    def identify(self, authorization: Optional[str]) -> Optional[Client]:
        """The client whose token the header carries; None when it carries none that matches."""
        if not self._tokens:
            return Client(ANONYMOUS)
        scheme, _, given = (authorization or "").partition(" ")
        presented = given.strip().encode("utf-8", "replace")
        found: Optional[str] = None
        for name, token in self._tokens:  # no early exit: every token is compared
            if hmac.compare_digest(presented, token) and found is None:
                found = name
        if scheme.lower() != "bearer" or found is None:
            return None
        return Client(found)

    def require(self, authorization: Optional[str]) -> Client:
        client = self.identify(authorization)
        if client is None:
            raise AuthError(AUTH_ADVICE)
        return client


def auth_dependency(authenticator: Authenticator) -> Callable[..., Any]:
    """A FastAPI dependency: the request's :class:`Client`, or AuthError (401) before the body."""
    from fastapi import Request

    def authenticated_client(request: Request) -> Client:
        return authenticator.require(request.headers.get("authorization"))

    return authenticated_client
