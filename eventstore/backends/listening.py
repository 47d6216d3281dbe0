"""The interface of a listener for appends made by other connections."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Listener(ABC):
    """A LISTEN for appends on a connection of its own, reconnecting until closed.

    Its callback runs on every notification and after every (re)connection,
    since appends made while it was not listening were never announced.
    """

    @property
    @abstractmethod
    def connected(self) -> bool:
        """Whether it is listening now (False while it reconnects)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop listening and close its connection."""
