"""A short scripted lifecycle on the embedded SQLite default (README, first command).

Creates a thread, a message and a graph, runs one execution through
start -> progress -> complete, one that fails and is retried, and one that is
cancelled while pending, then prints each execution's state and verifies the
hash chain of every stream.
"""

from __future__ import annotations

import asyncio
import sys

from rich.console import Console
from rich.table import Table

from eventstore import ErrorInfo, EventStore


async def main(url: str | None) -> None:
    console = Console()
    async with EventStore.open(url) as store:
        await store.migrate()
        thread = await store.threads.create(title="Quarterly report")
        message = await store.messages.create(
            thread_id=thread.id, role="user", content="Summarise the Q3 report"
        )
        graph = await store.graphs.create(
            name="summariser", version="1", definition={"agents": ["reader", "writer"]}
        )
        executions = store.executions

        done = await executions.create(
            message_id=message.id, graph_id=graph.id, inputs={"pages": 12}
        )
        await executions.start(done, worker_id="worker-1")
        await executions.progress(
            done, step="read", metrics={"prompt_tokens": 1200, "cost_usd": 0.012}
        )
        await executions.complete(
            done,
            result={"summary": "Revenue up 8%"},
            metrics={"completion_tokens": 180},
        )

        failed = await executions.create(message_id=message.id, graph_id=graph.id)
        await executions.start(failed, worker_id="worker-2")
        await executions.fail(
            failed, error=ErrorInfo(type="RateLimited", message="429", retryable=True)
        )
        retried = await executions.retry(failed)

        cancelled = await executions.create(message_id=message.id, graph_id=graph.id)
        await executions.request_cancel(cancelled, reason="user closed the chat")

        table = Table(title=f"executions in {store.url}")
        for column in (
            "id",
            "status",
            "attempt",
            "steps",
            "tokens",
            "cost_usd",
            "chain",
        ):
            table.add_column(column)
        for execution_id in (done, failed, retried, cancelled):
            state = await executions.get(execution_id)
            head = await store.audit.verify_stream(execution_id)
            tokens = state.metrics.get("prompt_tokens", 0) + state.metrics.get(
                "completion_tokens", 0
            )
            table.add_row(
                str(state.id)[:8],
                state.status.value,
                str(state.attempt),
                str(state.steps_completed),
                str(tokens),
                str(state.metrics.get("cost_usd", 0)),
                f"ok {head.hex()[:12]}",
            )
        console.print(table)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
