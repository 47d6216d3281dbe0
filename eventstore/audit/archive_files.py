"""Archive files: gzip JSON lines of stored events, and the manifest beside them.

``NAME.jsonl.gz`` holds the events in the export form of `exporting`;
``NAME.manifest.json`` names the file, its sha256 and, per stream, the event
count and chain head. `read_archive` refuses a file that does not match its
manifest or whose chains do not verify.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from datetime import datetime
from typing import TYPE_CHECKING, Final
from uuid import UUID

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from eventstore import chains, errors, jsonvalues
from eventstore.audit.exporting import EXPORT_FORMAT, event_line, parse_event_lines

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from eventstore.events.envelope import RecordedEvent

ARCHIVE_FORMAT: Final = "eventstore-archive/1"
DATA_SUFFIX: Final = ".jsonl.gz"
MANIFEST_SUFFIX: Final = ".manifest.json"
_CHUNK: Final = 1 << 20


class ArchivedStream(BaseModel):
    """One archived execution: how many events, and its chain head."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream_id: UUID
    events: int = Field(ge=1)
    head_version: int = Field(ge=1)
    head_hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class ArchiveManifest(BaseModel):
    """What an archive file holds, and the digest that pins its bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str = ARCHIVE_FORMAT
    event_format: str = EXPORT_FORMAT
    file: str
    file_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: datetime
    finished_before: datetime
    events: int = Field(ge=1)
    streams: list[ArchivedStream] = Field(min_length=1)

    def to_bytes(self) -> bytes:
        """The manifest file's bytes (fields in a fixed order, so its digest is stable)."""
        return (jsonvalues.dump_json(self.model_dump(mode="json")) + "\n").encode()


def manifest_path_for(data_path: Path) -> Path:
    """``NAME.manifest.json`` beside ``NAME.jsonl.gz``."""
    return data_path.with_name(
        data_path.name.removesuffix(DATA_SUFFIX) + MANIFEST_SUFFIX
    )


def data_path_for(path: Path) -> Path:
    """The data file, given either the data file or its manifest."""
    if path.name.endswith(MANIFEST_SUFFIX):
        return path.with_name(path.name.removesuffix(MANIFEST_SUFFIX) + DATA_SUFFIX)
    return path


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, in lowercase hex."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_events(path: Path, events: Iterable[RecordedEvent]) -> None:
    """Write events as gzip JSON lines, durably (fsync), through a temporary name."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed:
            text = io.TextIOWrapper(compressed, encoding="utf-8", newline="\n")
            for event in events:
                text.write(event_line(event) + "\n")
            text.flush()
            text.detach()
        raw.flush()
        os.fsync(raw.fileno())
    temporary.replace(path)


def write_manifest(manifest: ArchiveManifest, path: Path) -> None:
    """Write the manifest durably, through a temporary name."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as raw:
        raw.write(manifest.to_bytes())
        raw.flush()
        os.fsync(raw.fileno())
    temporary.replace(path)


def read_manifest(path: Path) -> ArchiveManifest:
    """The manifest beside an archive file.

    Raises:
        RecordAltered: missing, unreadable, or not a manifest of this format.
    """
    manifest_path = manifest_path_for(data_path_for(path))
    try:
        manifest = ArchiveManifest.model_validate_json(manifest_path.read_bytes())
    except (OSError, pydantic.ValidationError) as exc:
        raise errors.RecordAltered(
            stream_id=None,
            position=None,
            reason=f"cannot read the archive manifest {manifest_path}: "
            + str(exc).splitlines()[0],
        ) from exc
    if manifest.format != ARCHIVE_FORMAT:
        raise errors.RecordAltered(
            stream_id=None,
            position=None,
            reason=f"{manifest_path} is not an {ARCHIVE_FORMAT} manifest",
        )
    return manifest


def read_archive(path: Path) -> tuple[ArchiveManifest, list[RecordedEvent]]:
    """An archive's manifest and stored events, after checking every digest.

    The file's sha256 must equal the manifest's, every stream's chain must
    verify from genesis, and the streams, counts and heads must equal the
    manifest's.

    Raises:
        RecordAltered: any of these does not hold (the first problem found).
        ValidationError: the file does not exist.
    """
    data_path = data_path_for(path)
    if not data_path.is_file():
        raise errors.ValidationError(f"no archive file at {data_path}")
    manifest = read_manifest(data_path)
    actual = file_sha256(data_path)
    if actual != manifest.file_sha256:
        raise errors.RecordAltered(
            stream_id=None,
            position=None,
            reason=f"{data_path.name}: sha256 {actual} differs from the manifest's "
            f"{manifest.file_sha256}",
        )
    try:
        with gzip.open(data_path, "rt", encoding="utf-8") as lines:
            events = list(parse_event_lines(lines))
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise errors.RecordAltered(
            stream_id=None, position=None, reason=f"{data_path.name}: {exc}"
        ) from exc
    check_streams(manifest, events)
    return manifest, events


def check_streams(manifest: ArchiveManifest, events: list[RecordedEvent]) -> None:
    """Every stream's chain verifies and matches the manifest's count and head.

    Raises:
        RecordAltered: the first stream that does not.
    """
    by_stream: dict[UUID, list[RecordedEvent]] = {}
    for event in events:
        by_stream.setdefault(event.stream_id, []).append(event)
    listed = {stream.stream_id: stream for stream in manifest.streams}
    for stream_id in by_stream.keys() - listed.keys():
        raise errors.RecordAltered(
            stream_id=stream_id, position=None, reason="not listed in the manifest"
        )
    for stream_id, stream in listed.items():
        stream_events = sorted(by_stream.get(stream_id, []), key=lambda e: e.version)
        head = chains.verify_chain(stream_events)
        if (
            len(stream_events) != stream.events
            or not stream_events
            or stream_events[-1].version != stream.head_version
            or head.hex() != stream.head_hash
        ):
            raise errors.RecordAltered(
                stream_id=stream_id,
                position=stream_events[-1].position if stream_events else None,
                reason=f"the archive holds {len(stream_events)} events where the "
                f"manifest lists {stream.events} ending at version "
                f"{stream.head_version}",
            )
    if len(events) != manifest.events:
        raise errors.RecordAltered(
            stream_id=None,
            position=None,
            reason=f"the archive holds {len(events)} events where the manifest "
            f"lists {manifest.events}",
        )
