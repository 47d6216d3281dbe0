"""`verify_log` over runs of the log, in parallel processes (ARCHITECTURE §6).

Recomputing the chains is pure Python work per event, so one process
verifies at the speed of one core. The log is cut into runs of nearly
equal length in its global order (`log_splits`), and each process verifies
one run: the database reads every row once, whatever the number of
processes. A stream that began in an earlier run chains its first event in
a run to its last event before it (`verify_run`), so every link is checked
by exactly one process. This process verifies the first run itself while
the others run, so `processes` runs cost `processes - 1` interpreters to
start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import pickle
import signal
from typing import TYPE_CHECKING, Any, Final

from eventstore import errors
from eventstore.audit.integrity import (
    MAX_PROBLEMS,
    LogReport,
    reads_see_what_committed_before,
    verify_log,
    verify_run,
)
from eventstore.backends import backend_for

if TYPE_CHECKING:
    from collections.abc import Callable, MutableSequence
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess
    from uuid import UUID

    from eventstore.backends.base import Backend
    from eventstore.events.checkpoint import Checkpoint
    from eventstore.settings import StoreSettings

    # A run of the log: the events after the first checkpoint, up to the second.
    Run = tuple[Checkpoint | None, Checkpoint | None]

# Starting an interpreter and importing the store takes about a second of
# CPU: below this many events one process is as fast.
PARALLEL_FROM: Final = 300_000
MAX_PROCESSES: Final = 8  # chosen by default
PROCESSES_LIMIT: Final = 64  # asked for
_POLL: Final = 0.2  # seconds between two looks at the other processes' progress


async def processes_for(backend: Backend) -> int:
    """How many processes verify the log: one per core once the log is large."""
    head = await backend.head_checkpoint()
    if head is None or head.position < PARALLEL_FROM:
        return 1
    if hasattr(os, "sched_getaffinity"):  # the cores this process may use
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_PROCESSES))


async def verify_log_in_processes(
    backend: Backend,
    settings: StoreSettings,
    *,
    processes: int,
    on_batch: Callable[[int], None] | None = None,
) -> LogReport:
    """Verify the log as `verify_log` does, cut into `processes` runs.

    Args:
        backend: this process's connection.
        settings: the others open the backend's URL with these.
        processes: how many runs, each verified by one process (fewer
            when the log holds fewer events).
        on_batch: called with the events verified so far, by all processes.

    Returns:
        The counts of all runs, and the first break of each broken stream
        in position order (at most 100).

    Raises:
        DatabaseError: a process failed or stopped without a report.
    """
    if not 1 <= processes <= PROCESSES_LIMIT:
        raise errors.ValidationError(
            f"processes must be from 1 to {PROCESSES_LIMIT}, not {processes}"
        )
    if processes == 1:
        return await verify_log(backend, on_batch=on_batch)
    await backend.ensure_schema()
    await reads_see_what_committed_before(backend)
    splits = await backend.log_splits(processes)
    runs: list[Run] = list(zip([None, *splits], [*splits, None], strict=True))
    context = multiprocessing.get_context("spawn")  # a fork would copy the event loop
    progress = context.Array("q", len(runs), lock=False)
    others: list[_Worker] = []
    try:
        for index, run in enumerate(runs[1:], start=1):
            others.append(
                _Worker.start(
                    context, backend.connect_url, settings, index, run, progress
                )
            )

        def verified(events: int) -> None:
            progress[0] = events

        watching = asyncio.ensure_future(_watch(others, progress, on_batch))
        try:
            first, until = runs[0]
            own = await verify_run(backend, after=first, until=until, on_batch=verified)
            await watching
        finally:
            watching.cancel()
        reports = [own, *(worker.report() for worker in others)]
    finally:
        for worker in others:
            worker.stop()
    if on_batch is not None:
        on_batch(sum(progress))
    return _merged(reports)


async def _watch(
    workers: list[_Worker],
    progress: MutableSequence[int],
    on_batch: Callable[[int], None] | None,
) -> None:
    """Report the progress of all processes until the others have answered."""
    while True:
        if on_batch is not None:
            on_batch(sum(progress))
        if all(worker.answered() for worker in workers):
            return
        await asyncio.sleep(_POLL)


def _merged(reports: list[LogReport]) -> LogReport:
    """The runs' reports (in the runs' order) as one, breaks in the log's order.

    A stream broken in one run may break again in a later one (its events
    there chain to the altered ones): only its first break is reported.
    Each run lists its breaks in the log's order, as one pass does; so
    does their concatenation (not an order by position, which PostgreSQL's
    log, ordered by transaction, does not keep).
    """
    first_breaks: dict[UUID | None, errors.RecordAltered] = {}
    for report in reports:
        for problem in report.problems:
            first_breaks.setdefault(problem.stream_id, problem)
    problems = list(first_breaks.values())
    return LogReport(
        events=sum(report.events for report in reports),
        streams=sum(report.streams for report in reports),
        problems=problems[:MAX_PROBLEMS],
    )


class _Worker:
    """One other process verifying one run of the log, and the pipe of its report."""

    def __init__(self, process: BaseProcess, answers: Connection, index: int):
        self._process = process
        self._answers = answers
        self._index = index

    @classmethod
    def start(
        cls,
        context: Any,
        url: str,
        settings: StoreSettings,
        index: int,
        run: Run,
        progress: MutableSequence[int],
    ) -> _Worker:
        answers, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_verify_run,
            args=(url, settings, index, run, progress, sender),
            name=f"eventstore-verify-{index}",
            daemon=True,
        )
        process.start()
        sender.close()  # ours: the pipe reads as closed once the child is gone
        return cls(process, answers, index)

    def answered(self) -> bool:
        """Whether the report (or the pipe's end, if the process died) is there."""
        return self._answers.poll()

    def report(self) -> LogReport:
        """The process's report; its error raised again here."""
        try:
            answer = self._answers.recv()
        except EOFError:
            self._process.join(timeout=5)
            raise errors.DatabaseError(
                f"verifying run {self._index + 1} of the log stopped without "
                f"a report (exit code {self._process.exitcode})"
            ) from None
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]

    def stop(self) -> None:
        """End the process (at once, if it is still verifying)."""
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._answers.close()


def _verify_run(
    url: str,
    settings: StoreSettings,
    index: int,
    run: Run,
    progress: MutableSequence[int],
    answers: Connection,
) -> None:
    """A child process's work: verify one run, send back the report or the error."""
    # Ctrl-C reaches the whole process group: the parent stops the children.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()  # the imports stay until the process ends: no full collection walks them
    try:
        answer: LogReport | Exception = asyncio.run(
            _verify(url, settings, index, run, progress)
        )
    except Exception as exc:  # sent to the parent, which raises it
        answer = exc
    with contextlib.closing(answers):
        try:
            answers.send(answer)
        except (pickle.PicklingError, TypeError, AttributeError):
            answers.send(errors.DatabaseError(f"verifying a run failed: {answer!r}"))


async def _verify(
    url: str,
    settings: StoreSettings,
    index: int,
    run: Run,
    progress: MutableSequence[int],
) -> LogReport:
    def verified(events: int) -> None:
        progress[index] = events

    backend = backend_for(url, settings)
    try:
        await backend.connect()
        after, until = run
        return await verify_run(backend, after=after, until=until, on_batch=verified)
    finally:
        await backend.aclose()
