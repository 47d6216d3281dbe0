"""Text from the log and the reference tables is printed as text, never as markup.

Issue 11 item 6: a worker id of `[/x]` crashed `audit ID` (Rich's
MarkupError), a graph named `[/x]` crashed `stats`, `[bold red]FAKE[/]` was
styled, and `\\x1b[2J\\x1b]0;pwned\\x07` reached the terminal. Each string
goes into every free-text field a service writes (graph name and version,
worker id, step, error type and message, cancellation reason and requester,
actor), then through `audit`, `stats`, `demo`'s table, `project --status`
and the error line: the output shows it literally, with its control
characters escaped.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import asyncpg
import pytest

from eventstore.cli.display import clean
from tests.cli.runner import run_cli
from tests.helpers import project_everything

if TYPE_CHECKING:
    import subprocess
    from uuid import UUID

    from eventstore import EventStore

HOSTILE = {
    "closing-tag": "[/x]",
    "style": "[bold red]FAKE[/]",
    "terminal-escapes": "\x1b[2J\x1b]0;pwned\x07",
    "bidi-and-newline": "ab\u202ecd\nforged line",
}
RAW_CONTROLS = ("\x1b", "\x07", "\u202e")


def assert_shown_as_text(done: subprocess.CompletedProcess[str], text: str) -> None:
    """It ran, and printed `text` as it is, control characters escaped."""
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    output = done.stdout + done.stderr
    for control in RAW_CONTROLS:
        assert control not in output
    # Tables fold long cells: look for the text without the table's layout.
    flat = "".join(output.replace("│", "").split())
    assert "".join(clean(text).split()) in flat, output


async def _hostile_executions(store: EventStore, text: str) -> tuple[UUID, UUID]:
    """Two executions whose every free-text field is `text`."""
    thread = await store.threads.create(title=text)
    message = await store.messages.create(
        thread_id=thread.id, role="user", content=text
    )
    graph = await store.graphs.create(name=text, version=text, definition={"a": text})
    executions = store.executions
    failed = await executions.create(
        message_id=message.id,
        graph_id=graph.id,
        inputs={"q": text},
        metadata={"actor": text},
    )
    await executions.start(failed, worker_id=text, metadata={"actor": text})
    await executions.progress(failed, step=text, detail=text)
    await executions.fail(failed, error={"type": text, "message": text})
    cancelled = await executions.create(
        message_id=message.id, graph_id=graph.id, inputs=text
    )
    await executions.start(cancelled, worker_id=text)
    await executions.request_cancel(cancelled, reason=text, requested_by=text)
    await executions.cancel(cancelled, reason=text)
    await project_everything(store)
    return failed, cancelled


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
async def test_audit_and_stats_print_it_as_text(
    store: EventStore, url: str, text: str
) -> None:
    failed, cancelled = await _hostile_executions(store, text)
    for execution_id in (failed, cancelled):
        assert_shown_as_text(run_cli("audit", str(execution_id), "--url", url), text)
    assert_shown_as_text(run_cli("stats", "--url", url), text)
    # --json stays JSON, with the text as it was written.
    machine = run_cli("audit", str(failed), "--json", "--url", url)
    assert json.loads(machine.stdout)["state"]["worker_id"] == text


@pytest.mark.slow
@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
async def test_the_demo_table_prints_it_as_text(
    store: EventStore, url: str, text: str
) -> None:
    """`demo` lists the newest executions of the store: ours among them."""
    await _hostile_executions(store, text)
    done = run_cli(
        "demo", "--executions", "1", "--workers", "1", "--show", "100", "--url", url
    )
    assert_shown_as_text(done, text)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "text", [HOSTILE["closing-tag"], HOSTILE["style"]], ids=["closing-tag", "style"]
)
async def test_project_status_prints_a_leaders_name_as_text(
    pg_store: EventStore, pg_url: str, text: str
) -> None:
    """A leader's name is its application_name, which any client chooses."""
    await project_everything(pg_store)
    impostor = await asyncpg.connect(pg_url, server_settings={"application_name": text})
    try:
        await impostor.fetchval(
            "SELECT pg_try_advisory_lock("
            "hashtextextended('eventstore-projection:' || $1, 0))",
            "executions:0/1",
        )
        done = run_cli("project", "--status", "--url", pg_url)
    finally:
        await impostor.close()
    assert_shown_as_text(done, text)


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_an_error_line_quotes_it_as_text(url: str, text: str) -> None:
    """A value echoed in an error (here a bad --as-of) stays one plain line."""
    done = run_cli("audit", "--as-of", text, "--url", url)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for control in RAW_CONTROLS:
        assert control not in done.stderr
