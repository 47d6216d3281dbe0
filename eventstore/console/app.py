"""The console's Starlette application: the store's lifespan, routes, errors, token."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Final

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse

from eventstore import EventStore, errors
from eventstore.console import api, pages
from eventstore.console.auth import TokenGate

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

    from eventstore import StoreSettings

logger = logging.getLogger(__name__)

# What each of the store's errors means to an HTTP client; the first match wins.
STATUS_CODES: Final[list[tuple[type[Exception], int]]] = [
    (api.UnknownExecution, 404),
    (errors.ExecutionNotFound, 404),
    (errors.ValidationError, 400),
    # Unreachable, not migrated, refused: the store cannot serve now.
    (errors.DatabaseError, 503),
]


INTERNAL_ERROR: Final = {"error": "internal error; see the console's log"}


async def _error_response(_: Request, exc: Exception) -> JSONResponse:
    """The store's errors as JSON with their status code."""
    for kind, status in STATUS_CODES:
        if isinstance(exc, kind):
            return JSONResponse({"error": str(exc)}, status_code=status)
    logger.error("console request failed: %s", exc, exc_info=exc)
    return JSONResponse(INTERNAL_ERROR, status_code=500)


async def _bug_response(_: Request, __: Exception) -> JSONResponse:
    # Starlette re-raises the exception after this answer: the server logs it.
    return JSONResponse(INTERNAL_ERROR, status_code=500)


def create_app(
    url: str | None = None,
    *,
    token: str | None = None,
    settings: StoreSettings | None = None,
) -> Starlette:
    """The console over the store at `url` (None: EVENTSTORE_URL or the SQLite default).

    With a `token`, every route but `/healthz` needs it (auth.py).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with EventStore.open(url, settings=settings) as store:
            app.state.store = store
            yield

    middleware = [] if token is None else [Middleware(TokenGate, token=token)]
    return Starlette(
        routes=[*api.ROUTES, *pages.ROUTES],
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            errors.EventStoreError: _error_response,
            api.UnknownExecution: _error_response,
            Exception: _bug_response,
        },
    )
