"""The README's Python snippets run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.sqlite
def test_readme_python_snippets_run(tmp_path: Path) -> None:
    snippets = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert snippets
    for number, snippet in enumerate(snippets):
        script = tmp_path / f"snippet_{number}.py"
        script.write_text(snippet)
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
        assert "ExecutionCompleted" in done.stdout
