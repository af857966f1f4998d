"""Builds the labelled real-composition set (bench/midi_set.py) under data/midi_set/.

Run: python scripts/build_midi_set.py (part of `make data`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is not installed

from bench.midi_set import SET_DIR, build


def main() -> None:
    start = time.monotonic()
    entries = build()
    pieces = {e["name"] for e in entries}
    held = {e["name"] for e in entries if e["split"] == "heldout"}
    print(
        f"MIDI set: {len(pieces)} pieces ({len(held)} held out), {len(entries)} renderings "
        f"in {SET_DIR} ({time.monotonic() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
