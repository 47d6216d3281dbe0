"""A PostgreSQL cluster of a test's own: initdb + pg_ctl on a free port.

For what the shared server must not see: a restore into a cluster whose
transaction counter starts afresh, a server restart. The cluster lives in a
temporary folder and is stopped (immediately) and removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

PG_BIN = Path(
    os.environ.get("EVENTSTORE_TEST_PG_BIN")
    or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/usr/bin"))
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as the postgres user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _run(command: list[str]) -> None:
    subprocess.run(_as_postgres(command), check=True, capture_output=True, timeout=120)


@dataclass(frozen=True)
class Cluster:
    """A running throwaway cluster."""

    port: int
    data: Path

    def url(self, database: str = "postgres") -> str:
        """A URL of one of its databases."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def restart(self) -> None:
        """Stop it at once (as a crash would) and start it again on the same port."""
        _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"])
        self.start()

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}"
        _run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.data / "server.log"),
                "-w",
                "start",
            ]
        )


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A fresh cluster (trust auth, user postgres) for the duration of the block."""
    folder = Path(tempfile.mkdtemp(prefix="eventstore-cluster-"))
    data = folder / "data"
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, user="postgres")
        _run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ]
        )
        cluster = Cluster(port=_free_port(), data=data)
        cluster.start()
        try:
            yield cluster
        finally:
            subprocess.run(
                _as_postgres(
                    [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
                ),
                check=False,
                capture_output=True,
                timeout=60,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def dump_and_restore(source_url: str, cluster: Cluster, database: str) -> None:
    """pg_dump -Fc the source database, pg_restore it into a new database there."""
    with tempfile.TemporaryDirectory() as folder:
        dump = Path(folder) / "store.dump"
        subprocess.run(
            [str(PG_BIN / "pg_dump"), "-Fc", "-f", str(dump), "-d", source_url],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [
                str(PG_BIN / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(cluster.port),
                "-U",
                "postgres",
                database,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            [
                str(PG_BIN / "pg_restore"),
                "--no-owner",
                "-d",
                cluster.url(database),
                str(dump),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
