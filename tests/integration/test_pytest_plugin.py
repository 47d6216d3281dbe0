"""The pytest plugin as a user meets it: a project with one test file and no conftest.

Each case runs pytest in a subprocess in a temporary directory (pytester),
where the plugin comes from the installed package's `pytest11` entry point
and nothing of this repository's own configuration applies.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from eventstore.testing import POSTGRES_URL_VARIABLE
from tests.conftest import ADMIN_URL
from tests.test_docs_code import code_blocks

pytestmark = pytest.mark.slow

# Beside the documented example: each test writes down its URL, so that the
# case can check that every test had a database of its own, and where.
URL_PROBES = """
from pathlib import Path


def test_first(eventstore_url: str) -> None:
    Path("urls.txt").open("a").write(eventstore_url + "\\n")


def test_second(eventstore_url: str) -> None:
    Path("urls.txt").open("a").write(eventstore_url + "\\n")
"""


def _documented_example() -> str:
    (block,) = code_blocks("pytest")  # docs/TESTING.md's test file
    return block.code


def _run_user_tests(pytester: pytest.Pytester) -> tuple[pytest.RunResult, list[str]]:
    pytester.makepyfile(test_service=_documented_example(), test_probes=URL_PROBES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    urls = (pytester.path / "urls.txt").read_text().split()
    return result, urls


@pytest.mark.sqlite
def test_the_fixtures_give_each_test_a_migrated_sqlite_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(POSTGRES_URL_VARIABLE, raising=False)
    result, urls = _run_user_tests(pytester)
    result.assert_outcomes(passed=4)
    assert len(urls) == 2
    assert len(set(urls)) == 2
    assert all(url.startswith("sqlite:///") for url in urls), urls


async def _databases() -> set[str]:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        rows = await connection.fetch("SELECT datname FROM pg_database")
    finally:
        await connection.close()
    return {row["datname"] for row in rows}


@pytest.mark.postgres
def test_the_fixtures_give_each_test_a_postgres_database_and_drop_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(POSTGRES_URL_VARIABLE, ADMIN_URL)
    before = asyncio.run(_databases())
    result, urls = _run_user_tests(pytester)
    result.assert_outcomes(passed=4)
    names = [url.rsplit("/", 1)[1] for url in urls]
    assert len(set(names)) == 2
    assert all(url.startswith("postgresql://") for url in urls), urls
    after = asyncio.run(_databases())
    assert not set(names) & after
    # The session's template is gone too.
    assert {name for name in after - before if name.startswith("eventstore_")} == set()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("mysql://u@h/db", "must be a postgresql:// URL"),
        ("not a url", "is not a database URL"),
    ],
)
def test_a_bad_server_url_is_one_clear_error(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(POSTGRES_URL_VARIABLE, value)
    pytester.makepyfile(
        test_service="def test_it(eventstore_url: str) -> None:\n    pass\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*ConfigurationError*{POSTGRES_URL_VARIABLE}*"])
    assert message in result.stdout.str()
