"""SQLite leadership: advisory file locks beside the database file.

SQLite lives on one machine, so the operating system's `flock` serves: it
is released when the holding process dies, SIGKILL included. Each slot has
a lock file holding its leader's ``host:pid``; each projector process also
holds a member lock file per group of slots it runs (a projection split N
ways), so the processes running a projection can count each other.

A projection's gate (docs/PROJECTIONS.md, "Lock order") is a lock file too:
a rebuild holds it exclusively; a projector peeks at it with a shared lock
before it queues for the database's writer lock.
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


def _member_prefix(group: str) -> str:
    """The start of the names of a group's member lock files."""
    digest = hashlib.sha256(group.encode()).hexdigest()[:16]
    return f"{MEMBER_PREFIX}{digest}-"


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
        self._members: dict[str, tuple[int, Path]] = {}  # group -> its member lock

    def _join(self, group: str) -> None:
        if group not in self._members:
            self._directory.mkdir(exist_ok=True)
            path = self._directory / (
                f"{_member_prefix(group)}{os.getpid()}-{uuid.uuid4().hex}.lock"
            )
            descriptor = _try_lock(path)
            if descriptor is not None:  # a name of its own: nobody else holds it
                self._members[group] = (descriptor, path)

    @override
    async def try_acquire(self, slot: str) -> bool:
        self._directory.mkdir(exist_ok=True)
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
    async def members(self, groups: Sequence[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for group in groups:
            self._join(group)
            count = 0
            for path in self._directory.glob(f"{_member_prefix(group)}*.lock"):
                descriptor = _try_lock(path)
                if descriptor is None:
                    count += 1  # held by a live process (this one included)
                else:
                    os.close(descriptor)
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()  # a dead process's file
            counts[group] = count
        return counts

    @override
    async def aclose(self) -> None:
        for slot in list(self._held):
            await self.release(slot)
        for descriptor, path in self._members.values():
            path.unlink(missing_ok=True)  # unique to this instance: safe to go
            os.close(descriptor)
        self._members = {}


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


def _gate_file(directory: Path, projection: str) -> Path:
    digest = hashlib.sha256(projection.encode()).hexdigest()[:16]
    return directory / f"gate-{digest}.lock"


def hold_gate(database: Path, projection: str) -> int | None:
    """An open descriptor holding `projection`'s gate, or None if it is held or peeked at."""
    directory = lock_directory(database)
    directory.mkdir(exist_ok=True)
    descriptor = _try_lock(_gate_file(directory, projection))
    if descriptor is not None:
        _write(descriptor, f"{projection}\n{process_identity()}\n")
    return descriptor


def release_gate(descriptor: int) -> None:
    """Give a gate taken by `hold_gate` up."""
    _write(descriptor, "")
    os.close(descriptor)  # closing drops the flock


def gate_holders(database: Path, projections: Sequence[str]) -> dict[str, Holder]:
    """Who holds each projection's gate now (projections nobody holds are left out).

    Peeks with a shared lock, which other peekers never turn away.
    """
    directory = lock_directory(database)
    holders = {}
    for projection in projections:
        try:
            descriptor = os.open(_gate_file(directory, projection), os.O_RDONLY)
        except FileNotFoundError:
            continue  # never held
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            lines = os.pread(descriptor, 4096, 0).decode(errors="replace").splitlines()
            identity = lines[1] if len(lines) > 1 else "unknown"
            pid = identity.rpartition(":")[2]
            holders[projection] = Holder(
                identity=identity, pid=int(pid) if pid.isdigit() else None
            )
        finally:
            os.close(descriptor)  # drops the peek's shared lock
    return holders
