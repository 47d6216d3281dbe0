"""`eventstore list` (README, "Reading the projection"): filters, pages, a readable table and JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from eventstore import EventStore, ExecutionStatus
from tests.cli.runner import run_cli
from tests.cli.test_commands import assert_one_line_error
from tests.helpers import References, count_events, execution_in, project_everything

if TYPE_CHECKING:
    from uuid import UUID


async def labelled_runs(store: EventStore, refs: References) -> list[UUID]:
    runs = []
    for customer in ("42", "42", "43"):
        run = await execution_in(store, refs, ExecutionStatus.RUNNING)
        await store.executions.label(run, set={"customer": customer, "env": "prod"})
        await store.executions.complete(
            run, result=1, metrics={"prompt_tokens": 7, "cost_usd": 0.5}
        )
        runs.append(run)
    runs.append(await execution_in(store, refs, ExecutionStatus.FAILED))
    await project_everything(store)
    return runs


async def test_list_filters_pages_and_prints_json(
    store: EventStore, refs: References, url: str
) -> None:
    runs = await labelled_runs(store, refs)

    table = run_cli("list", "--url", url, "--label", "customer=42")
    assert table.returncode == 0, table.stderr
    assert "customer=42, env=prod" in table.stdout
    assert "summariser v1" in table.stdout
    assert "0.5000" in table.stdout
    assert str(runs[0]) in table.stdout
    assert str(runs[2]) not in table.stdout

    first = json.loads(
        run_cli("list", "--url", url, "--json", "--limit", "2", "--oldest").stdout
    )
    assert [item["id"] for item in first["items"]] == [str(r) for r in runs[:2]]
    assert first["items"][0]["labels"] == {"customer": "42", "env": "prod"}
    rest = json.loads(
        run_cli(
            "list", "--url", url, "--json", "--oldest", "--cursor", first["next_cursor"]
        ).stdout
    )
    assert [item["id"] for item in rest["items"]] == [str(r) for r in runs[2:]]
    assert rest["next_cursor"] is None

    failed = json.loads(
        run_cli(
            "list", "--url", url, "--json", "--status", "failed", "--since", "1h"
        ).stdout
    )
    assert [item["id"] for item in failed["items"]] == [str(runs[3])]
    both = json.loads(
        run_cli(
            "list",
            "--url",
            url,
            "--json",
            "--status",
            "failed",
            "--status",
            "completed",
            "--graph",
            "summariser",
            "--graph-version",
            "1",
        ).stdout
    )
    assert len(both["items"]) == 4


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        (["--status", "done"], "unknown status"),
        (["--label", "customer"], "KEY=VALUE"),
        (["--label", "Customer=42"], "label key"),
        (["--since", "yesterday"], "--since"),
        (["--until", "2026-01-01"], "--until"),
        (["--limit", "0"], "limit"),
        (["--cursor", "garbage"], "cursor"),
    ],
)
async def test_list_refuses_bad_options_in_one_line(
    store: EventStore, url: str, arguments: list[str], text: str
) -> None:
    before = await count_events(store)
    done = run_cli("list", "--url", url, *arguments)
    assert_one_line_error(done, 2, text)
    assert await count_events(store) == before
