"""`eventstore serve`: a read-only console and JSON API over one store (README, "Web console").

`create_app(url, token=...)` is a Starlette application: its lifespan
opens the store and closes it. Everything it shows comes from the
projection (`ExecutionsView`, `ExecutionStats`, the projector's status) or
from the log (one run's state and events); no route writes.
"""

from __future__ import annotations

from eventstore.console.app import create_app

__all__ = ["create_app"]
