"""Generated payloads, and the append workload: W writers, 4-event streams, ~300-byte payloads.

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
from typing import Final

EVENTS_PER_STREAM: Final = 4
STREAM_EVENT_TYPES: Final = (
    "BenchCreated",
    "BenchStarted",
    "BenchProgressed",
    "BenchCompleted",
)
METADATA: Final[dict[str, str]] = {"actor": "bench"}
METADATA_JSON: Final = '{"actor":"bench"}'
USAGE: Final[dict[str, float]] = {
    "prompt_tokens": 120,
    "completion_tokens": 80,
    "cost_usd": 0.0021,
}
# The lifecycle's JSON fields are sized so that each event's stored data
# (with the ids, metrics and keys the store adds) is about 300 bytes.
INPUTS_BYTES, DETAIL_BYTES, RESULT_BYTES = 150, 200, 215
_WORDS: Final = (
    *("agent", "task", "tool", "search", "summarize", "plan", "draft", "review"),
    *("answer", "retrieve", "rank", "context", "memory", "crew", "graph", "node"),
    *("edge", "token", "prompt", "result"),
)

Payload = dict[str, object]
Lifecycle = tuple[Payload, ...]  # the inputs, detail and result of one execution


def encode(payload: Payload) -> str:
    """Compact JSON, as a raw client would send it."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def make_payload(rng: random.Random, step: int, size: int = 300) -> Payload:
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
) -> tuple[list[list[list[Payload]]], list[list[Lifecycle]]]:
    """Per writer, per stream, the 4 payloads; then per writer, per execution,
    the lifecycle's JSON values."""
    rng, steps = random.Random(seed), range(1, EVENTS_PER_STREAM + 1)
    payloads = [
        [[make_payload(rng, step) for step in steps] for _ in range(streams)]
        for _ in range(writers)
    ]
    sizes = (INPUTS_BYTES, DETAIL_BYTES, RESULT_BYTES)
    lifecycles = [
        [
            tuple(make_payload(rng, step, size) for step, size in enumerate(sizes))
            for _ in range(streams)
        ]
        for _ in range(writers)
    ]
    return payloads, lifecycles


@dataclass(frozen=True, slots=True)
class Workload:
    """W writers; each appends `streams_per_writer` streams of 4 events, in turn,
    to a log holding `history` events (PostgreSQL) before the measurement."""

    writers: int
    streams_per_writer: int
    history: int = 0
    seed: int = 1

    @property
    def payloads(self) -> list[list[list[Payload]]]:
        """Per writer, per stream, the 4 payloads (generated once, up front)."""
        return _generated(self.writers, self.streams_per_writer, self.seed)[0]

    @property
    def lifecycles(self) -> list[list[Lifecycle]]:
        """Per writer, per execution, the lifecycle's JSON values."""
        return _generated(self.writers, self.streams_per_writer, self.seed)[1]

    @property
    def events(self) -> int:
        """Events appended by all writers together."""
        return self.writers * self.streams_per_writer * EVENTS_PER_STREAM

    def warmup(self) -> Workload:
        """A small workload of the same shape (one stream per writer), run untimed first."""
        return Workload(self.writers, 1, self.history, self.seed + 1)
