"""Absurd arguments end in one line on stderr and exit code 2, never a traceback.

Issue 11 item 4: durations and times beyond what the datetime types or the
databases hold, positions beyond 2**63, empty strings, ports that are not
ports, and cost sums beyond the largest float, each through the command line
on both backends (ARCHITECTURE §9: 2 for a user error, one human line).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from eventstore import ConfigurationError, EventStore, ExecutionStatus
from eventstore.parsing import (
    MAX_POSITION,
    parse_as_of,
    parse_duration,
    parse_time,
)
from projections.stats import execution_stats
from tests.cli.runner import run_cli
from tests.helpers import (
    append_unchecked,
    execution_in,
    make_references,
    project_everything,
    unchecked_event,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers import References


def assert_usage_error(done: subprocess.CompletedProcess[str], *texts: str) -> None:
    """Exit code 2, one line on stderr naming what was wrong, no traceback."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for text in texts:
        assert text in done.stderr


BAD_ARGUMENTS = [
    # Durations beyond timedelta (OverflowError) or 100 years, zero, no number.
    (["cleanup", "--stale-after", "99999999999d"], "--stale-after"),
    (["cleanup", "--pending-after", "99999999999d"], "--pending-after"),
    (["cleanup", "--stale-after", "36526d"], "at most 36525d"),
    (["cleanup", "--stale-after", "1" + "0" * 400 + "ms"], "--stale-after"),
    (["cleanup", "--stale-after", "0s"], "positive duration"),
    (["cleanup", "--stale-after", ""], "--stale-after"),
    (["cleanup", "--stale-after", "1e400"], "--stale-after"),
    # Times that are not between the years 1 and 9999 in UTC.
    (["audit", "--as-of", "0001-01-01T00:00:00+05:00"], "out of range"),
    (["audit", "--as-of", "9999-12-31T23:59:59-05:00"], "out of range"),
    (["audit", "--as-of", ""], "--as-of"),
    (["audit", "--as-of", "2026-01-01T00:00:00"], "with offset"),
    (
        ["cleanup", "--archive-before", "0001-01-01T00:00:00+05:00", "--to", "."],
        "out of range",
    ),
    # Positions beyond the log's bigint, however many digits.
    (["audit", "--as-of", str(2**63)], "at most 9223372036854775807"),
    (["audit", "--as-of", "9" * 5000], "at most 9223372036854775807"),
    # An empty id is not "no id" (it printed the whole store).
    (["audit", ""], "invalid execution id ''"),
    (["audit", "", "--as-of", "5"], "invalid execution id ''"),
    (["audit", " "], "invalid execution id"),
    # An empty --to is not the current directory.
    (
        ["cleanup", "--archive-before", "2000-01-01T00:00:00Z", "--to", ""],
        "--to is empty",
    ),
    # Click's own checks: one line too, not a box with the usage above it.
    (["project", "--partitions", "0"], "--partitions"),
    (["project", "--poll-interval", "inf"], "--poll-interval"),
    (["project", "--poll-interval", "nan"], "--poll-interval"),
    (["demo", "--show", "1001"], "--show"),
    (["audit", "--no-such-option"], "--no-such-option"),
]


@pytest.mark.parametrize(("args", "text"), BAD_ARGUMENTS)
def test_bad_arguments_exit_2_with_one_line(
    url: str, args: list[str], text: str
) -> None:
    assert_usage_error(run_cli(*args, "--url", url), text)


def test_absurd_values_still_inside_the_range_work(url: str) -> None:
    for args in (
        ["cleanup", "--stale-after", "36525d"],
        ["audit", "--as-of", str(MAX_POSITION)],
        ["audit", "--as-of", "0001-01-01T00:00:00Z"],
        ["audit", "--as-of", "9999-12-31T23:59:59.999999Z"],
    ):
        done = run_cli(*args, "--url", url)
        assert done.returncode == 0, (args, done.stderr)


@pytest.mark.parametrize(
    ("bad_url", "text"),
    [
        ("postgresql://u:p@h:notaport/x", "malformed database URL"),
        ("postgresql://u:p@h:5432:5433/x", "malformed database URL"),
        ("postgresql://u:p@127.0.0.1:99999/x", "invalid port 99999"),
        ("postgresql://u:p@127.0.0.1:0/x", "invalid port 0"),
        ("postgresql://u:p@127.0.0.1/x?port=notaport", "invalid database URL"),
        ("postgresql://u:p@127.0.0.1/x?port=70000", "invalid port 70000"),
        ("postgresql://u:p@/x?host=a:1&host=b:99999", "invalid port 99999"),
        ("postgresql://[::1/x", "malformed database URL"),
        ("", "the database URL is empty"),
        (" ", "the database URL is empty"),
    ],
)
def test_bad_urls_exit_2_with_one_line(bad_url: str, text: str) -> None:
    assert_usage_error(run_cli("stats", "--url", bad_url), text)


@pytest.mark.sqlite
def test_an_empty_environment_url_means_the_default_file(tmp_path: Path) -> None:
    """$EVENTSTORE_URL='' counts as unset (only an explicit empty --url is refused)."""
    done = subprocess.run(
        [sys.executable, "-m", "eventstore.cli", "migrate"],
        cwd=tmp_path,
        env={**os.environ, "EVENTSTORE_URL": ""},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "eventstore.db").is_file()


async def test_bad_urls_are_configuration_errors_in_the_library() -> None:
    for url in (
        "postgresql://u:p@h:notaport/x",
        "postgresql://u:p@127.0.0.1:99999/x",
        "postgresql://u:p@127.0.0.1/x?port=notaport",
        "postgresql://u:p@pw@127.0.0.1/x",
    ):
        with pytest.raises(ConfigurationError):
            await EventStore.open(url)


def test_the_one_parser() -> None:
    """Each bad value is a ValidationError naming the option (exit 2 in the CLI)."""
    from eventstore import ValidationError

    for text in ("99999999999d", "36526d", "0", "-5s", "soon", "1" * 400):
        with pytest.raises(ValidationError, match="--stale-after"):
            parse_duration(text, "--stale-after")
    for text in ("0001-01-01T00:00:00+05:00", "2026-01-01", "", "\x00"):
        with pytest.raises(ValidationError, match="--archive-before"):
            parse_time(text, "--archive-before")
    for text in (str(2**63), "9" * 5000, "-1", "1e3"):
        with pytest.raises(ValidationError, match="--as-of"):
            parse_as_of(text)
    long = "x" * 100_000
    with pytest.raises(ValidationError) as raised:
        parse_as_of(long)
    assert len(str(raised.value)) < 200
    assert parse_as_of(f"00{MAX_POSITION}").position == MAX_POSITION
    assert parse_time("2026-01-01T05:00:00+05:00", "t").isoformat() == (
        "2026-01-01T00:00:00+00:00"
    )


BIG_COST = 1.7e308
BIG_TOKENS = 2**62


async def _overflowing_usage(store: EventStore, refs: References, runs: int) -> None:
    """Runs whose costs sum beyond the largest float and tokens beyond 2**63.

    The store refuses such a cost delta since migration 0006's release (its
    bound keeps each run's sums finite), so the costs are written as an
    older release could have left them, behind the append trigger.
    """
    for _ in range(runs):
        execution_id = await execution_in(store, refs, ExecutionStatus.RUNNING)
        await append_unchecked(
            store,
            execution_id,
            [
                unchecked_event(
                    "ExecutionProgressed",
                    {
                        "step": "s",
                        "detail": None,
                        "metrics": {"cost_usd": BIG_COST, "prompt_tokens": BIG_TOKENS},
                    },
                )
            ],
        )
        await store.executions.complete(execution_id, result={})
    await project_everything(store)


async def test_stats_of_sums_beyond_the_largest_float(
    store: EventStore, url: str
) -> None:
    refs = await make_references(store)
    await _overflowing_usage(store, refs, runs=3)

    stats = await execution_stats(store)
    (graph,) = stats.graphs
    assert graph.prompt_tokens == 3 * BIG_TOKENS  # exact, beyond 2**63
    assert graph.cost_usd is None  # no float holds it

    table = run_cli("stats", "--url", url)
    assert table.returncode == 0, table.stderr
    assert str(3 * BIG_TOKENS) in table.stdout
    assert "over 1.8e+308" in table.stdout
    assert "inf" not in table.stdout

    machine = run_cli("stats", "--json", "--url", url)
    assert machine.returncode == 0, machine.stderr

    def no_infinity(name: str) -> float:
        raise AssertionError(f"{name} is not JSON")

    (row,) = json.loads(machine.stdout, parse_constant=no_infinity)
    assert row["cost_usd"] is None
    assert row["prompt_tokens"] == 3 * BIG_TOKENS


async def test_stats_sums_that_fit_stay_exact(store: EventStore) -> None:
    refs = await make_references(store)
    for cost, tokens in ((0.1, 2**53), (0.2, 1)):
        execution_id = await execution_in(store, refs, ExecutionStatus.RUNNING)
        await store.executions.progress(
            execution_id, step="s", metrics={"cost_usd": cost, "prompt_tokens": tokens}
        )
    await project_everything(store)
    (graph,) = (await execution_stats(store)).graphs
    assert graph.prompt_tokens == 2**53 + 1  # a float sum would lose the 1
    assert graph.cost_usd == pytest.approx(0.3)
