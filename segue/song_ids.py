"""What a song id may be, the same in every service, the SDK and the exports.

A song id is 1 to MAX_SONG_ID_CHARS characters of printable text: no control characters
(C0, DEL, C1: newlines and tabs included), surrogates, or line and paragraph separators, any
of which would break a log line, a cue sheet or a resume token's header.
"""

from __future__ import annotations

import unicodedata

MAX_SONG_ID_CHARS = 256
FORBIDDEN_CATEGORIES = ("Cc", "Cs", "Zl", "Zp")


def song_id_problem(song_id: str, field: str = "song_id") -> str | None:
    """Why `song_id` is not a valid song id, naming `field`; None when it is valid."""
    if not 1 <= len(song_id) <= MAX_SONG_ID_CHARS:
        return f"{field} must be 1 to {MAX_SONG_ID_CHARS} characters, got {len(song_id)}"
    for index, char in enumerate(song_id):
        if unicodedata.category(char) in FORBIDDEN_CATEGORIES:
            return (f"{field} holds the control character U+{ord(char):04X} at index {index}: "
                    "song ids are printable text, without newlines, tabs, DEL, other C0/C1 "
                    "control characters or line/paragraph separators")
    return None
