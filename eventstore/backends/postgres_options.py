"""libpq's ``?options=`` of a database URL, as asyncpg's server settings.

A URL such as ``postgresql://app@db/app?options=-csearch_path%3Dstore`` is
how libpq users put session settings (a schema's search path, a statement
timeout) in the URL. asyncpg takes such settings as `server_settings`, and
SQLAlchemy hands a URL's query to ``asyncpg.connect``, which refuses
``options`` with a raw TypeError. So the store lifts the ``-c name=value``
settings out of the URL and gives them to every connection it opens.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from eventstore import errors

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

# libpq splits options at unescaped whitespace; a backslash escapes the next character.
_ARGUMENT: Final = re.compile(r"(?:\\.|\S)+")
_UNESCAPE: Final = re.compile(r"\\(.)")
_SETTING: Final = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*)=(.*)$", re.DOTALL)


def split_options(url: URL) -> tuple[URL, dict[str, str]]:
    """The URL without ``options``, and the settings its ``-c`` arguments make.

    Raises:
        ConfigurationError: ``options`` holds something other than
            ``-c name=value`` (or ``--name=value``) settings. The value is
            not quoted: it may hold a secret.
    """
    given = url.query.get("options")
    if given is None:
        return url, {}
    texts = [given] if isinstance(given, str) else list(given)
    settings: dict[str, str] = {}
    for text in texts:
        arguments = [_UNESCAPE.sub(r"\1", a) for a in _ARGUMENT.findall(text)]
        while arguments:
            argument = arguments.pop(0)
            if argument == "-c" and arguments:
                setting = arguments.pop(0)
            elif argument.startswith("-c") or argument.startswith("--"):
                setting = argument[2:]
            else:
                setting = ""
            match = _SETTING.match(setting)
            if match is None:
                raise errors.ConfigurationError(
                    "invalid options in the database URL: only settings as "
                    "`-c name=value` or `--name=value` are understood"
                )
            name, value = match.groups()
            settings[name.replace("-", "_")] = value
    return url.difference_update_query(["options"]), settings
