"""Comments and docs cite only what the repository holds.

The design documents the project started from live outside it; a comment
citing one of their sections sends the next reader nowhere. README.md,
docs/ARCHITECTURE.md and the rest of docs/ are where the design is written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
SOURCES: Final = (
    "eventstore",
    "projections",
    "migrations",
    "tests",
    "bench",
    "docs",
    "examples",
)
TOP_LEVEL: Final = ("README.md", "pyproject.toml", "Makefile")
SUFFIXES: Final = {".py", ".md", ".j2", ".sql", ".toml", ".txt", ".html"}
OUTSIDE: Final = re.compile("\\b(?:SPEC|DESIGN)(?: \u00a7|\\.md\\b)")


def _files() -> list[Path]:
    found = [ROOT / name for name in TOP_LEVEL]
    for directory in SOURCES:
        found += [
            path
            for path in sorted((ROOT / directory).rglob("*"))
            if path.suffix in SUFFIXES and "__pycache__" not in path.parts
        ]
    return found


def test_nothing_cites_a_document_outside_the_repository() -> None:
    cited = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _files()
        for number, line in enumerate(
            path.read_text(encoding="utf-8").splitlines(), start=1
        )
        if OUTSIDE.search(line)
    ]
    assert cited == []
