"""Database URLs as they may be shown: no password, whatever the URL's shape.

Every message, banner and log line that names a database shows
`redact_url(url)`: the password, and the value of every query parameter not
known to be harmless (``?password=``, ``?options=``, ``?sslpassword=``...),
become ``***``; a URL that does not parse is not shown at all, only its
scheme. Text that did not come from us (a driver's error) goes through
`scrub`, which hides every secret of every URL this process has opened.
"""

from __future__ import annotations

import re
import threading
from typing import Final
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

HIDDEN: Final = "***"
# Query parameters whose values are shown; every other one is hidden, since
# drivers keep adding ways to pass a secret (password, sslpassword, options).
SHOWN_QUERY_KEYS: Final = frozenset(
    {
        "application_name",
        "cache",
        "check_same_thread",
        "connect_timeout",
        "dbname",
        "host",
        "immutable",
        "mode",
        "port",
        "ssl",
        "sslmode",
        "target_session_attrs",
        "timeout",
        "uri",
        "user",
    }
)
# Shorter secrets are hidden inside URLs but not searched for in free text,
# where replacing two letters everywhere would make any message unreadable.
MIN_SCRUBBED_LENGTH: Final = 4
# Only a known scheme is shown of a malformed URL: `s3cr3t:x` has none.
_SCHEME: Final = re.compile(
    r"^\s*((?:postgres|postgresql|sqlite|mysql|mariadb|oracle|mssql)(?:\+\w+)?):",
    re.IGNORECASE,
)

_PIECES: Final = re.compile(r"[\s=,]+")

# Whole secrets (a password, a parameter's whole value) are hidden wherever
# they stand; a piece split out of `options` only as a word of its own, or
# `-csearch_path=other` would turn every "another" into "an***".
_secrets: set[str] = set()
_pieces: set[str] = set()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def parse_url(url: str | URL) -> URL | None:
    """The URL parsed, or None when it does not parse (never raises)."""
    if isinstance(url, URL):
        return url
    try:
        return make_url(url)
    except (ArgumentError, ValueError, TypeError):
        return None


def redact_url(url: str | URL) -> str:
    """The URL as it may be shown: without its password or secret parameters.

    A URL that does not parse is shown as its scheme alone: where the
    password is in a malformed URL cannot be known.
    """
    parsed = parse_url(url)
    if parsed is None:
        return _unparsed(str(url))
    query: dict[str, str | tuple[str, ...]] = {}
    for key, value in parsed.query.items():
        shown = key.lower() in SHOWN_QUERY_KEYS
        if isinstance(value, tuple):
            query[key] = tuple(v if shown else HIDDEN for v in value)
        else:
            query[key] = value if shown else HIDDEN
    host = parsed.host
    if host is not None and "@" in host:
        # `user:pa@ss@host`: the part before the last @ is the password's tail.
        host = host.rsplit("@", 1)[1]
    shown_url = parsed.set(
        # `s3cr3t://...`: an unknown scheme may be a secret typed in the wrong place.
        drivername=parsed.drivername
        if _SCHEME.match(f"{parsed.drivername}:")
        else HIDDEN,
        host=host,
        query=query,
        password=HIDDEN if parsed.password is not None else None,
    )
    # render_as_string percent-encodes the stars of hidden parameters.
    return shown_url.render_as_string(hide_password=True).replace("%2A%2A%2A", HIDDEN)


def remember_secrets(url: str | URL) -> None:
    """Note the URL's secrets, so that `scrub` hides them in any text."""
    parsed = parse_url(url)
    if parsed is None:
        return
    wholes = [parsed.password] if parsed.password else []
    pieces = []
    for key, value in parsed.query.items():
        if key.lower() not in SHOWN_QUERY_KEYS:
            for whole in value if isinstance(value, tuple) else [value]:
                wholes.append(whole)
                # The server quotes back a piece of `options=-c name=value`.
                pieces.extend(_PIECES.split(whole))
    global _pattern  # noqa: PLW0603 - the one cache of the remembered secrets
    with _lock:
        _secrets.update(_forms(wholes))
        _pieces.update(_forms(pieces) - _secrets)
        _pattern = None


def _forms(secrets: list[str]) -> set[str]:
    """Each secret as a driver may quote it back: as written, decoded or re-encoded."""
    forms = set()
    for secret in map(str, secrets):
        forms.update({secret, quote(secret, safe=""), quote_plus(secret)})
    return {form for form in forms if len(form) >= MIN_SCRUBBED_LENGTH}


def scrub(text: str) -> str:
    """The text with every remembered secret replaced by ***."""
    global _pattern  # noqa: PLW0603 - the one cache of the remembered secrets
    with _lock:
        if _pattern is None and (_secrets or _pieces):
            # The longest first, so that a secret holding another goes whole.
            found = [(s, re.escape(s)) for s in _secrets]
            found += [(s, rf"(?<!\w){re.escape(s)}(?!\w)") for s in _pieces]
            found.sort(key=lambda secret: len(secret[0]), reverse=True)
            _pattern = re.compile("|".join(pattern for _, pattern in found))
        pattern = _pattern
    return text if pattern is None else pattern.sub(HIDDEN, text)


def _unparsed(text: str) -> str:
    match = _SCHEME.match(text)
    scheme = f"{match.group(1)}:" if match else ""
    return f"{scheme}{HIDDEN} (malformed; not shown, it may hold a password)"
