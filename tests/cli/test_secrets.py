"""No password on screen or in an error, whatever the database URL's shape.

Issue 11 item 5: a malformed URL was echoed whole, `?password=` and
`?options=` appeared in "cannot reach the database at ..." and in the
daemon's "projecting ..." banner, and the server quotes `options` back in
its errors. Every shape here hides a secret that starts with "s3cr"; none
of the output, and none of the library's error messages, may contain it.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest
from sqlalchemy.engine import make_url

from eventstore import EventStore, EventStoreError, StoreSettings
from eventstore.redaction import redact_url, scrub
from tests.cli.runner import run_cli
from tests.conftest import ADMIN_URL

MARK = "s3cr"
BANNER_DEADLINE = 60.0


def _admin_with(**query: str) -> str:
    """The test server's URL with extra query parameters (it is reachable)."""
    return (
        make_url(ADMIN_URL)
        .update_query_dict(query)
        .render_as_string(hide_password=False)
    )


# (url, exit code): 2 for a URL the user must fix, 1 for a database not reached.
SHAPES = [
    ("postgresql:/u:s3cr3tpw@h/db", 2),
    ("postgresql://u:s3cr3tpw@h:notaport/x", 2),
    ("postgresql://u:s3cr3tpw@127.0.0.1:1/x?sslmode=bogus", 2),
    ("postgresql://u:s3cr3tpw@127.0.0.1:99999/x", 2),
    ("postgresql://u:s3cr3t@pw@127.0.0.1:1/x", 2),
    ("mysql://u:s3cr3tpw@h/x", 2),
    ("s3cr3tpw", 2),
    ("s3cr3tpw://u@h/x", 2),
    ("postgresql://u:s3cr3tpw@127.0.0.1:1/x", 1),
    ("postgresql://u@127.0.0.1:1/x?password=s3cr3tpw", 1),
    ("postgresql://u:s3cr%40tpw@127.0.0.1:1/x", 1),
    ("postgresql://u:s3cr%2F%3Ftpw@127.0.0.1:1/x", 1),
    ("postgresql://u@127.0.0.1:1/x?options=-c%20password%3Ds3cr3tpw", 1),
    ("postgresql://u@127.0.0.1:1/x?sslpassword=s3cr3tpw&sslmode=disable", 1),
    ("postgresql://u@/x?host=/nonexistent&password=s3cr3tpw", 1),
    ("sqlite:////nonexistent/dir/x.db?password=s3cr3tpw", 1),
    # Options that are no setting: refused before connecting, unquoted.
    (_admin_with(options="s3cr3tpw"), 2),
    # A reachable server that quotes the setting's name back in its error.
    (_admin_with(options="-c s3cr3tpw=1"), 1),
]


@pytest.mark.parametrize(("url", "code"), SHAPES)
def test_no_command_shows_the_password(url: str, code: int) -> None:
    for command in (["stats"], ["migrate"], ["audit", "--as-of", "1"]):
        done = run_cli(*command, "--url", url)
        assert done.returncode == code, (command, done.stderr)
        assert MARK not in done.stdout + done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) <= 2, done.stderr  # a warning
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("url", "code"), SHAPES)
def test_a_debug_traceback_shows_no_password_and_keeps_the_exit_code(
    url: str, code: int
) -> None:
    done = run_cli("stats", "--url", url, "--debug")
    assert done.returncode == code, done.stderr
    assert "Traceback" in done.stderr
    assert MARK not in done.stdout + done.stderr, done.stderr


# SQLAlchemy warns that SQLite ignores ?password= (naming the key, not the value).
@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")
@pytest.mark.parametrize(("url", "code"), SHAPES)
async def test_no_library_error_holds_the_password(url: str, code: int) -> None:
    del code
    with pytest.raises(EventStoreError) as raised:
        async with EventStore.open(url) as store:
            await store.schema_revision()
    exc = raised.value
    assert MARK not in str(exc)
    for name in ("url", "reason"):
        assert MARK not in str(getattr(exc, name, ""))


@pytest.mark.postgres
async def test_the_daemon_banner_hides_the_password(pg_url: str) -> None:
    url = (
        make_url(pg_url)
        .update_query_dict({"password": "s3cr3tpw", "options": "-c work_mem=64MB"})
        .render_as_string(hide_password=False)
    )
    async with EventStore.open(url) as store:
        assert MARK not in store.url
        assert "password=***" in store.url
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventstore.cli", "project", "--url", url,
        "--poll-interval", "0.05",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert daemon.stderr is not None
    try:
        async with asyncio.timeout(BANNER_DEADLINE):
            banner = (await daemon.stderr.readline()).decode()
    finally:
        daemon.send_signal(signal.SIGTERM)
        stdout, stderr = await daemon.communicate()
    assert "projecting " in banner, banner
    assert "password=***" in banner
    assert MARK not in banner + stdout.decode() + stderr.decode()


def test_redact_url_shapes() -> None:
    assert redact_url("postgresql://u:s3cr3tpw@h:5/db?sslmode=require") == (
        "postgresql://u:***@h:5/db?sslmode=require"
    )
    assert redact_url("postgresql://u@h/db?password=s3cr3tpw&application_name=x") == (
        "postgresql://u@h/db?application_name=x&password=***"
    )
    assert redact_url("postgresql://u:a@s3cr@h/db") == "postgresql://u:***@h/db"
    # Not parsed: only a known scheme is shown.
    assert redact_url("postgresql:/u:s3cr3tpw@h/db").startswith("postgresql:***")
    assert redact_url("s3cr3tpw:x@h").startswith("***")
    # Idempotent: a shown URL shows the same.
    shown = redact_url("postgresql://u:s3cr3tpw@h/db?options=-c%20x%3Ds3cr3tpw")
    assert redact_url(shown) == shown
    assert MARK not in shown


def test_scrub_hides_what_a_driver_quotes_back() -> None:
    from eventstore.backends import normalize_url

    normalize_url("postgresql://u:s3cr3t%20pw@h/db?options=-c%20s3cr3tq%3D1")
    for text in ("s3cr3t pw", "s3cr3t%20pw", "s3cr3t+pw", "s3cr3tq"):
        assert MARK not in scrub(f"server said: {text}!")


def test_scrub_hides_a_piece_of_options_only_as_a_word_of_its_own() -> None:
    from eventstore.backends import normalize_url

    normalize_url("postgresql://u@h/db?options=-csearch_path%3Dotherschema")
    said = scrub('schema "otherschema" does not exist; anotherschema may')
    assert said == 'schema "***" does not exist; anotherschema may'
    # The whole value is hidden wherever it stands.
    assert scrub("x-csearch_path=otherschemay") == "x***y"
    # A shorter secret inside a longer piece does not leave the piece's rest.
    # (Secrets are remembered for the whole process: these match nothing else.)
    normalize_url("postgresql://u@h/db?options=-cwork_mem%3Dzqxwvbigvalue")
    normalize_url("postgresql://u:zqxwv@h/db")
    assert scrub("set to zqxwvbigvalue") == "set to ***"


def test_settings_do_not_show_the_url() -> None:
    settings = StoreSettings(url="postgresql://u:s3cr3tpw@h/db")
    assert MARK not in repr(settings)
    assert MARK not in str(settings)
