"""SQLite leadership: advisory file locks beside the database file.

SQLite lives on one machine, so the operating system's `flock` serves: it
is released when the holding process dies, SIGKILL included. Each slot has
a lock file holding its leader's ``host:pid``; each projector process also
holds a member lock file, so processes can count each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import uuid
from typing import TYPE_CHECKING, Final

from typing_extensions import override

from eventstore.backends.leadership import Holder, LeaderLocks, process_identity

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

MEMBER_PREFIX: Final = "member-"


def lock_directory(database: Path) -> Path:
    """Where the lock files of a database live."""
    return database.with_name(database.name + ".projectors")


def _slot_file(directory: Path, slot: str) -> Path:
    digest = hashlib.sha256(slot.encode()).hexdigest()[:16]
    return directory / f"slot-{digest}.lock"


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive lock on `path`, or None if held."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


def _write(descriptor: int, text: str) -> None:
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, text.encode(), 0)


class SqliteLeaderLocks(LeaderLocks):
    """File locks of this process, one per slot, plus its member lock."""

    def __init__(self, database: Path) -> None:
        self._directory = lock_directory(database)
        self._held: dict[str, int] = {}
        self._member: int | None = None
        self._member_path: Path | None = None

    def _join(self) -> None:
        if self._member is None:
            self._directory.mkdir(exist_ok=True)
            path = (
                self._directory
                / f"{MEMBER_PREFIX}{os.getpid()}-{uuid.uuid4().hex}.lock"
            )
            self._member = _try_lock(path)
            self._member_path = path

    @override
    async def try_acquire(self, slot: str) -> bool:
        self._join()
        if slot in self._held:
            return True
        descriptor = _try_lock(_slot_file(self._directory, slot))
        if descriptor is None:
            return False
        _write(descriptor, f"{slot}\n{process_identity()}\n")
        self._held[slot] = descriptor
        return True

    @override
    async def release(self, slot: str) -> None:
        descriptor = self._held.pop(slot, None)
        if descriptor is not None:
            _write(descriptor, "")
            os.close(descriptor)  # closing drops the flock

    @override
    async def alive(self) -> bool:
        return True  # a process cannot lose its own file locks

    @override
    async def members(self) -> int:
        self._join()
        count = 0
        for path in self._directory.glob(f"{MEMBER_PREFIX}*.lock"):
            descriptor = _try_lock(path)
            if descriptor is None:
                count += 1  # held by a live process (this one included)
            else:
                os.close(descriptor)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # a dead process's file
        return count

    @override
    async def aclose(self) -> None:
        for slot in list(self._held):
            await self.release(slot)
        if self._member is not None:
            if self._member_path is not None:  # unique to this instance: safe to go
                self._member_path.unlink(missing_ok=True)
            os.close(self._member)
            self._member = None


def slot_holders(database: Path, slots: Sequence[str]) -> dict[str, Holder]:
    """Who holds each slot's file lock now (slots nobody holds are left out)."""
    directory = lock_directory(database)
    holders = {}
    for slot in slots:
        path = _slot_file(directory, slot)
        if not path.exists():
            continue
        descriptor = _try_lock(path)
        if descriptor is not None:  # nobody holds it
            os.close(descriptor)
            continue
        lines = path.read_text().splitlines()
        identity = lines[1] if len(lines) > 1 else "unknown"
        pid = identity.rpartition(":")[2]
        holders[slot] = Holder(
            identity=identity, pid=int(pid) if pid.isdigit() else None
        )
    return holders
