"""`verify` with its streams split over several processes, on both backends."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.engine import make_url

from eventstore import EventStore, NewEvent, ValidationError
from eventstore.audit import verify_processes
from eventstore.audit.integrity import verify_log
from eventstore.audit.verify_processes import PARALLEL_FROM, processes_for
from eventstore.partitions import Partition
from tests.cli.runner import run_cli
from tests.helpers import tamper, wait_for_horizon

if TYPE_CHECKING:
    from uuid import UUID

    from eventstore.audit import LogReport

PROCESSES = 3
EVENTS_PER_STREAM = 4


async def _log_with_a_stream_per_partition(store: EventStore) -> list[UUID]:
    """Two streams in each partition of PROCESSES, their events interleaved."""
    streams: list[UUID] = []
    for index in range(PROCESSES):
        while len(streams) < 2 * (index + 1):
            stream = uuid.uuid4()
            if Partition(index, PROCESSES).holds(stream):
                streams.append(stream)
    for n in range(EVENTS_PER_STREAM):
        for stream in streams:
            event = NewEvent(type="Note", data={"n": n, "of": str(stream)})
            await store.append(stream, [event], stream_type="note")
    await wait_for_horizon(store)
    return streams


def _found(
    report: LogReport,
) -> tuple[int, int, set[tuple[UUID | None, int | None, str]]]:
    problems = {(p.stream_id, p.position, p.reason) for p in report.problems}
    return report.events, report.streams, problems


async def test_processes_find_what_one_process_finds(
    store: EventStore, url: str
) -> None:
    streams = await _log_with_a_stream_per_partition(store)
    intact = await store.audit.verify_log(processes=PROCESSES)
    assert intact.ok, intact.problems
    assert (intact.events, intact.streams) == (
        len(streams) * EVENTS_PER_STREAM,
        len(streams),
    )
    # One break in each partition: this process's, and each other process's.
    victims = streams[::2]
    positions = []
    for victim in victims:
        second = [e async for e in store.read_stream(victim)][1]
        positions.append(second.position)
    await tamper(
        url,
        *(
            f"UPDATE execution_events SET data = '{{\"n\": 99}}' WHERE position = {p}"
            for p in positions
        ),
    )
    one = await verify_log(store.backend)
    progress: list[int] = []
    several = await store.audit.verify_log(
        processes=PROCESSES, on_batch=progress.append
    )
    assert _found(several) == _found(one)
    assert {(p.stream_id, p.position) for p in several.problems} == set(
        zip(victims, positions, strict=True)
    )
    assert [p.position for p in several.problems] == sorted(positions)
    assert progress[-1] == several.events  # every process's events counted


async def test_the_cli_verifies_in_processes_and_refuses_none(
    store: EventStore, url: str
) -> None:
    streams = await _log_with_a_stream_per_partition(store)
    victim = streams[-1]  # in the last partition: another process finds it
    second = [e async for e in store.read_stream(victim)][1]
    await tamper(
        url,
        "UPDATE execution_events SET data = '{\"n\": 99}' "
        f"WHERE position = {second.position}",
    )
    done = run_cli("verify", "--log-only", "--processes", "2", "--url", url)
    assert done.returncode == 1, done.stdout + done.stderr
    broken = [line for line in done.stdout.splitlines() if "broken chain" in line]
    assert len(broken) == 1, done.stdout
    assert broken[0].startswith(
        f"broken chain: execution {victim} at position {second.position}: "
    ), broken
    refused = run_cli("verify", "--processes", "0", "--url", url)
    assert refused.returncode == 2
    assert "--processes" in refused.stderr
    last = await store.audit.last_verify_run()
    assert last is not None
    assert last.problems == 1  # the refused run recorded nothing
    for wrong in (0, 65, 2**70):
        with pytest.raises(ValidationError, match="processes must be from 1 to 64"):
            await store.audit.verify_log(processes=wrong)
    too_many = run_cli("verify", "--processes", str(2**70), "--url", url)
    assert too_many.returncode == 2
    assert "--processes" in too_many.stderr


async def test_a_small_log_is_verified_in_this_process(store: EventStore) -> None:
    await _log_with_a_stream_per_partition(store)
    assert await processes_for(store.backend) == 1
    assert PARALLEL_FROM > PROCESSES * 2 * EVENTS_PER_STREAM


@pytest.mark.postgres
async def test_other_processes_open_the_url_as_given(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the redacted URL of messages: that one lacks the password and options."""
    url = (
        make_url(pg_url)
        .set(password="s3cret")  # noqa: S106 - trust authentication: accepted, unused
        .update_query_dict({"options": "-c statement_timeout=60000"})
        .render_as_string(hide_password=False)
    )
    given: list[str] = []
    start = verify_processes._Worker.start

    def recorded(
        cls: type[verify_processes._Worker], context: Any, url: str, *rest: Any
    ) -> verify_processes._Worker:
        given.append(url)
        return start(context, url, *rest)

    monkeypatch.setattr(verify_processes._Worker, "start", classmethod(recorded))
    async with EventStore.open(url) as store:
        await _log_with_a_stream_per_partition(store)
        report = await store.audit.verify_log(processes=2)
        assert "s3cret" not in store.backend.url
    assert report.ok, report.problems
    assert report.events == 2 * PROCESSES * EVENTS_PER_STREAM
    [child_url] = given
    assert "s3cret" in child_url
    assert "statement_timeout" in child_url
