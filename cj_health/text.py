"""Text at the edges: what the tool accepts from the command line and the environment, and how
it prints text it did not write.

- Input (`check_input`): valid UTF-8 (a non-UTF-8 byte reaches Python as a lone surrogate),
  and no control character: C0/C1 controls (ESC starts a terminal escape sequence), the
  Unicode line and paragraph separators, and the bidirectional overrides and isolates (they
  reorder what a reader sees). Free text (`--reason`) may hold tabs and line breaks, which
  its consumer folds into spaces.
- Output (`escape`): text read back from the database or the environment (a reason, a role
  name, a database name, an id the service wrote) is printed with those characters escaped
  (`\\x1b`, `\\u202e`), so it can never move the cursor, colour or reorder another
  operator's terminal. JSON output escapes them by itself (`json.dumps`, ASCII only).
"""

from __future__ import annotations

import unicodedata

from cj_health.errors import CjHealthError

# Format characters that reorder text on screen (Trojan Source): LRM/RLM, ALM, the embeddings,
# overrides and isolates.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
FREE_TEXT_WHITESPACE = frozenset("\t\n\r")


def is_unsafe(char: str) -> bool:
    """A character that must never reach a terminal as it is (module docstring)."""
    return unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in BIDI_CONTROLS


_NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escaped(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: object) -> str:
    """`text` with every unsafe character written as an escape (`\\x1b`, `\\n`, `\\u202e`)."""
    return "".join(_escaped(char) if is_unsafe(char) else char for char in str(text))


def check_input(value: str, what: str, *, free_text: bool = False) -> str:
    """`value` when it is valid UTF-8 without control characters (tabs and line breaks allowed
    in free text); else CjHealthError (exit 2) naming `what`."""
    for char in value:
        if unicodedata.category(char) == "Cs":
            raise CjHealthError(f"{what} is not valid UTF-8: {escape(value)}")
        if free_text and char in FREE_TEXT_WHITESPACE:
            continue
        if is_unsafe(char):
            raise CjHealthError(
                f"{what} holds a control character ({escape(char)}): {escape(value)}"
            )
    return value
