"""Every Python block of README.md and docs/ runs, so that no snippet can rot.

A block's info string says how it runs (the first word, `python`, is all
that renderers read):

- `python`: a fragment, awaited in a namespace that holds a migrated store
  with a finished run (`store`, `run_id`, `moment`, `cutoff`, `key`,
  `path`), on both databases;
- `python script`: a whole program, run by a fresh interpreter in an empty
  directory;
- `python pytest`: a test file of a service, run by the tests of the pytest
  plugin (tests/integration/test_pytest_plugin.py);
- `python alembic-env`: a service's alembic env.py, run by the tests of the
  version table (tests/migrations/test_version_table.py);
- `python alembic-revision`: a service's revision, run with that env.py by
  tests/migrations/test_referencing_executions.py.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from eventstore import ExecutionStatus
from eventstore.audit import AsOf
from projections import Projector
from tests.helpers import execution_in, make_references

if TYPE_CHECKING:
    from eventstore import EventStore

ROOT: Final = Path(__file__).resolve().parents[1]
DOCUMENTS: Final = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK: Final = re.compile(r"^```python([^\n]*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
KINDS: Final = ("", "script", "pytest", "alembic-env", "alembic-revision")


@dataclass(frozen=True)
class Block:
    """One Python block of a document."""

    document: Path
    line: int
    kind: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def code_blocks(kind: str | None = None) -> list[Block]:
    """The Python blocks of the documents (of one kind, if given)."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            block = Block(document, line, match.group(1).strip(), match.group(2))
            if kind is None or block.kind == kind:
                found.append(block)
    return found


def test_every_block_says_how_it_runs() -> None:
    blocks = code_blocks()
    assert blocks
    unknown = [block.name for block in blocks if block.kind not in KINDS]
    assert unknown == [], f"kinds are {KINDS}"


@pytest.mark.sqlite
@pytest.mark.parametrize("block", code_blocks("script"), ids=lambda b: b.name)
def test_a_script_block_runs(block: Block, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(block.code)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"PATH": ""},
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("block", code_blocks(""), ids=lambda b: b.name)
async def test_a_fragment_runs_against_a_store(
    block: Block, store: EventStore, tmp_path: Path
) -> None:
    refs = await make_references(store)
    run_id = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await Projector(store).run_until_caught_up()
    namespace = {
        "store": store,
        "run_id": run_id,
        "AsOf": AsOf,
        "moment": datetime.now(UTC),
        "cutoff": datetime.now(UTC) + timedelta(seconds=1),
        "key": b"a key of at least sixteen bytes",
        "path": tmp_path,
    }
    code = compile(block.code, block.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    outcome = eval(code, namespace)  # noqa: S307 - the repository's own docs
    if inspect.iscoroutine(outcome):
        await outcome
