r"""Text from the log and the reference tables, made safe to print.

Anything a user or a service wrote (a worker id, a graph name, an error
message, a reason, an archive's file name) reaches the terminal through
`safe`: a rich `Text`, which Rich never reads as markup (`[/x]` would crash
it, `[bold red]FAKE[/]` would style it), with every control character shown
as an escape (`\x1b` would let the data clear the screen or retitle the
window, a newline would forge a line, a bidi override would reorder one).
"""

from __future__ import annotations

import re
from typing import Final

from rich.text import Text

# C0 and C1 controls, DEL, and the invisible characters that reorder or
# break lines (bidi embeddings, overrides and isolates; line separators).
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def clean(value: object) -> str:
    """The value's text with every control character written as an escape."""
    return _UNSAFE.sub(_escaped, str(value))


def safe(value: object) -> Text:
    """The value as plain text for Rich: no markup, no control characters."""
    return Text(clean(value))
