"""The command line: exit codes and one-line errors (ARCHITECTURE §9)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from eventstore.migrating import SCHEMA_HEAD
from tests.cli.runner import run_cli

ROOT = Path(__file__).resolve().parents[2]


def eventstore(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd)


@pytest.mark.sqlite
def test_migrate_creates_the_default_file_and_is_repeatable(tmp_path: Path) -> None:
    first = eventstore("migrate", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert SCHEMA_HEAD in first.stdout
    assert (tmp_path / "eventstore.db").is_file()
    again = eventstore(
        "migrate", "--url", f"sqlite:///{tmp_path / 'eventstore.db'}", cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr


@pytest.mark.postgres
def test_migrate_on_postgres(empty_pg_url: str, tmp_path: Path) -> None:
    done = eventstore("migrate", "--url", empty_pg_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("mysql://h/db", 2, "unsupported database URL"),
        ("postgresql://postgres@127.0.0.1:1/x", 1, "cannot reach the database"),
    ],
)
def test_errors_are_one_line_with_the_specs_exit_code(
    tmp_path: Path, url: str, code: int, message: str
) -> None:
    done = eventstore("migrate", "--url", url, cwd=tmp_path)
    assert done.returncode == code
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = eventstore("migrate", "--url", "mysql://h/db", "--debug", cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" in done.stderr


@pytest.mark.sqlite
def test_the_quickstart_example_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "quickstart.py"),
            f"sqlite:///{tmp_path / 'q.db'}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for status in ("completed", "failed", "pending", "cancelled"):
        assert status in done.stdout


def test_version_prints_the_installed_version_and_touches_nothing(
    tmp_path: Path,
) -> None:
    from importlib.metadata import version

    done = eventstore("--version", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"eventstore {version('eventstore')}"
    assert list(tmp_path.iterdir()) == []  # no database was opened or created
