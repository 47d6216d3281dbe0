"""The `eventstore` command line: a typer app behind one error boundary (SPEC §6).

Exit codes: 0 success; 1 the command ran and found a problem, or the
database is unreachable; 2 a user error (bad argument, unknown id, bad time).
Errors are one line on stderr; `--debug` shows the traceback.
"""

from __future__ import annotations

import sys

from eventstore.cli import (
    audit_commands,
    demo,
    maintenance_commands,
    projection_commands,
    rebuild_command,
    store_commands,
    verify_commands,
)
from eventstore.cli.app import app

for module in (
    store_commands,
    audit_commands,
    projection_commands,
    rebuild_command,
    verify_commands,
    maintenance_commands,
    demo,
):
    module.register(app)


def main() -> None:
    """The console script's entry point."""
    sys.exit(app())


__all__ = ["app", "main"]
