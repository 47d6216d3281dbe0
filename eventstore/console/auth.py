"""The console's token: a bearer header, or a session cookie set from ``?token=`` once.

Only `/healthz` is open. A request with the right ``?token=`` is redirected
to the same address without it, with an `HttpOnly`, `SameSite=Strict`
cookie, so the token leaves the address bar and the history. The cookie
holds a digest of the token, not the token. Every comparison takes
constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Final

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, RedirectResponse, Response

if TYPE_CHECKING:
    from starlette.datastructures import URL
    from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS: Final = frozenset({"/healthz"})
COOKIE: Final = "eventstore_console"
TOKEN_PARAMETER: Final = "token"  # noqa: S105 - a parameter's name


def _session_value(token: str) -> str:
    return hmac.new(
        token.encode(), b"eventstore console session", hashlib.sha256
    ).hexdigest()


class TokenGate:
    """ASGI middleware: 401 unless the request carries the token (or is for /healthz)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._token = token.encode()
        self._session = _session_value(token).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer it: a redirect that sets the cookie, or 401."""
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self._app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        if self._carries_token(connection):
            await self._app(scope, receive, send)
            return
        given = connection.query_params.get(TOKEN_PARAMETER)
        response: Response
        if given is not None and hmac.compare_digest(given.encode(), self._token):
            response = RedirectResponse(_without_token(connection.url), status_code=303)
            response.set_cookie(
                COOKIE,
                self._session.decode(),
                httponly=True,
                samesite="strict",
                secure=connection.url.scheme == "https",
            )
        else:
            response = JSONResponse(
                {
                    "error": "this console needs its token: open it once with "
                    "?token=TOKEN, or send Authorization: Bearer TOKEN"
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        await response(scope, receive, send)

    def _carries_token(self, connection: HTTPConnection) -> bool:
        scheme, _, credentials = connection.headers.get("authorization", "").partition(
            " "
        )
        if scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self._token
        ):
            return True
        cookie = connection.cookies.get(COOKIE)
        return cookie is not None and hmac.compare_digest(
            cookie.encode(), self._session
        )


def _without_token(url: URL) -> str:
    # Relative: the redirect stays on whatever host and scheme the client used.
    bare = url.remove_query_params(TOKEN_PARAMETER)
    return bare.path + (f"?{bare.query}" if bare.query else "")
