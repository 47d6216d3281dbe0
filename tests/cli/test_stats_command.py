"""`eventstore stats` (README, "Command line"): --group-by, the filters of list, a table and JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.cli.runner import run_cli
from tests.cli.test_commands import assert_one_line_error
from tests.cli.test_list_command import labelled_runs

if TYPE_CHECKING:
    from eventstore import EventStore
    from tests.helpers import References


async def test_stats_groups_filters_and_prints_json(
    store: EventStore, refs: References, url: str
) -> None:
    await labelled_runs(store, refs)  # 2 runs of customer 42, 1 of 43, 1 failed

    rows = json.loads(
        run_cli("stats", "--url", url, "--json", "--group-by", "label:customer").stdout
    )
    by_customer = {row["group"]["label:customer"]: row for row in rows}
    assert set(by_customer) == {"42", "43", None}
    assert by_customer["42"]["runs"] == 2
    assert by_customer["42"]["counts"]["completed"] == 2
    assert by_customer["42"]["cost_usd"] == 1.0
    assert by_customer["42"]["prompt_tokens"] == 14
    assert by_customer[None]["error_rate"] == 1.0

    (only,) = json.loads(
        run_cli(
            "stats",
            "--url",
            url,
            "--json",
            "--group-by",
            "status",
            "--label",
            "env=prod",
        ).stdout
    )
    assert only["group"] == {"status": "completed"}
    assert only["runs"] == 3

    table = run_cli("stats", "--url", url, "--group-by", "graph", "--group-by", "day")
    assert table.returncode == 0, table.stderr
    assert "runs by graph, day" in table.stdout
    assert refs.graph.name in table.stdout


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        (["--group-by", "month"], "invalid group_by key"),
        (["--group-by", "graph", "--group-by", "graph"], "a key twice"),
        (["--status", "done"], "unknown status"),
        (["--since", "soon"], "--since"),
    ],
)
async def test_stats_refuses_bad_options_in_one_line(
    store: EventStore, url: str, arguments: list[str], text: str
) -> None:
    assert_one_line_error(run_cli("stats", "--url", url, *arguments), 2, text)
