"""Key names and the Camelot wheel used by DJs to find harmonically compatible keys."""

from __future__ import annotations

import re
from typing import Literal

KeyMode = Literal["major", "minor"]

# Spelling most players and DJ tools show (flats for the black keys except F#/C#).
PITCH_CLASS_NAMES: tuple[str, ...] = (
    "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
)  # fmt: skip

_CODE = re.compile(r"^(1[0-2]|[1-9])([AB])$")


def key_name(tonic: int, mode: KeyMode) -> str:
    """Human-readable key name such as "F# minor"."""
    return f"{PITCH_CLASS_NAMES[_pitch_class(tonic)]} {mode}"


def camelot(tonic: int, mode: KeyMode) -> str:
    """Camelot code of a key: "8B" is C major, "8A" is A minor."""
    pc = _pitch_class(tonic)
    if mode == "minor":
        pc = (pc + 3) % 12  # a minor key sits at the number of its relative major
    elif mode != "major":
        raise ValueError(f"mode must be 'major' or 'minor', not {mode!r}")
    # Each hour clockwise is a fifth up; C major is hour 8.
    number = (pc * 7 + 7) % 12 + 1
    return f"{number}{'B' if mode == 'major' else 'A'}"


def parse_camelot(code: str) -> tuple[int, KeyMode]:
    """Tonic pitch class and mode of a Camelot code; ValueError when malformed."""
    match = _CODE.match(code.strip().upper())
    if match is None:
        raise ValueError(f"not a Camelot code: {code!r}")
    number, letter = int(match.group(1)), match.group(2)
    # Inverse of camelot(): hour -> pitch class of the major key (7 is its own inverse mod 12).
    major_pc = ((number - 8) * 7) % 12
    if letter == "B":
        return major_pc, "major"
    return (major_pc - 3) % 12, "minor"


def camelot_neighbours(code: str) -> tuple[str, str, str, str]:
    """Codes that mix well with `code`: itself, one hour either way, and its relative key.

    The order is (same, +1 hour, -1 hour, relative major/minor).
    """
    tonic, mode = parse_camelot(code)
    normalised = camelot(tonic, mode)
    number, letter = int(normalised[:-1]), normalised[-1]
    up = number % 12 + 1
    down = (number - 2) % 12 + 1
    other = "A" if letter == "B" else "B"
    return normalised, f"{up}{letter}", f"{down}{letter}", f"{number}{other}"


def keys_compatible(code_a: str, code_b: str) -> bool:
    """True when two Camelot codes are the same or adjacent on the wheel."""
    return parse_camelot(code_b) in {parse_camelot(c) for c in camelot_neighbours(code_a)}


def _pitch_class(tonic: int) -> int:
    if not 0 <= tonic <= 11:
        raise ValueError(f"tonic pitch class must be 0-11, not {tonic}")
    return tonic
