"""tools/verify_stream.py agrees with eventstore.hashing, without importing it."""

from __future__ import annotations

import ast
import importlib.util
import math
import random
import struct
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from eventstore.hashing import (
    GENESIS_HASH,
    canonical_event,
    canonical_json,
    chain_hash,
    format_occurred_at,
)
from eventstore.jsonvalues import dump_json, parse_json

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "verify_stream.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_stream_script", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = load_script()


def test_the_script_imports_only_the_standard_library() -> None:
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


# --- random JSON values, weighted towards the awkward corners ---

_SPECIAL_FLOATS = [
    0.0, -0.0, 1.0, -1.5, 0.1, 0.1 + 0.2, 1e20, 1e21, 1e-6, 1e-7, 1.5e-7,
    5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 9007199254740992.0,
    9007199254740994.0, 295147905179352830000.0, 1.2345678901234567e21,
    123456789012345680000.0, 333333333.3333333, 1e16, 1e300,
]  # fmt: skip
_SPECIAL_INTS = [
    0, -1, 2**31, 2**53 - 1, 2**53, 2**53 + 1, -(2**53 + 1), 2**63, 2**64 + 1,
    10**20, 10**21 - 1, 10**21, 10**21 + 1, -(10**21), 10**22, 10**30, 10**30 + 7,
    2**70, 10**308, 10**309, 10**400, 123456789012345678901234567890,
]  # fmt: skip
# Code points that matter: controls, quote and backslash, DEL, Latin-1, the
# line separators, BMP characters above the surrogates (U+FF61 sorts after
# astral characters in UTF-16), astral characters (surrogate pairs).
_CHARS = (
    [chr(c) for c in range(1, 0x20)]
    + ['"', "\\", "/", "\x7f", "\x85", "é", "ß", "\u2028", "\u2029", "€", "☃"]
    + ["\ud7ff", "\ue000", "\uff61", "\ufeff", "\uffff", "\U00010000", "\U0001d11e"]
    + ["\U0001f600", "\U0010ffff", "a", "b", "A", "Z", "0", " ", "_"]
)


def random_float(rng: random.Random) -> float:
    choice = rng.random()
    if choice < 0.3:
        return rng.choice(_SPECIAL_FLOATS) * rng.choice([1, -1])
    if choice < 0.6:
        # Any finite double, from random bits.
        while True:
            (value,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
            if math.isfinite(value):
                return float(value)
    # Short decimals near the ECMAScript cut-offs (1e-7, 1e21).
    return float(f"{rng.randint(1, 99999)}e{rng.randint(-30, 30)}")


def random_int(rng: random.Random) -> int:
    if rng.random() < 0.4:
        return rng.choice(_SPECIAL_INTS) * rng.choice([1, -1])
    return rng.randint(-(10 ** rng.randint(1, 40)), 10 ** rng.randint(1, 40))


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 8)))


def random_json(rng: random.Random, depth: int = 0) -> object:
    kinds: list[Callable[[], object]] = [
        lambda: None,
        lambda: rng.random() < 0.5,
        lambda: random_int(rng),
        lambda: random_float(rng),
        lambda: random_text(rng),
    ]
    if depth < 4:
        kinds += [
            lambda: [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))],
            lambda: {
                random_text(rng): random_json(rng, depth + 1)
                for _ in range(rng.randint(0, 5))
            },
        ]
    return rng.choice(kinds)()


@pytest.mark.parametrize("seed", range(8))
def test_the_script_encodes_like_the_package(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        value = random_json(rng)
        expected = canonical_json(value)
        assert script.canonical(value) == expected, value
        # What the script reads from an export line, it encodes alike.
        stored = dump_json(value)
        assert script.canonical(parse_json(stored)) == expected, stored
        read = script.json.loads(stored, parse_float=script.parse_number)
        assert script.canonical(read) == expected, stored


def test_numbers_parse_by_value_like_the_package() -> None:
    for text in ["1e+30", "1E30", "1.0", "1.5e1", "-0.0", "1e-400", "2.5e-3", "1e21"]:
        assert script.canonical(script.parse_number(text)) == canonical_json(
            parse_json(text)
        ), text


def exported_stream(
    stream_id: uuid.UUID, count: int, rng: random.Random, start: int
) -> list[dict[str, object]]:
    """A stream's export lines, hashed by eventstore.hashing (not by the script)."""
    previous = GENESIS_HASH
    lines: list[dict[str, object]] = []
    for version in range(1, count + 1):
        data = {"n": random_json(rng), "k": random_text(rng)}
        metadata = {"actor": random_text(rng), "extra": random_json(rng)}
        event_id = uuid.uuid4()
        occurred_at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
            microseconds=rng.randint(0, 10**12)
        )
        previous = chain_hash(
            previous,
            canonical_event(
                stream_id=stream_id,
                version=version,
                event_id=event_id,
                event_type="Note",
                schema_version=1,
                data_json=canonical_json(data),
                metadata_json=canonical_json(metadata),
                occurred_at=occurred_at,
            ),
        )
        lines.append(
            {
                "position": start + 10 * version,
                "transaction_id": None,
                "stream_id": str(stream_id),
                "stream_type": "execution",
                "version": version,
                "event_id": str(event_id),
                "type": "Note",
                "schema_version": 1,
                "data": data,
                "metadata": metadata,
                "occurred_at": format_occurred_at(occurred_at),
                "recorded_at": occurred_at.isoformat(),
                "hash": previous.hex(),
            }
        )
    return lines


def run_main(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = script.main([str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_interleaved_streams_of_random_data_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(7)
    ids = [uuid.uuid4() for _ in range(3)]
    streams = [exported_stream(i, 20, rng, start) for start, i in enumerate(ids)]
    archive = sorted(
        (line for stream in streams for line in stream),
        key=lambda line: str(line["position"]).zfill(12),
    )
    path = tmp_path / "archive.jsonl"
    path.write_text("".join(dump_json(line) + "\n" for line in archive), "utf-8")

    code, out, err = run_main(path, capsys)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        *(
            f"stream {i}: 20 events, head {stream[-1]['hash']}"
            for i, stream in zip(ids, streams, strict=True)
        ),
        "OK",
    ]

    # Any ISO 8601 spelling of the same instant is the same event.
    moved = dict(archive[5])
    moved["occurred_at"] = (
        datetime.fromisoformat(str(moved["occurred_at"]))
        .astimezone(timezone(timedelta(hours=5, minutes=30)))
        .isoformat()
    )
    archive[5] = moved
    path.write_text("".join(dump_json(line) + "\n" for line in archive), "utf-8")
    assert run_main(path, capsys)[0] == 0


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("missing.jsonl", None),
        ("empty.jsonl", b""),
        ("garbage.jsonl", b"this is not json\n"),
        ("array.jsonl", b"[1, 2, 3]\n"),
        ("fields.jsonl", b'{"position": 1}\n'),
        ("nan.jsonl", b'{"position": NaN}\n'),
        ("twice.jsonl", b'{"position": 1, "position": 2}\n'),
        ("broken.jsonl.gz", b"\x1f\x8b\x08\x00 not really gzip"),
        ("latin1.jsonl", '{"x": "caf\u00e9"}\n'.encode("latin-1")),
    ],
)
def test_unreadable_input_is_exit_2(
    tmp_path: Path, name: str, content: bytes | None
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    done = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_field_breaks_its_stream_not_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(3)
    stream_id = uuid.uuid4()
    lines = exported_stream(stream_id, 3, rng, 0)
    lines[1]["event_id"] = "not-a-uuid"
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(dump_json(line) + "\n" for line in lines), "utf-8")
    code, out, _ = run_main(path, capsys)
    assert code == 1
    assert out.startswith(f"stream {stream_id}: broken at position 20 (version 2): ")
