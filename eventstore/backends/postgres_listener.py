"""LISTEN for appends on PostgreSQL, on a connection of its own that reconnects.

Every store process sends a NOTIFY on its store's channel
(`eventstore_appends` in `public`; postgres_namespace.py) after its appends
commit, coalesced to one per few milliseconds (`PostgresBackend._announce`). LISTEN belongs
to a session, so it needs a dedicated connection outside every pool (a
pooled connection would be handed to other work, and a PgBouncer in
transaction mode does not pass LISTEN at all).

Losing the connection (the server restarted, an operator ended the backend,
the network dropped) is seen at once through asyncpg's termination callback,
or by a periodic `SELECT 1` on a quiet connection when no FIN or RST ever
arrives. The listener then reconnects with capped, jittered exponential
backoff (tenacity) and calls back after every connection, since appends made
while nobody listened were never announced. Readers poll as well, so an outage costs latency only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

import asyncpg
import tenacity
from typing_extensions import override

from eventstore.backends.leadership import process_identity
from eventstore.backends.listening import Listener
from eventstore.backends.postgres_namespace import APPENDS_CHANNEL_SQL

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

APPLICATION_NAME: Final = "eventstore-listener"
"""How the listener's `application_name` starts (then ``host:pid``), for operators."""
RETRY_MIN: Final = 0.1
RETRY_MAX: Final = 10.0
LIVENESS_INTERVAL: Final = 15.0
"""Seconds a quiet connection may go unchecked."""
LIVENESS_TIMEOUT: Final = 5.0
# What a lost or refused connection raises; anything else is a bug.
TRANSIENT: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)

logger: Final = logging.getLogger(__name__)


class _Flapped(Exception):
    """The LISTEN connection was lost soon after it was made."""


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    outcome = retry_state.outcome
    failure = outcome.exception() if outcome is not None else None
    delay = retry_state.upcoming_sleep
    if isinstance(failure, _Flapped):
        logger.warning(
            "lost the LISTEN connection again at once; retrying in %.1fs", delay
        )
        return
    logger.warning(
        "cannot LISTEN for appends (%s: %s); readers poll, retrying in %.1fs",
        type(failure).__name__,
        failure,
        delay,
    )


class PostgresListener(Listener):
    """LISTEN on the store's appends channel in a background task until closed."""

    def __init__(
        self,
        *,
        dsn: str,
        on_notify: Callable[[], None],
        connect_timeout: float,
        server_settings: Mapping[str, str],
    ) -> None:
        self._dsn = dsn
        self._on_notify = on_notify
        self._connect_timeout = connect_timeout
        self._server_settings = {
            **server_settings,
            "application_name": f"{APPLICATION_NAME} {process_identity()}"[:63],
        }
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Connect and listen in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=APPLICATION_NAME)

    @override
    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    @override
    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                # Ours, unless the caller is itself being cancelled.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        self._drop_connection()

    async def _run(self) -> None:
        try:
            await self._listen_until_closed()
        except Exception:
            # The task's boundary: nobody awaits it until the store closes.
            logger.exception("the append listener stopped; readers only poll now")

    async def _listen_until_closed(self) -> None:
        while True:
            # A new retrier per session: the backoff starts over after a
            # connection that held.
            retrier = tenacity.AsyncRetrying(
                retry=tenacity.retry_if_exception_type((*TRANSIENT, _Flapped)),
                wait=tenacity.wait_random_exponential(
                    multiplier=RETRY_MIN, max=RETRY_MAX
                ),
                before_sleep=_log_retry,
            )
            await retrier(self._session)

    async def _session(self) -> None:
        """Connect, LISTEN until the connection is lost, and say how it went.

        Raises:
            _Flapped: the connection was lost soon after it was made (a
                flapping server, a script that kills backends): retried with
                the growing backoff rather than at once, in a loop.
        """
        connection = await self._connect()
        loop = asyncio.get_running_loop()
        connected_at = loop.time()
        # Appends committed before LISTEN took effect were never announced.
        self._on_notify()
        await self._watch(connection)
        self._drop_connection()
        if loop.time() - connected_at < RETRY_MAX:
            raise _Flapped
        logger.warning("lost the LISTEN connection; reconnecting")

    async def _connect(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            server_settings=self._server_settings,
        )
        try:
            channel = await connection.fetchval(f"SELECT {APPENDS_CHANNEL_SQL}")
            await connection.add_listener(channel, self._notified)
        except BaseException:
            connection.terminate()
            raise
        self._connection = connection
        return connection

    async def _watch(self, connection: asyncpg.Connection) -> None:
        """Return when the connection is lost."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        while not connection.is_closed():
            try:
                await asyncio.wait_for(lost.wait(), LIVENESS_INTERVAL)
            except TimeoutError:
                pass
            else:
                return
            try:
                await connection.execute("SELECT 1", timeout=LIVENESS_TIMEOUT)
            except TRANSIENT:
                return

    def _notified(
        self, _connection: object, _pid: int, _channel: str, _payload: object
    ) -> None:
        self._on_notify()

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            # No graceful close: the socket may be dead, and UNLISTEN is
            # implied by the session's end.
            connection.terminate()
