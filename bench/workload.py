"""The workload every subject runs: W writers, 4-event streams, ~300-byte payloads.

Payloads are generated before the clock starts, from a fixed seed, so every
subject appends the same data; encoding them (JSON, hashing) is part of each
subject's measured work.
"""

from __future__ import annotations

import functools
import json
import random
import string
from dataclasses import dataclass
from typing import Final, NamedTuple

EVENTS_PER_STREAM: Final = 4
PAYLOAD_BYTES: Final = 300
STREAM_EVENT_TYPES: Final = (
    "BenchCreated",
    "BenchStarted",
    "BenchProgressed",
    "BenchCompleted",
)
BENCH_STREAM_TYPE: Final = "bench"
METADATA: Final[dict[str, str]] = {"actor": "bench"}
METADATA_JSON: Final = '{"actor":"bench"}'
USAGE: Final[dict[str, float]] = {
    "prompt_tokens": 120,
    "completion_tokens": 80,
    "cost_usd": 0.0021,
}

# The lifecycle's JSON fields are sized so that each event's stored data
# (with the ids, metrics and keys the store adds) is about PAYLOAD_BYTES.
INPUTS_BYTES: Final = 150
DETAIL_BYTES: Final = 200
RESULT_BYTES: Final = 215

Payload = dict[str, object]


class Lifecycle(NamedTuple):
    """The JSON values one execution's create, progress and complete carry."""

    inputs: Payload
    detail: Payload
    result: Payload


_WORDS: Final = (
    *("agent", "task", "tool", "search", "summarize", "plan", "draft", "review"),
    *("answer", "retrieve", "rank", "context", "memory", "crew", "graph", "node"),
    *("edge", "token", "prompt", "result"),
)


def encode(payload: Payload) -> str:
    """Compact JSON, as a raw client would send it."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def make_payload(rng: random.Random, step: int, size: int = PAYLOAD_BYTES) -> Payload:
    """A JSON object of about `size` bytes that looks like an agent's step report."""
    payload: Payload = {
        "step": step,
        "agent": f"agent-{rng.randrange(100):02d}",
        "tool": rng.choice(_WORDS),
        "tokens": {"prompt": rng.randrange(2000), "completion": rng.randrange(800)},
        "ok": rng.random() > 0.1,
        "text": "",
    }
    missing = size - len(encode(payload))
    words: list[str] = []
    while sum(len(word) + 1 for word in words) < missing:
        words.append(
            rng.choice(_WORDS)
            if rng.random() > 0.2
            else "".join(rng.choices(string.ascii_lowercase, k=6))
        )
    payload["text"] = " ".join(words)[: max(missing, 0)]
    return payload


@functools.cache
def _generated(
    writers: int, streams: int, seed: int
) -> tuple[
    tuple[tuple[tuple[Payload, ...], ...], ...], tuple[tuple[Lifecycle, ...], ...]
]:
    rng = random.Random(seed)
    payloads = tuple(
        tuple(
            tuple(make_payload(rng, step) for step in range(1, EVENTS_PER_STREAM + 1))
            for _ in range(streams)
        )
        for _ in range(writers)
    )
    lifecycles = tuple(
        tuple(
            Lifecycle(
                inputs=make_payload(rng, 0, INPUTS_BYTES),
                detail=make_payload(rng, 1, DETAIL_BYTES),
                result=make_payload(rng, 2, RESULT_BYTES),
            )
            for _ in range(streams)
        )
        for _ in range(writers)
    )
    return payloads, lifecycles


@dataclass(frozen=True, slots=True)
class Workload:
    """W writers; each appends `streams_per_writer` streams of 4 events, in turn.

    Attributes:
        writers: concurrent writers.
        streams_per_writer: streams (executions) each writer drives, one after another.
        history: events the log holds before the measurement (PostgreSQL).
        seed: of the payload generator.
    """

    writers: int
    streams_per_writer: int
    history: int = 0
    seed: int = 1

    @classmethod
    def sized(
        cls,
        writers: int,
        *,
        events: int | None = None,
        events_per_writer: int | None = None,
        history: int = 0,
    ) -> Workload:
        """A workload of about `events` in total, or exactly `events_per_writer` each.

        Events per writer are rounded up to whole 4-event streams.
        """
        if events_per_writer is None:
            if events is None:
                raise ValueError("events or events_per_writer is required")
            events_per_writer = max(events // writers, 1)
        streams = max(-(-events_per_writer // EVENTS_PER_STREAM), 1)
        return cls(writers=writers, streams_per_writer=streams, history=history)

    @property
    def payloads(self) -> tuple[tuple[tuple[Payload, ...], ...], ...]:
        """Per writer, per stream, the 4 payloads (generated once, up front)."""
        return _generated(self.writers, self.streams_per_writer, self.seed)[0]

    @property
    def lifecycles(self) -> tuple[tuple[Lifecycle, ...], ...]:
        """Per writer, per execution, the lifecycle's JSON values."""
        return _generated(self.writers, self.streams_per_writer, self.seed)[1]

    @property
    def events(self) -> int:
        """Events appended by all writers together."""
        return self.writers * self.streams_per_writer * EVENTS_PER_STREAM

    @property
    def events_per_writer(self) -> int:
        """Events appended by each writer."""
        return self.streams_per_writer * EVENTS_PER_STREAM

    def warmup(self) -> Workload:
        """A small workload of the same shape (one stream per writer), run untimed first."""
        return Workload(
            writers=self.writers,
            streams_per_writer=1,
            history=self.history,
            seed=self.seed + 1,
        )
