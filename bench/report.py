"""What every benchmark's results file shares: the run's header, tables, figures and the files.

    run = capture_run()                      # at the start: date, machine, load, command line
    lines = [*header("Embedder benchmark", run), *table(["streams", "p99 ms"], rows, "rr")]
    write_results(results_stem(out_dir, "embedder", run.date), "\n".join(lines), data)

Results go to `<out>/<name>_<date>.md` and `.json`, each written atomically (a reader never sees
half a file, and an interrupted run leaves the previous results whole).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segue.files import write_atomically
from segue.machine import describe_machine

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
ALIGNMENTS = "lrc"


@dataclass(frozen=True)
class RunInfo:
    """When, where and how a benchmark ran, captured at its start."""

    date: str  # ISO date (local), the results file's suffix
    started_utc: str  # ISO timestamp, seconds
    machine: str  # segue.machine.describe_machine(), with the load average at the start
    load_average: tuple[float, float, float]  # 1, 5 and 15 minute run-queue lengths
    command: str  # the command line, as it could be typed again from the repository root

    def as_dict(self) -> dict[str, Any]:
        """The JSON fields of the header."""
        return {"date": self.date, "started_utc": self.started_utc, "machine": self.machine,
                "load_average": list(self.load_average), "command": self.command}


def command_line(argv: Sequence[str] | None = None) -> str:
    """`python <script> <args>` with the script relative to the repository when inside it."""
    args = list(sys.argv if argv is None else argv)
    script = Path(args[0]).resolve() if args else Path("?")
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return shlex.join(["python", str(shown), *args[1:]])


def capture_run(date: str | None = None, argv: Sequence[str] | None = None) -> RunInfo:
    """The header of a run starting now; `date` overrides today's (e.g. to redo a file)."""
    now = dt.datetime.now(dt.UTC)
    load = os.getloadavg()
    return RunInfo(
        date=date or dt.date.today().isoformat(),
        started_utc=now.isoformat(timespec="seconds"),
        machine=describe_machine(),
        load_average=(load[0], load[1], load[2]),
        command=command_line(argv),
    )


def header(title: str, run: RunInfo, notes: Sequence[str] = ()) -> list[str]:
    """A results file's first lines: title, date, machine (shared, so its load), command."""
    return [
        f"# {title}",
        "",
        f"Date: {run.date}. Machine: {run.machine} (at the start; other jobs share it).",
        f"Command: `{run.command}`",
        *notes,
        "",
    ]


def escape_cell(value: object) -> str:
    """A table cell's text: pipes escaped, line breaks folded (either would break the row)."""
    return " ".join(str(value).replace("|", r"\|").split("\n"))


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    """A markdown table, columns padded to equal width.

    `align` has one letter per column, `l`, `r` or `c` (missing letters: `l`); numbers read
    best right-aligned. Cells are formatted with `str` (format numbers before).
    """
    if len(align) > len(columns) or set(align) - set(ALIGNMENTS):
        raise ValueError(f"align {align!r}: one of l, r, c per column (at most {len(columns)})")
    cells = [[escape_cell(c) for c in columns]]
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row {row!r} has {len(row)} cells for {len(columns)} columns")
        cells.append([escape_cell(c) for c in row])
    letters = align.ljust(len(columns), "l")
    widths = [max(3, *(len(r[i]) for r in cells)) for i in range(len(columns))]
    rules = [_rule(a, w) for a, w in zip(letters, widths, strict=True)]
    lines = [_row(cells[0], widths, "l" * len(columns)), "|" + "|".join(rules) + "|"]
    return lines + [_row(r, widths, letters) for r in cells[1:]]


def _rule(letter: str, width: int) -> str:
    """The separator cell of a column `width` wide (plus its two spaces of padding)."""
    dashes = "-" * width
    return {"l": f"-{dashes}-", "r": f"-{dashes}:", "c": f":{dashes}:"}[letter]


def _row(cells: Sequence[str], widths: Sequence[int], letters: str) -> str:
    padded = [c.rjust(w) if a == "r" else c.center(w) if a == "c" else c.ljust(w)
              for c, w, a in zip(cells, widths, letters, strict=True)]
    return "| " + " | ".join(padded) + " |"


def with_range(value: float, spread: Sequence[float], digits: int = 1,
               range_digits: int = 0) -> str:
    """A median and the [min, max] of its repeats: `50.7 [49-68]`."""
    low, high = spread
    return f"{value:.{digits}f} [{low:.{range_digits}f}-{high:.{range_digits}f}]"


def before_after(before: float, after: float, digits: int = 1) -> str:
    """Two runs' figures side by side: `10.8 / 8.6`."""
    return f"{before:.{digits}f} / {after:.{digits}f}"


def ratio(numerator: float, denominator: float | None, digits: int = 2, suffix: str = "") -> str:
    """`numerator / denominator` formatted, or `-` when there is no denominator (or it is 0)."""
    if not denominator:
        return "-"
    return f"{numerator / denominator:.{digits}f}{suffix}"


def shares(fractions: Sequence[float]) -> str:
    """How work split over replicas, in percent (`50/50`); `-` for one replica."""
    return "/".join(f"{100 * x:.0f}" for x in fractions) if len(fractions) > 1 else "-"


def median_run(runs: Sequence[dict[str, Any]], ranges: Sequence[str] = ()) -> dict[str, Any]:
    """One row from repeated runs: the median of every field that varies, and for each key in
    `ranges` its `<key>_range` [min, max] beside it.

    Fields equal in every run (a level's settings) are kept as they are, so integers stay
    integers; lists of numbers are medians element by element; `repeats` counts the runs.
    """
    if not runs:
        raise ValueError("no runs to take the median of")
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [r[key] for r in runs]
        if all(v == first for v in values) or not isinstance(first, int | float | list):
            out[key] = first
        elif isinstance(first, list):
            out[key] = [statistics.median(column) for column in zip(*values, strict=True)]
        else:
            out[key] = statistics.median(values)
    out["repeats"] = len(runs)
    for key in ranges:
        if key in runs[0]:
            out[f"{key}_range"] = [min(r[key] for r in runs), max(r[key] for r in runs)]
    return out


def results_stem(out_dir: Path, name: str, date: str) -> Path:
    """`<out_dir>/<name>_<date>`: the results' path without suffix."""
    return out_dir / f"{name}_{date}"


def write_atomic(path: Path, text: str) -> None:
    """Writes `text` to `path` whole (see segue.files), creating its folder first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text)


def write_results(stem: Path, markdown: str, data: dict[str, Any]) -> tuple[Path, Path]:
    """Writes `<stem>.json` (indented) and `<stem>.md`; returns both paths (md, json)."""
    md, js = stem.with_name(stem.name + ".md"), stem.with_name(stem.name + ".json")
    write_atomic(js, json.dumps(data, indent=2) + "\n")
    write_atomic(md, markdown if markdown.endswith("\n") else markdown + "\n")
    return md, js
