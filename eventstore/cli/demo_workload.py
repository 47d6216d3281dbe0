"""A simulated crew workload for `eventstore demo`: services create runs, workers run them.

Several threads with messages, several graphs, and a pool of async workers
that start runs, report progress with token and cost metrics, and complete,
fail (retryable failures are retried) or get cancelled, while a "user"
cancels some runs before they start and some while they run. A few runs are
left running at the end, as in a live system.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from eventstore import ErrorInfo, ExecutionStatus, InvalidTransition

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from eventstore import EventStore

GRAPHS: Final = (
    ("research-crew", ["planner", "researcher", "writer"]),
    ("support-triage", ["classifier", "responder"]),
    ("code-review", ["reader", "critic", "summariser"]),
)
TOPICS: Final = ("billing", "outage", "roadmap", "hiring", "security", "pricing")
# Labels a service would search its runs by (README, "Reading the projection"), skewed as real ones are.
CUSTOMERS: Final = ("acme", "globex", "initech", "umbrella")
CUSTOMER_WEIGHTS: Final = (5, 3, 1, 1)
MODELS: Final = ("gpt-large", "gpt-small")
FAILURES: Final = (
    ("RateLimited", "429 from the model provider", True),
    ("ToolError", "search tool returned 500", True),
    ("ContextOverflow", "prompt exceeds the context window", False),
)


@dataclass
class Tally:
    """What the workload did, for the progress display."""

    created: int = 0
    finished: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        """Record one finished run."""
        self.finished += 1
        self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1


@dataclass(frozen=True)
class Job:
    """One run for a worker, and what the simulation will make of it."""

    execution_id: UUID
    steps: int
    fate: str
    rng: random.Random
    """The job's own draws: the totals of a seed do not depend on which worker ran it."""


async def run_workload(
    store: EventStore,
    *,
    executions: int,
    workers: int,
    seed: int,
    on_change: Callable[[Tally], None],
) -> Tally:
    """Run the simulation; returns the tally when every job is done."""
    rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
    tally = Tally()
    graph_ids = [  # a second demo on the same store finds the first one's graphs
        (
            await store.graphs.get_or_create(
                name=name, version="1", definition={"agents": agents}
            )
        ).id
        for name, agents in GRAPHS
    ]
    message_ids: list[UUID] = []
    for topic in TOPICS:
        thread = await store.threads.create(title=f"{topic} questions")
        for number in range(2):
            message = await store.messages.create(
                thread_id=thread.id,
                role="user",
                content=f"{topic} question #{number + 1}",
            )
            message_ids.append(message.id)

    queue: asyncio.Queue[Job | None] = asyncio.Queue()

    async def produce() -> None:
        """The chat service: creates runs while the workers take them."""
        for number in range(executions):
            execution_id = await store.executions.create(
                message_id=rng.choice(message_ids),
                graph_id=rng.choice(graph_ids),
                inputs={"topic": rng.choice(TOPICS), "request": number},
                labels={
                    "customer": rng.choices(CUSTOMERS, CUSTOMER_WEIGHTS)[0],
                    "env": "prod" if rng.random() < 0.8 else "staging",
                    "model": rng.choice(MODELS),
                },
                metadata={"actor": "chat-service", "correlation_id": f"req-{number}"},
            )
            tally.created += 1
            fate = rng.choices(
                [
                    "complete",
                    "fail",
                    "cancel_pending",
                    "cancel_running",
                    "leave_running",
                ],
                weights=[70, 14, 6, 6, 4],
            )[0]
            if fate == "cancel_pending":
                await store.executions.request_cancel(
                    execution_id,
                    reason="user closed the chat",
                    metadata={"actor": "user"},
                )
                tally.count(ExecutionStatus.CANCELLED.value)
            else:
                job_rng = random.Random(f"{seed}-{number}")  # noqa: S311
                await queue.put(Job(execution_id, rng.randint(1, 4), fate, job_rng))
            on_change(tally)
            await asyncio.sleep(rng.uniform(0, 0.002))  # messages arrive over time
        for _ in range(workers):
            await queue.put(None)

    await asyncio.gather(
        produce(),
        *(
            _worker(store, queue, f"worker-{n + 1}", tally, on_change)
            for n in range(workers)
        ),
    )
    return tally


async def _worker(
    store: EventStore,
    queue: asyncio.Queue[Job | None],
    worker_id: str,
    tally: Tally,
    on_change: Callable[[Tally], None],
) -> None:
    executions = store.executions
    actor = {"actor": worker_id}
    while (job := await queue.get()) is not None:
        rng = job.rng
        await asyncio.sleep(rng.uniform(0.001, 0.01))  # time in the queue
        await executions.start(job.execution_id, worker_id=worker_id, metadata=actor)
        for step in range(job.steps):
            await asyncio.sleep(rng.uniform(0.001, 0.008))  # the agents at work
            await executions.progress(
                job.execution_id,
                step=f"step-{step + 1}",
                detail={"tool_calls": rng.randint(0, 3)},
                metrics={
                    "prompt_tokens": rng.randint(200, 2000),
                    "completion_tokens": rng.randint(50, 600),
                    "cost_usd": round(rng.uniform(0.001, 0.03), 6),
                },
                metadata=actor,
            )
        outcome = await _finish(store, job, worker_id)
        tally.count(outcome)
        on_change(tally)


async def _finish(store: EventStore, job: Job, worker_id: str) -> str:
    executions = store.executions
    rng = job.rng
    actor = {"actor": worker_id}
    if job.fate == "leave_running":
        return ExecutionStatus.RUNNING.value
    if job.fate == "cancel_running":
        await executions.request_cancel(
            job.execution_id, reason="user pressed stop", metadata={"actor": "user"}
        )
        state = await executions.get(job.execution_id)
        if state.cancel_requested:  # the worker notices and acknowledges
            await executions.cancel(
                job.execution_id, reason="stopped by user", metadata=actor
            )
        return ExecutionStatus.CANCELLED.value
    if job.fate == "fail":
        kind, message, retryable = rng.choice(FAILURES)
        await executions.fail(
            job.execution_id,
            error=ErrorInfo(type=kind, message=message, retryable=retryable),
            metrics={"prompt_tokens": rng.randint(100, 500)},
            metadata=actor,
        )
        if retryable:
            retry_id = await executions.retry(
                job.execution_id, metadata={"actor": "retrier"}
            )
            try:
                await executions.start(retry_id, worker_id=worker_id, metadata=actor)
                await executions.complete(
                    retry_id,
                    result={"answer": "done on the second attempt"},
                    metrics={"prompt_tokens": rng.randint(200, 900), "cost_usd": 0.004},
                    metadata=actor,
                )
            except InvalidTransition:
                pass  # a retry of the same failure ran elsewhere
            return "failed (retried)"
        return ExecutionStatus.FAILED.value
    await executions.complete(
        job.execution_id,
        result={"answer": f"resolved in {job.steps} steps"},
        metrics={"completion_tokens": rng.randint(20, 200)},
        metadata=actor,
    )
    return ExecutionStatus.COMPLETED.value
