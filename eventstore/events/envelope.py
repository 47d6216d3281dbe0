"""Event envelopes: what a writer appends (NewEvent) and what a reader gets (RecordedEvent)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Final, cast
from uuid import UUID, uuid4

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SkipValidation

from eventstore import errors, hashing, jsonvalues
from eventstore.arguments import INT32_MAX, StoredText, checked_int, checked_mapping
from eventstore.events import payloads
from eventstore.events.checkpoint import Checkpoint
from eventstore.jsonvalues import JSONObject
from eventstore.times import as_utc
from eventstore.trusted import construct

EVENT_TYPE_PATTERN: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$")


def _id_to_str(value: object) -> object:
    return str(value) if isinstance(value, UUID) else value


OptionalId = Annotated[StoredText | None, pydantic.BeforeValidator(_id_to_str)]


class EventMetadata(BaseModel):
    """Who and what caused an event; free extra keys must be JSON values."""

    model_config = ConfigDict(frozen=True, extra="allow")

    actor: StoredText | None = Field(default=None, description="who caused the event")
    correlation_id: OptionalId = Field(
        default=None, description="the id shared by everything one request caused"
    )
    causation_id: OptionalId = Field(
        default=None, description="the id of the message or event that caused this one"
    )

    @classmethod
    def from_stored(cls, stored: JSONObject) -> EventMetadata:
        """Metadata read back from the log, trusted as written (no validation)."""
        if not stored:
            return EMPTY_METADATA
        given = stored.keys() & _METADATA_FIELDS
        return construct(
            cls,
            {name: stored.get(name) for name in _METADATA_FIELDS},
            extra={k: v for k, v in stored.items() if k not in _METADATA_FIELDS},
            fields_set=given,
        )

    def as_json(self) -> JSONObject:
        """The metadata as stored: set keys only, in a JSON-able form."""
        dumped: JSONObject = self.model_dump(mode="json", exclude_none=True)
        return dumped


EMPTY_METADATA: Final = EventMetadata()
_METADATA_FIELDS: Final = tuple(EventMetadata.model_fields)


def stored_metadata_parser() -> Callable[[str], EventMetadata]:
    """A parser of stored metadata texts that parses each distinct text once.

    The events of one request share their actor and ids, so a batch read
    from the log repeats few texts; the models are frozen and can be shared.
    Use one parser per batch: it keeps what it parsed.
    """
    parsed: dict[str, EventMetadata] = {}

    def parse(text: str) -> EventMetadata:
        metadata = parsed.get(text)
        if metadata is None:
            metadata = parsed[text] = EventMetadata.from_stored(
                jsonvalues.parse_json_object(text)
            )
        return metadata

    return parse


def coerce_metadata(
    value: EventMetadata | Mapping[str, object] | None,
) -> EventMetadata:
    """Accept metadata as a model, a mapping or None; refuse anything malformed.

    Raises:
        ValidationError: a field has the wrong type or an extra key holds no JSON.
    """
    if value is None:
        return EMPTY_METADATA
    if isinstance(value, EventMetadata):
        metadata = value
    else:
        try:
            metadata = EventMetadata.model_validate(
                dict(checked_mapping("metadata", value))
            )
        except pydantic.ValidationError as exc:
            raise errors.ValidationError.from_pydantic(exc, "metadata") from exc
    if metadata.model_extra:
        # Extras must already be JSON.
        hashing.canonical_json(metadata.model_extra, what="metadata")
    return metadata


class NewEvent(BaseModel):
    """An event to append. Registered types are validated against their payload model.

    Build one from a payload model (``NewEvent.of(ExecutionStarted(worker_id="w"))``)
    or from a type name and a data mapping. Invalid input raises the store's
    ``ValidationError`` at construction, so nothing malformed reaches the log.
    """

    model_config = ConfigDict(frozen=True)

    type: str
    data: Annotated[JSONObject, SkipValidation]
    metadata: EventMetadata
    event_id: UUID
    occurred_at: datetime
    schema_version: int

    # Canonical encodings, computed once at construction and reused by the
    # append (stored text) and the hash chain.
    _data_json: str = pydantic.PrivateAttr()
    _metadata_json: str = pydantic.PrivateAttr()
    _occurred_at_text: str = pydantic.PrivateAttr()
    # Whether `data` is what a reader parses back from `_data_json`: the
    # encoder's reading of it, when it knew that for free (then `data` holds
    # that reading, `hashing.canonical_json_read`).
    _data_is_read: bool = pydantic.PrivateAttr(default=False)

    def __init__(
        self,
        *,
        type: str,
        data: Mapping[str, object] | None = None,
        metadata: EventMetadata | Mapping[str, object] | None = None,
        event_id: UUID | str | None = None,
        occurred_at: datetime | None = None,
        schema_version: int | None = None,
    ) -> None:
        if not isinstance(type, str) or not EVENT_TYPE_PATTERN.match(type):
            raise errors.ValidationError(
                f"invalid event type {type!r}: letters, digits and _ . : - only"
            )
        occurred = (
            datetime.now(UTC)
            if occurred_at is None
            else as_utc(occurred_at, "occurred_at")
        )
        if schema_version is not None:
            checked_int("schema_version", schema_version, low=1, high=INT32_MAX)
        checked_data, version = _validated_data(type, data, schema_version)
        data_json, data_read = hashing.canonical_json_read(checked_data)
        try:
            super().__init__(
                type=type,
                data=checked_data if data_read is None else data_read,
                metadata=coerce_metadata(metadata),
                event_id=event_id if event_id is not None else uuid4(),
                occurred_at=occurred,
                schema_version=version,
            )
        except pydantic.ValidationError as exc:
            raise errors.ValidationError.from_pydantic(exc, "event") from exc
        self._data_json = data_json
        self._data_is_read = data_read is not None
        self._metadata_json = _metadata_text(self.metadata)
        self._occurred_at_text = hashing.format_occurred_at(self.occurred_at)

    @classmethod
    def of(
        cls,
        payload: payloads.EventPayload,
        *,
        metadata: EventMetadata | Mapping[str, object] | None = None,
        event_id: UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> NewEvent:
        """Wrap a payload model in an envelope.

        A registered payload model checked its fields when it was built (it
        is frozen), so its data is not validated again, only encoded; the
        lifecycle commands build every event this way. (A payload made with
        `model_construct` or changed by `model_copy(update=...)` skipped that
        check: build them normally.)

        Raises:
            ValidationError: the data is not JSON the log can hold (a NUL
                character, a NaN), or the metadata, id or time is invalid.
        """
        model = type(payload)
        if (
            payloads.PAYLOAD_TYPES.get(model.event_type) is not model
            or not (event_id is None or type(event_id) is UUID)
            or not EVENT_TYPE_PATTERN.match(model.event_type)
        ):
            return cls(
                type=payload.event_type,
                data=payload.model_dump(mode="json"),
                metadata=metadata,
                event_id=event_id,
                occurred_at=occurred_at,
            )
        dumped: JSONObject = payload.model_dump(mode="json")
        data_json, data_read = hashing.canonical_json_read(
            dumped, what=f"{model.event_type} data"
        )
        checked_metadata = coerce_metadata(metadata)
        occurred = (
            datetime.now(UTC)
            if occurred_at is None
            else as_utc(occurred_at, "occurred_at")
        )
        fields = {
            "type": model.event_type,
            "data": dumped if data_read is None else data_read,
            "metadata": checked_metadata,
            "event_id": uuid4() if event_id is None else event_id,
            "occurred_at": occurred,
            "schema_version": model.schema_version,
        }
        private = {
            "_data_json": data_json,
            "_data_is_read": data_read is not None,
            "_metadata_json": _metadata_text(checked_metadata),
            "_occurred_at_text": hashing.format_occurred_at(occurred),
        }
        return construct(cls, fields, private=private)

    # The accessors below read pydantic's store of private attributes
    # directly: through `self._data_json`, BaseModel.__getattr__ costs 1.8 µs
    # a read, and an append reads them several times.
    @property
    def data_json(self) -> str:
        """The canonical JSON text of `data`."""
        return cast("dict[str, str]", self.__pydantic_private__)["_data_json"]

    @property
    def metadata_json(self) -> str:
        """The canonical JSON text of `metadata`."""
        return cast("dict[str, str]", self.__pydantic_private__)["_metadata_json"]

    def data_as_read(self) -> JSONObject:
        """The data as a reader will get it from the log: parsed from its canonical text.

        Numbers have exactly the values a later read gives. Usually `data`
        itself (do not change it), when that is already its reading.
        """
        if cast("dict[str, bool]", self.__pydantic_private__)["_data_is_read"]:
            return self.data
        return jsonvalues.parse_json_object(self.data_json)

    @property
    def occurred_at_text(self) -> str:
        """The canonical text of `occurred_at` (`hashing.format_occurred_at`)."""
        return cast("dict[str, str]", self.__pydantic_private__)["_occurred_at_text"]


def _metadata_text(metadata: EventMetadata) -> str:
    if metadata is EMPTY_METADATA:
        return "{}"
    return hashing.canonical_json(metadata.as_json())


def _validated_data(
    event_type: str, data: Mapping[str, object] | None, schema_version: int | None
) -> tuple[JSONObject, int]:
    if data is not None and not isinstance(data, Mapping):
        raise errors.ValidationError(
            f"invalid {event_type} data: a mapping is required, not {type(data).__name__}"
        )
    model = payloads.PAYLOAD_TYPES.get(event_type)
    if model is None:
        # An event type of the user's own: any JSON object (the envelope's
        # canonical encoding refuses anything else), version as given.
        plain: JSONObject = dict(data or {})  # type: ignore[arg-type]
        return plain, schema_version if schema_version is not None else 1
    if schema_version not in (None, model.schema_version):
        raise errors.ValidationError(
            f"invalid {event_type}: writers record schema_version "
            f"{model.schema_version}, not {schema_version}"
        )
    try:
        instance = model.model_validate(dict(data or {}))
    except pydantic.ValidationError as exc:
        raise errors.ValidationError.from_pydantic(exc, f"{event_type} data") from exc
    dumped: JSONObject = instance.model_dump(mode="json")
    return dumped, model.schema_version


class RecordedEvent(BaseModel):
    """An event as recorded in the log, upcast to its current schema version."""

    model_config = ConfigDict(frozen=True)

    position: int = Field(description="global, increasing position in the log")
    stream_id: UUID
    version: int = Field(description="1, 2, 3 ... within the stream")
    stream_type: str
    event_id: UUID
    type: str
    schema_version: int
    data: Annotated[JSONObject, SkipValidation]
    metadata: EventMetadata
    occurred_at: datetime = Field(description="producer clock")
    recorded_at: datetime = Field(description="database clock")
    transaction_id: int | None = Field(
        default=None, description="the PostgreSQL transaction that wrote it"
    )
    epoch: int = Field(
        default=0, description="the restore epoch it was written in (PostgreSQL)"
    )
    hash: bytes = Field(description="sha256 chained to the stream's previous event")

    @classmethod
    def from_log(
        cls,
        *,
        position: int,
        stream_id: UUID,
        version: int,
        stream_type: str,
        event_id: UUID,
        event_type: str,
        schema_version: int,
        data: JSONObject,
        metadata: EventMetadata,
        occurred_at: datetime,
        recorded_at: datetime,
        transaction_id: int | None,
        chain_hash: bytes,
        epoch: int = 0,
    ) -> RecordedEvent:
        """An event as read back from the log: trusted as written, not validated."""
        return construct(
            cls,
            {
                "position": position,
                "stream_id": stream_id,
                "version": version,
                "stream_type": stream_type,
                "event_id": event_id,
                "type": event_type,
                "schema_version": schema_version,
                "data": data,
                "metadata": metadata,
                "occurred_at": occurred_at,
                "recorded_at": recorded_at,
                "transaction_id": transaction_id,
                "epoch": epoch,
                "hash": chain_hash,
            },
        )

    @property
    def stored_metadata(self) -> JSONObject:
        """The metadata as stored (what the hash covers)."""
        return self.metadata.as_json()

    @property
    def checkpoint(self) -> Checkpoint:
        """Where read_all(after=...) resumes to read the events after this one."""
        return Checkpoint.of(
            epoch=self.epoch,
            transaction_id=self.transaction_id or 0,
            position=self.position,
        )

    def payload(self) -> payloads.EventPayload:
        """The data as its registered payload model.

        Raises:
            ValidationError: the type is not registered, or the data does not fit.
        """
        model = payloads.PAYLOAD_TYPES.get(self.type)
        if model is None:
            raise errors.ValidationError(f"no payload model registered for {self.type}")
        try:
            return model.model_validate(self.data)
        except pydantic.ValidationError as exc:
            raise errors.ValidationError.from_pydantic(
                exc, f"{self.type} data"
            ) from exc
