"""Redis keys as one line of text and back, for the CLI: a key is bytes, and
may hold anything, a newline or bytes that are not UTF-8 included.

The text is the key's UTF-8 with two escapes: ``\\\\`` for a backslash and
``\\xNN`` for each byte of anything else that is not printable (control
characters, line breaks, bytes that are not UTF-8). So a listed key is one
line, two keys never print alike, and the printed text reads back as the key."""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"\\(?:\\|x([0-9a-fA-F]{2}))")


def key_to_text(key: bytes) -> str:
    """``b"a\\nb\\xff"`` -> ``"a\\\\x0ab\\\\xff"``: printable, one line, reversible."""
    shown: list[str] = []
    text = key.decode("utf-8", errors="surrogateescape")
    for char in text:
        if char == "\\":
            shown.append("\\\\")
        elif char.isprintable() and not 0xDC80 <= ord(char) <= 0xDCFF:
            shown.append(char)
        else:  # its bytes: a control character's UTF-8, or a byte that is not UTF-8
            raw = char.encode("utf-8", errors="surrogateescape")
            shown.extend(f"\\x{byte:02x}" for byte in raw)
    return "".join(shown)


def text_to_key(text: str) -> bytes:
    """The key that :func:`key_to_text` printed as ``text``; ValueError for a
    backslash that starts neither escape."""
    parts: list[bytes] = []
    position = 0
    for match in _ESCAPE.finditer(text):
        parts.append(_plain(text[position:match.start()]))
        parts.append(b"\\" if match.group(1) is None else bytes([int(match.group(1), 16)]))
        position = match.end()
    parts.append(_plain(text[position:]))
    return b"".join(parts)


def _plain(text: str) -> bytes:
    if "\\" in text:
        raise ValueError("a key's text takes \\\\ for a backslash and \\xNN for a byte; "
                         f"no other escape (in {text!r})")
    return text.encode("utf-8", errors="surrogateescape")
