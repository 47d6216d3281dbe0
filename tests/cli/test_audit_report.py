"""`audit --html` (the timeline report) and `audit --export` checked by tools/verify_stream.py."""

from __future__ import annotations

import gzip
import subprocess
import sys
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from eventstore import (
    ErrorInfo,
    EventMetadata,
    EventPayload,
    EventStore,
    ExecutionCancellationRequested,
    ExecutionCompleted,
    ExecutionCreated,
    ExecutionFailed,
    ExecutionProgressed,
    ExecutionStarted,
    NewEvent,
    RecordedEvent,
    fold_events,
)
from eventstore.audit.reports import render_timeline
from eventstore.jsonvalues import parse_json_object
from tests.cli.runner import run_cli

if TYPE_CHECKING:
    from uuid import UUID

    from tests.helpers import References

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "verify_stream.py"
T0 = datetime(2026, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)
SCRIPT_NAME = "<script>alert(1)</script>"

# Values whose canonical form is easy to get wrong: integers beyond 2**53 and
# beyond the doubles, 1e21-ish floats, astral characters, keys that sort
# differently by UTF-16 code units than by code points, escapes, nesting.
AWKWARD: dict[str, object] = {
    "big": 2**53 + 1,
    "bigger": 10**30 + 7,
    "exactly_1e21": 10**21,
    "negative_big": -(2**64),
    "float_1e21": 1e21,
    "float_near_1e21": 1.2345678901234567e21,
    "float_1e20": 1e20,
    "tiny": 5e-324,
    "small": 1e-7,
    "sum": 0.1 + 0.2,
    "minus_zero": -0.0,
    "text": 'naïve ☃ 𝄞 😀 \u2028 \x85 \x7f \t "quoted" \\ </script>',
    "\uff61": "halfwidth ideographic full stop",
    "\U0001f600": "grinning face (sorts before U+FF61 in UTF-16)",
    "é": 1,
    "A": 2,
    "nested": [[{"deep": [None, True, False, "", [], {}]}], {"\U0001d11e": [1.5, -2]}],
}


async def append_timed(
    store: EventStore, payloads: list[tuple[int, EventPayload]]
) -> tuple[UUID, list[RecordedEvent]]:
    """A new execution stream whose events happen at T0 + the given ms."""
    execution_id = uuid.uuid4()
    for version, (ms, payload) in enumerate(payloads):
        event = NewEvent.of(payload, occurred_at=T0 + timedelta(milliseconds=ms))
        await store.append(execution_id, [event], expected_version=version)
    return execution_id, await store.executions.history(execution_id)


async def timed_execution(
    store: EventStore, refs: References
) -> tuple[UUID, list[RecordedEvent]]:
    """Queued 1.5 s, two steps (500 ms, 2.25 s), a cancel request, completed at 5 s."""
    return await append_timed(
        store,
        [
            (
                0,
                ExecutionCreated(
                    message_id=refs.message.id,
                    graph_id=refs.graph.id,
                    thread_id=refs.thread.id,
                    inputs={"topic": "q3"},
                ),
            ),
            (1500, ExecutionStarted(worker_id="worker-7")),
            (
                2000,
                ExecutionProgressed(
                    step="plan", metrics={"prompt_tokens": 120, "cost_usd": 0.0125}
                ),
            ),
            (
                4250,
                ExecutionProgressed(
                    step=SCRIPT_NAME,
                    detail={"note": "<b>bold</b>"},
                    metrics={"completion_tokens": 80, "cost_usd": 0.025},
                ),
            ),
            (
                4500,
                ExecutionCancellationRequested(reason="user & co", requested_by="ops"),
            ),
            (
                5000,
                ExecutionCompleted(
                    result={"answer": "forty-two"}, metrics={"prompt_tokens": 5}
                ),
            ),
        ],
    )


def write_html(url: str, execution_id: UUID, path: Path, *extra: str) -> str:
    done = run_cli(
        "audit", str(execution_id), "--url", url, "--html", str(path), *extra
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"timeline written to {path}"
    return path.read_text(encoding="utf-8")


async def test_the_html_report_shows_steps_durations_metrics_escaped(
    store: EventStore, refs: References, url: str, tmp_path: Path
) -> None:
    execution_id, _ = await timed_execution(store, refs)
    page = write_html(url, execution_id, tmp_path / "report.html")

    assert page.startswith("<!doctype html>")
    assert str(execution_id) in page
    for text in (
        "queue",
        "run (worker-7)",
        "step plan",
        "cancellation requested",
        "by ops, reason: user &amp; co",
        "completed",
        # durations: queue 1.5 s, run 3.5 s, total 5 s, steps 500 ms and 2.25 s
        "1.500 s (1500 ms)",
        "3.500 s (3500 ms)",
        "5.000 s (5000 ms)",
        "500 ms",
        "2.250 s",
        # the steps' own metrics, and the final state's sums
        '<span class="mono">prompt_tokens</span>: 120',
        '<span class="mono">cost_usd</span>: 0.0125',
        '<span class="mono">completion_tokens</span>: 80',
        "$0.0375",
        "205",  # tokens: 125 prompt + 80 completion
        "forty-two",
    ):
        assert text in page, text
    # The inputs, the graph's name and version, and the chain check.
    assert "<h2>Inputs</h2>\n<pre>{&#34;topic&#34;: &#34;q3&#34;}</pre>" in page
    assert f"{refs.graph.name} v{refs.graph.version}" in page
    assert '<span class="chain-ok">verified</span>' in page
    # Bars sit on the time axis: the second step starts at 2 s of 5 s.
    assert 'style="left: 40.000%; width: 45.000%"' in page

    # Event data is escaped, and the page needs nothing from elsewhere.
    assert "step &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    lowered = page.lower()
    for forbidden in ("<script", "<b>", "<link", "src=", "@import", "url(", "http"):
        assert forbidden not in lowered, forbidden


async def test_the_html_report_honours_as_of(
    store: EventStore, refs: References, url: str, tmp_path: Path
) -> None:
    execution_id, history = await timed_execution(store, refs)
    plan = history[2]  # the first ExecutionProgressed
    page = write_html(
        url, execution_id, tmp_path / "then.html", "--as-of", str(plan.position)
    )
    assert f"As of position {plan.position}" in page
    assert "step plan" in page
    assert "alert(1)" not in page
    assert "cancellation requested" not in page
    assert "Not finished: <strong>running</strong>" in page
    assert "(still open)" in page  # the run had not ended at that moment
    assert "forty-two" not in page

    before = write_html(
        url,
        execution_id,
        tmp_path / "before.html",
        "--as-of",
        "2000-01-01T00:00:00+00:00",
    )
    assert "the execution did not exist yet" in before


async def test_an_unwritable_report_path_is_a_user_error(
    store: EventStore, refs: References, url: str, tmp_path: Path
) -> None:
    execution_id, _ = await timed_execution(store, refs)
    for option, target in (
        ("--html", tmp_path / "missing-dir" / "report.html"),
        ("--export", tmp_path),  # a directory
    ):
        done = run_cli("audit", str(execution_id), "--url", url, option, str(target))
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert f"cannot write {target}" in done.stderr
        assert "Traceback" not in done.stderr


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    """Run the standalone verifier as an auditor would: isolated, no package."""
    return subprocess.run(
        [sys.executable, "-I", str(SCRIPT), str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=path.parent,
    )


async def awkward_execution(store: EventStore, refs: References) -> UUID:
    executions = store.executions
    metadata = {
        "actor": "auditor ☃",
        "trace": {"\U0001f600": [1e21, 2**70], "\uff61": {"x": -0.0}},
    }
    execution_id = await executions.create(
        message_id=refs.message.id,
        graph_id=refs.graph.id,
        inputs=AWKWARD,
        metadata=metadata,
    )
    await executions.start(execution_id, worker_id="w-😀", metadata=metadata)
    await executions.progress(
        execution_id,
        step="ünïcode 𝄞",
        detail=AWKWARD,
        metrics={"big_metric": 2**60 + 1, "float_metric": 1e21, "prompt_tokens": 3},
        metadata=metadata,
    )
    await executions.progress(execution_id, step=2, detail=[AWKWARD, AWKWARD])
    await executions.complete(execution_id, result=AWKWARD, metadata=metadata)
    return execution_id


def export(url: str, execution_id: UUID, path: Path) -> list[str]:
    """`audit --export` to `path`; the lines written."""
    done = run_cli("audit", str(execution_id), "--url", url, "--export", str(path))
    assert done.returncode == 0, done.stderr
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    lines = raw.decode("utf-8").split("\n")
    assert lines[-1] == ""  # every line ends with a newline
    assert done.stdout.strip() == f"{len(lines) - 1} events exported to {path}"
    return lines[:-1]


@pytest.mark.parametrize("name", ["stream.jsonl", "stream.jsonl.gz"])
async def test_an_export_of_awkward_data_verifies_with_the_standalone_script(
    store: EventStore, refs: References, url: str, tmp_path: Path, name: str
) -> None:
    execution_id = await awkward_execution(store, refs)
    await store.backend.ensure_schema()
    stored = await store.backend.read_stream_as_stored(execution_id)
    path = tmp_path / name
    lines = export(url, execution_id, path)
    assert [parse_json_object(line)["hash"] for line in lines] == [
        event.hash.hex() for event in stored
    ]

    done = verify(path)
    assert done.returncode == 0, done.stdout + done.stderr
    # The script's recomputed head is the hash the database stored.
    assert done.stdout.splitlines() == [
        f"stream {execution_id}: {len(stored)} events, head {stored[-1].hash.hex()}",
        "OK",
    ]

    # The report copes with the same data, written in the same run as an export.
    both = run_cli(
        "audit", str(execution_id), "--url", url,
        "--html", str(tmp_path / "awkward.html"), "--export", str(tmp_path / "again.jsonl"),
    )  # fmt: skip
    assert both.returncode == 0, both.stderr
    assert both.stdout.splitlines() == [
        f"timeline written to {tmp_path / 'awkward.html'}",
        f"{len(stored)} events exported to {tmp_path / 'again.jsonl'}",
    ]
    page = (tmp_path / "awkward.html").read_text(encoding="utf-8")
    assert "step ünïcode 𝄞" in page
    assert "1152921504606846977" in page  # the big metric, exactly


def rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


async def test_the_script_names_the_first_bad_position_of_a_tampered_export(
    store: EventStore, refs: References, url: str, tmp_path: Path
) -> None:
    execution_id = await awkward_execution(store, refs)
    path = tmp_path / "stream.jsonl"
    lines = export(url, execution_id, path)
    position = [parse_json_object(line)["position"] for line in lines]
    prefix = f"stream {execution_id}: broken at position"

    # One digit of a big integer in the first step's detail (not in its metadata).
    assert lines[2].count("9007199254740993") == 1
    altered = lines[2].replace("9007199254740993", "9007199254740995")
    rewrite(path, [*lines[:2], altered, *lines[3:]])
    done = verify(path)
    assert done.returncode == 1, done.stdout
    assert done.stdout.splitlines() == [
        f"{prefix} {position[2]} (version 3): "
        "the hash does not match the event's content"
    ]

    rewrite(path, [*lines[:1], *lines[2:]])  # version 2 deleted
    done = verify(path)
    assert done.returncode == 1, done.stdout
    assert done.stdout.splitlines() == [
        f"{prefix} {position[2]} (version 3): version 3 where 2 was expected"
    ]

    rewrite(path, [*lines[:2], lines[3], lines[2], *lines[4:]])  # 3 and 4 swapped
    done = verify(path)
    assert done.returncode == 1, done.stdout
    assert done.stdout.splitlines() == [
        f"{prefix} {position[3]} (version 4): version 4 where 3 was expected"
    ]

    rewrite(path, lines)  # the untouched export still verifies
    assert verify(path).returncode == 0


async def test_the_script_checks_streams_interleaved_in_log_order(
    store: EventStore, refs: References, url: str, tmp_path: Path
) -> None:
    executions = store.executions
    ids = [
        await executions.create(
            message_id=refs.message.id, graph_id=refs.graph.id, inputs=AWKWARD
        )
        for _ in range(3)
    ]
    # Round robin, so that the streams' events alternate in the log.
    for execution_id in ids:
        await executions.start(execution_id, worker_id="w")
    for step in range(3):
        for execution_id in ids:
            await executions.progress(execution_id, step=step, detail=AWKWARD)
    for execution_id in ids:
        await executions.complete(execution_id, result=AWKWARD)
    heads = [(await executions.history(i))[-1].hash.hex() for i in ids]
    lines = [
        line
        for execution_id in ids
        for line in export(url, execution_id, tmp_path / f"{execution_id}.jsonl")
    ]
    # An archive holds many streams ordered by position.
    archive = sorted(
        lines, key=lambda line: int(str(parse_json_object(line)["position"]))
    )
    assert [parse_json_object(line)["stream_id"] for line in archive[:3]] == [
        str(execution_id) for execution_id in ids
    ]
    path = tmp_path / "archive.jsonl.gz"
    path.write_bytes(gzip.compress("".join(f"{line}\n" for line in archive).encode()))

    done = verify(path)
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout.splitlines()
    assert output == [
        *(
            f"stream {i}: 6 events, head {head}"
            for i, head in zip(ids, heads, strict=True)
        ),
        "OK",
    ]

    # One broken stream does not hide the others' results.
    victim = next(
        number
        for number, line in enumerate(archive)
        if '"worker_id":"w"' in line and str(ids[1]) in line
    )
    archive[victim] = archive[victim].replace('"worker_id":"w"', '"worker_id":"v"')
    plain = tmp_path / "archive.jsonl"
    rewrite(plain, archive)
    done = verify(plain)
    assert done.returncode == 1
    broken_at = parse_json_object(archive[victim])["position"]
    assert done.stdout.splitlines() == [
        output[0],
        f"stream {ids[1]}: broken at position {broken_at} (version 2): "
        "the hash does not match the event's content",
        output[2],
    ]


@pytest.mark.slow
@pytest.mark.sqlite
def test_the_wheel_ships_the_report_template(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )  # fmt: skip
    [wheel] = tmp_path.glob("eventstore-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "eventstore/audit/reports/timeline.html.j2" in names
    assert "eventstore/audit/reports/timeline.py" in names
    requires = zipfile.ZipFile(wheel).read(
        next(name for name in names if name.endswith(".dist-info/METADATA"))
    )
    assert b"Requires-Dist: jinja2>=3.1" in requires


def test_the_report_of_a_run_failed_while_queued_with_skewed_clocks() -> None:
    """The pure renderer: no start, a terminal event before creation (clock skew)."""
    stream_id = uuid.uuid4()

    def recorded(version: int, ms: int, payload: EventPayload) -> RecordedEvent:
        return RecordedEvent(
            position=version,
            stream_id=stream_id,
            version=version,
            stream_type="execution",
            event_id=uuid.uuid4(),
            type=payload.event_type,
            schema_version=1,
            data=payload.model_dump(mode="json"),
            metadata=EventMetadata(),
            occurred_at=T0 + timedelta(milliseconds=ms),
            recorded_at=T0,
            hash=bytes(32),
        )

    events = [
        recorded(
            1,
            0,
            ExecutionCreated(
                message_id=uuid.uuid4(), graph_id=uuid.uuid4(), thread_id=uuid.uuid4()
            ),
        ),
        recorded(
            2,
            -250,
            ExecutionFailed(
                error=ErrorInfo(type="Boom", message="<i>no worker</i>", retryable=True)
            ),
        ),
    ]
    page = render_timeline(events, fold_events(events), execution_id=stream_id)
    assert "queue (never started)" in page
    assert "&lt;i&gt;no worker&lt;/i&gt;" in page
    assert "(retryable)" in page
    assert "-250 ms" in page
