"""The command line with generated arguments, on both databases (issue 11).

Every command but `demo` and `serve` (which run until stopped) runs with generated options and
values: empty, negative, absurd and malformed durations, times and
positions, control characters and Rich markup, paths that do not exist,
execution ids that are short, unknown or not ids, and URLs that carry a
password in every shape. Whatever comes: exit code 0, 1 or 2 (ARCHITECTURE §9), no
traceback, and the password never shown. The commands run in this process
(typer's runner), as fast as a test needs; tests/cli run them as processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import pytest
import typer
from hypothesis import event, given
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from eventstore import EventStore, ExecutionStatus
from eventstore.cli.app import app
from tests.helpers import execution_in, make_references

if TYPE_CHECKING:
    from pathlib import Path
    from uuid import UUID

MARK: Final = "s3cr3tpw"
# A long simulation, and a server that runs until Ctrl-C (tests/console
# tests `serve` as a process).
SERVES_UNTIL_STOPPED: Final = frozenset({"demo", "serve"})
COMMANDS: Final = {
    name: command
    for name, command in typer.main.get_command(app).commands.items()  # type: ignore[attr-defined]
    if name not in SERVES_UNTIL_STOPPED
}
PATH_OPTIONS: Final = frozenset(
    {"--html", "--export", "--archive", "--to", "--key-file"}
)

# Printable in a terminal's argv: no NUL, and only the surrogates that
# surrogateescape turns back into bytes.
ARG_TEXT: Final = st.text(
    st.characters(
        exclude_characters="\x00",
        exclude_categories=["Cs"],
    ),
    max_size=12,
)
VALUES: Final = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "1",
            "2",
            "1024",
            "1025",
            "5m",
            "1.5h",
            "-5s",
            "0s",
            "99999999999d",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "9" * 30,
            "2026-01-01T00:00:00Z",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59.999999Z",
            "2026-01-01T00:00",
            "[/x]",
            "[bold red]FAKE[/]",
            "\x1b[2J\x1b]0;pwned\x07",
            "\udcff",
            "--json",
        ]
    ),
    ARG_TEXT,
    st.integers().map(str),
)


class Targets:
    """The store the commands run against, and what a generated id may name."""

    def __init__(self, url: str, runs: list[UUID], tmp_path: Path) -> None:
        self.url = url
        self.runs = runs
        self.tmp_path = tmp_path

    def urls(self) -> list[str]:
        """The real URL, and URLs carrying the password in every shape."""
        shapes = [
            self.url,
            "postgresql:/u:s3cr3tpw@h/db",
            "postgresql://u:s3cr3tpw@127.0.0.1:1/x",
            "postgresql://u:s3cr3tpw@h:notaport/x",
            "postgresql://u@127.0.0.1:1/x?password=s3cr3tpw&sslmode=bogus",
            "s3cr3tpw",
        ]
        if self.url.startswith("postgresql"):
            # The test server trusts every login: the password is accepted
            # and must still never be shown.
            real = make_url(self.url)
            shapes.append(real.set(password=MARK).render_as_string(hide_password=False))
            shapes.append(
                real.update_query_dict(
                    {"options": f"-c application_name={MARK}"}
                ).render_as_string(hide_password=False)
            )
        return shapes

    def execution_ids(self) -> list[str]:
        run = str(self.runs[0])
        return [run, run[:8], "", "not-a-uuid", "00000000-0000-0000-0000-000000000000"]

    def paths(self) -> list[str]:
        return [
            str(self.tmp_path / "out.html"),
            str(self.tmp_path / "missing" / "x.jsonl"),
            str(self.tmp_path),
            str(self.tmp_path / "archives"),
            "",
        ]


@pytest.fixture
async def targets(url: str, tmp_path: Path) -> Targets:
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        runs = [
            await execution_in(store, refs, status)
            for status in (ExecutionStatus.COMPLETED, ExecutionStatus.RUNNING)
        ]
    return Targets(url, runs, tmp_path)


@st.composite
def command_lines(draw: st.DrawFn, targets: Targets) -> list[str]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    argv = [name]
    for parameter in COMMANDS[name].params:
        if parameter.name == "url" or not draw(st.booleans()):
            continue
        if parameter.param_type_name == "argument":
            argv.append(draw(st.sampled_from(targets.execution_ids()) | VALUES))
            continue
        option = parameter.opts[0]
        argv.append(option)
        if getattr(parameter, "is_flag", False):
            continue
        if option in PATH_OPTIONS:
            argv.append(draw(st.sampled_from(targets.paths())))
        else:
            argv.append(draw(VALUES))
    if name == "project" and not {"--status", "--until-caught-up"} & set(argv):
        argv.append("--until-caught-up")  # else a daemon that runs until stopped
    argv += ["--url", draw(st.sampled_from(targets.urls()))]
    return argv


# SQLAlchemy warns that SQLite ignores ?password= (naming the key, not the value).
@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")
@given(data=st.data())
def test_every_command_line_ends_in_a_spec_exit_code_without_a_secret(
    targets: Targets, data: st.DataObject
) -> None:
    argv = data.draw(command_lines(targets), label="argv")
    done = CliRunner().invoke(app, argv)
    event(f"{argv[0]}: exit {done.exit_code}")
    output = done.output
    assert done.exit_code in (0, 1, 2), (argv, output)
    assert done.exception is None or isinstance(done.exception, SystemExit), (
        argv,
        repr(done.exception),
    )
    if "--debug" not in argv:  # which shows the traceback, by design
        assert "Traceback" not in output, (argv, output)
    assert MARK not in output, (argv, output)
