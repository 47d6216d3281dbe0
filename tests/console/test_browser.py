"""The console in a real browser: Debian's Chromium, driven by Playwright.

`make test` installs Chromium (`apt-get install chromium`) when it is not
there. With EVENTSTORE_CONSOLE_SCREENSHOTS set to a directory, the last
test leaves a screenshot of each page there (docs/console/ holds the
README's).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest
from playwright.async_api import async_playwright, expect

from eventstore import ExecutionStatus
from tests.cli.runner import run_cli
from tests.console.server import serving
from tests.helpers import execution_in, project_everything

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from playwright.async_api import Browser, Page

    from eventstore import EventStore
    from tests.helpers import References

pytestmark = pytest.mark.slow

SCREENSHOTS_VARIABLE: Final = "EVENTSTORE_CONSOLE_SCREENSHOTS"
HOSTILE: Final = "<script>window.pwned = 1</script>"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("no chromium on the PATH: `make test` installs Debian's")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable)
        yield launched
        await launched.close()


@pytest.fixture
async def console(url: str, store: EventStore) -> AsyncIterator[str]:
    """The console's address."""
    del store  # migrated first
    async with serving(url) as client:
        yield str(client.base_url)


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    yield opened
    await context.close()


async def _labelled(
    store: EventStore, refs: References, customer: str, status: ExecutionStatus
) -> str:
    run = await execution_in(store, refs, status)
    await store.executions.label(run, set={"customer": customer})
    return str(run)


async def test_the_list_filters_by_a_label_and_pages(
    store: EventStore, refs: References, console: str, page: Page
) -> None:
    acme = [
        await _labelled(store, refs, "acme", ExecutionStatus.COMPLETED)
        for _ in range(3)
    ]
    await _labelled(store, refs, "globex", ExecutionStatus.FAILED)
    await project_everything(store)

    await page.goto(console)
    await expect(page.locator("#runs tbody tr")).to_have_count(4)
    await page.get_by_label("label (key:value)").fill("customer:acme")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#runs tbody tr")).to_have_count(3)
    await expect(page.locator("#runs tbody")).not_to_contain_text("globex")

    await page.goto(f"{console}/?label=customer:acme&limit=2")
    await expect(page.locator("#runs tbody tr")).to_have_count(2)
    first = await page.locator("#runs tbody a").all_inner_texts()
    await page.get_by_role("link", name="Next page").click()
    await expect(page.locator("#runs tbody tr")).to_have_count(1)
    second = await page.locator("#runs tbody a").all_inner_texts()
    assert sorted(first + second) == sorted(run[:8] for run in acme)
    await expect(page.get_by_text("Last page.")).to_be_visible()


async def test_a_running_page_shows_a_new_event_without_a_reload(
    store: EventStore, refs: References, console: str, page: Page
) -> None:
    run = await execution_in(store, refs, ExecutionStatus.RUNNING)
    await page.goto(f"{console}/executions/{run}")
    await expect(page.locator(".status").first).to_have_text("running")
    await page.evaluate("window.notReloaded = true")

    await store.executions.progress(run, step="appended-by-the-test")
    await expect(page.get_by_text("step appended-by-the-test").first).to_be_visible(
        timeout=2000
    )
    await store.executions.complete(run, result={"done": True})
    await expect(page.locator(".status").first).to_have_text("completed", timeout=2000)
    assert await page.evaluate("window.notReloaded") is True


async def test_the_graphs_page_draws_a_series_per_graph(
    store: EventStore, refs: References, console: str, page: Page
) -> None:
    await execution_in(store, refs, ExecutionStatus.COMPLETED)
    other = await store.graphs.create(name="second-crew", version="2", definition={})
    run = await store.executions.create(
        message_id=refs.message.id, graph_id=other.id, inputs={}
    )
    await store.executions.start(run, worker_id="w")
    await store.executions.fail(run, error={"type": "Boom", "message": "no"})
    await project_everything(store)

    await page.goto(f"{console}/graphs?since=24h")
    charts = page.locator("figure.chart")
    await expect(charts).to_have_count(5)
    for index in range(5):
        lines = charts.nth(index).locator("svg polyline.series")
        await expect(lines).to_have_count(2)
        for points in await lines.evaluate_all("ls => ls.map(l => l.points.length)"):
            assert points > 0
    box = await charts.first.locator("svg").bounding_box()
    assert box is not None
    assert box["width"] > 100
    assert box["height"] > 30


async def test_a_script_label_is_shown_as_text(
    store: EventStore, refs: References, console: str, page: Page
) -> None:
    run = await _labelled(store, refs, HOSTILE, ExecutionStatus.RUNNING)
    await project_everything(store)
    for path in ("/", f"/executions/{run}"):
        await page.goto(f"{console}{path}")
        await expect(page.get_by_text(f"customer={HOSTILE}").first).to_be_visible()
        assert await page.evaluate("window.pwned") is None


async def test_without_its_token_the_console_answers_401(
    url: str, store: EventStore, page: Page
) -> None:
    del store
    async with serving(url, token="browser-token") as client:  # noqa: S106
        base = str(client.base_url)
        refused = await page.goto(f"{base}/")
        assert refused is not None
        assert refused.status == 401
        admitted = await page.goto(f"{base}/system?token=browser-token")
        assert admitted is not None
        assert admitted.status == 200
        assert page.url == f"{base}/system"  # the token left the address
        again = await page.goto(f"{base}/graphs")  # the session cookie
        assert again is not None
        assert again.status == 200


async def test_every_page_renders_for_a_screenshot(
    store: EventStore,
    refs: References,
    url: str,
    console: str,
    page: Page,
    tmp_path: Path,
) -> None:
    """A small store shown page by page; the pictures go where the variable says."""
    directory = Path(os.environ.get(SCREENSHOTS_VARIABLE) or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    for customer, status in (
        ("acme", ExecutionStatus.COMPLETED),
        ("acme", ExecutionStatus.FAILED),
        ("globex", ExecutionStatus.COMPLETED),
        ("initech", ExecutionStatus.CANCELLED),
    ):
        await _labelled(store, refs, customer, status)
    running = await _labelled(store, refs, "acme", ExecutionStatus.RUNNING)
    await store.executions.progress(
        running, step="plan", metrics={"prompt_tokens": 900, "cost_usd": 0.012}
    )
    await project_everything(store)
    verified = run_cli("verify", "--url", url)  # for /system's "last verify"
    assert verified.returncode == 0, verified.stdout + verified.stderr
    for name, path in (
        ("executions", "/"),
        ("execution", f"/executions/{running}"),
        ("graphs", "/graphs?since=24h"),
        ("system", "/system"),
    ):
        response = await page.goto(f"{console}{path}")
        assert response is not None
        assert response.status == 200, path
        await page.screenshot(path=directory / f"{name}.png", full_page=True)
        assert (directory / f"{name}.png").stat().st_size > 10_000
