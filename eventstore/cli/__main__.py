"""`python -m eventstore.cli`."""

from __future__ import annotations

from eventstore.cli import main

main()
