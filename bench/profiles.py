"""cProfile of a timed section: own time per category (idle = the event loop
waiting in epoll), the top functions. The profiler slows Python code more than
C code: read the split, not the absolute numbers."""

from __future__ import annotations

import pstats
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from bench.harness import REPOSITORY

if TYPE_CHECKING:
    import cProfile
    from collections.abc import Awaitable, Callable

IDLE: Final = "idle: event loop waiting in epoll"
R = TypeVar("R")


class Rules:
    """How a benchmark groups own time: one line per category, in report order,
    "category: needles", a needle found in a file's path or, with "~", in a
    builtin's name (tried in that order); "*file" and "*builtin" mark where the
    rest goes. `hidden`: frames left out of the top list (their cumulative time
    is the whole run's); `own`: the categories of the own-time list (all if empty)."""

    def __init__(
        self, table: str, *, hidden: tuple[str, ...], own: tuple[str, ...] = ()
    ) -> None:
        lines = [line.strip().rpartition(": ") for line in table.strip().splitlines()]
        self.categories = (*(category for category, _, _ in lines), IDLE)
        needles = [(n, c) for c, _, found in lines for n in found.split()]
        self.files = [(n, c) for n, c in needles if n[0] not in "~*"]
        self.builtins = [(n[1:], c) for n, c in needles if n[0] == "~"]
        rest = dict(needles)  # where what no needle matches goes
        self.other_file, self.other_builtin = rest["*file"], rest["*builtin"]
        self.hidden, self.own = hidden, own

    def category(self, filename: str, function: str) -> str:
        """Where a function's own time goes."""
        if filename != "~":
            return next((c for n, c in self.files if n in filename), self.other_file)
        if "epoll" in function or "select" in function:
            return IDLE
        return next((c for n, c in self.builtins if n in function), self.other_builtin)


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    calls: int
    own: float
    cumulative: float


@dataclass(frozen=True, slots=True)
class Profile:
    """One subject's profile: own seconds per category, top functions by
    cumulative and by own time."""

    subject: str
    events: int
    seconds: float
    categories: dict[str, float]
    top: list[Function]
    own_top: list[Function]

    def us(self, category: str) -> float:
        """Microseconds per event spent in a category."""
        return self.categories.get(category, 0.0) / self.events * 1e6

    def us_of(self, categories: tuple[str, ...]) -> float:
        return sum(self.us(c) for c in categories)

    @property
    def busy_us(self) -> float:
        """Client time per event, idle excluded."""
        return sum(self.us(c) for c in self.categories if c != IDLE)


def _name(filename: str, line: int, function: str) -> str:
    if filename == "~":
        return function
    for marker in ("/site-packages/", f"{REPOSITORY}/"):
        if marker in filename:
            return f"{filename.split(marker, 1)[1]}:{line}({function})"
    if "/lib/python3." in filename:
        filename = "stdlib/" + filename.split("/lib/python3.", 1)[1].split("/", 1)[1]
    return f"{filename}:{line}({function})"


def summarize(
    subject: str,
    profiler: cProfile.Profile,
    rules: Rules,
    *,
    events: int,
    seconds: float,
) -> Profile:
    """Group a profile's own times by category (a builtin's own time counts for
    the category of its caller) and list its top 15 functions."""
    table: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    categories = dict.fromkeys(rules.categories, 0.0)
    top, own = [], []
    for (filename, line, function), (_, calls, own_time, cum, callers) in table.items():
        category = rules.category(filename, function)
        row = Function(_name(filename, line, function), calls, own_time, cum)
        if not any(frame in filename or frame in function for frame in rules.hidden):
            top.append(row)
        if not rules.own or category in rules.own:
            own.append(row)
        if filename != "~" or category != rules.other_builtin or not callers:
            categories[category] += own_time
            continue
        for (caller_file, _, caller_function), edge in callers.items():
            caller = rules.category(caller_file, caller_function)
            categories[rules.other_builtin if caller == IDLE else caller] += edge[2]
    top.sort(key=lambda row: row.cumulative, reverse=True)
    own.sort(key=lambda row: row.own, reverse=True)
    return Profile(subject, events, seconds, categories, top[:15], own[:15])


def profiled(
    profiler: cProfile.Profile, work: Callable[[], Awaitable[R]]
) -> Callable[[], Awaitable[R]]:
    """`work` with the profiler on while it runs."""

    async def run() -> R:
        profiler.enable()
        try:
            return await work()
        finally:
            profiler.disable()

    return run


def functions(
    profile: Profile,
    rows: list[Function],
    *,
    by_own: bool = False,
    per_event: bool = True,
) -> str:
    """Functions as a markdown table, in µs per event or in seconds; own time first if `by_own`."""
    names = ("own", "cumulative") if by_own else ("cumulative", "own")
    unit, per, spec = (
        ("µs/event", profile.events / 1e6, ".1f") if per_event else ("s", 1, ",.2f")
    )
    lines = [
        f"| function | calls{'/event' if per_event else ''} | {names[0]} {unit} | {names[1]} {unit} |",
        "|---|---|---|---|",
    ]
    for f in rows:
        calls = f"{f.calls / profile.events:.2f}" if per_event else f"{f.calls:,}"
        first, second = (getattr(f, name) / per for name in names)
        lines.append(f"| `{f.name}` | {calls} | {first:{spec}} | {second:{spec}} |")
    return "\n".join(lines)
