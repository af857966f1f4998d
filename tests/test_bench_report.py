"""bench/report.py: the header, tables, figures and files every benchmark's results share."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from bench import report as rep

REPO = Path(__file__).resolve().parents[1]


def _cells(line: str) -> list[str]:
    """A markdown row's cells, split on pipes that are not escaped."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_a_table_pads_every_column_so_the_pipes_line_up() -> None:
    rows = [["segue_stream", "6.74", 984], ["mecomp", "47.57", 7]]
    lines = rep.table(["graph", "ms", "size"], rows, "lrr")
    assert len({len(line) for line in lines}) == 1
    pipes = {tuple(m.start() for m in re.finditer(r"\|", line)) for line in lines}
    assert len(pipes) == 1
    assert lines[0] == "| graph        | ms    | size |"
    assert lines[2] == "| segue_stream |  6.74 |  984 |"
    assert lines[3] == "| mecomp       | 47.57 |    7 |"


def test_the_separator_row_marks_each_columns_alignment() -> None:
    lines = rep.table(["left", "right", "centre"], [["a", "b", "c"]], "lrc")
    assert _cells(lines[1]) == ["------", "------:", ":------:"]
    assert lines[2] == "| a    |     b |   c    |"


def test_columns_without_an_alignment_letter_are_left_aligned() -> None:
    lines = rep.table(["a", "b"], [["x", "y"]], "r")
    assert lines[1] == "|----:|-----|"
    assert lines[2] == "|   x | y   |"


def test_pipes_in_cells_are_escaped_and_line_breaks_folded() -> None:
    lines = rep.table(["error", "count"], [["tempo | key\nmismatch", 3]])
    assert lines[2].startswith(r"| tempo \| key mismatch | 3")
    assert _cells(lines[2]) == [r"tempo \| key mismatch", "3"]
    assert len(lines) == 3


def test_a_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        rep.table(["a", "b", "c"], [[1, 2]])


def test_alignments_other_than_l_r_c_or_more_than_the_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="align"):
        rep.table(["a"], [[1]], "x")
    with pytest.raises(ValueError, match="align"):
        rep.table(["a"], [[1]], "rr")


def test_a_table_without_rows_is_its_header_and_separator() -> None:
    assert rep.table(["streams", "p99 ms"], [], "rr") == ["| streams | p99 ms |",
                                                         "|--------:|-------:|"]


def test_figures_format_medians_ranges_before_after_ratios_and_shares() -> None:
    assert rep.with_range(50.71, [49.2, 68.4]) == "50.7 [49-68]"
    assert rep.with_range(1039.4, (948.0, 1076.2), 0) == "1039 [948-1076]"
    assert rep.before_after(10.84, 8.63) == "10.8 / 8.6"
    assert rep.before_after(1.51, 1.1, 2) == "1.51 / 1.10"
    assert rep.ratio(1039.0, 472.0) == "2.20"
    assert rep.ratio(47.57, 6.74, 1, "x") == "7.1x"
    assert rep.ratio(1.0, None) == "-"
    assert rep.ratio(1.0, 0.0) == "-"
    assert rep.shares([0.5, 0.5]) == "50/50"
    assert rep.shares([0.333, 0.667]) == "33/67"
    assert rep.shares([1.0]) == "-"


def test_the_median_run_keeps_settings_and_takes_medians_of_what_varied() -> None:
    runs = [
        {"streams": 8, "p99_ms": 15.0, "x_realtime": 800.0, "split": [0.4, 0.6], "note": "a"},
        {"streams": 8, "p99_ms": 19.0, "x_realtime": 780.0, "split": [0.5, 0.5], "note": "b"},
        {"streams": 8, "p99_ms": 14.0, "x_realtime": 850.0, "split": [0.6, 0.4], "note": "c"},
    ]
    row = rep.median_run(runs, ("p99_ms", "x_realtime", "absent"))
    assert row["streams"] == 8 and isinstance(row["streams"], int)
    assert row["p99_ms"] == 15.0
    assert row["x_realtime"] == 800.0
    assert row["split"] == [0.5, 0.5]
    assert row["note"] == "a"  # text that varies: the first run's
    assert row["repeats"] == 3
    assert row["p99_ms_range"] == [14.0, 19.0]
    assert row["x_realtime_range"] == [780.0, 850.0]
    assert "absent_range" not in row


def test_the_median_of_no_runs_is_refused() -> None:
    with pytest.raises(ValueError, match="no runs"):
        rep.median_run([])


def test_the_command_line_names_the_script_from_the_repository_and_quotes_arguments() -> None:
    argv = [str(REPO / "bench" / "bench_embedder.py"), "--note", "busy machine", "--seconds", "20"]
    assert rep.command_line(argv) == (
        "python bench/bench_embedder.py --note 'busy machine' --seconds 20")
    assert rep.command_line(["/opt/elsewhere/run.py"]) == "python /opt/elsewhere/run.py"


def test_a_run_records_todays_date_the_machine_its_load_and_its_command() -> None:
    run = rep.capture_run(argv=[str(REPO / "bench" / "bench_load.py"), "--rate", "8"])
    assert run.date == dt.date.today().isoformat()
    assert dt.datetime.fromisoformat(run.started_utc).utcoffset() == dt.timedelta(0)
    assert "cores" in run.machine and "load average" in run.machine
    assert len(run.load_average) == 3 and all(x >= 0 for x in run.load_average)
    assert run.command == "python bench/bench_load.py --rate 8"
    assert rep.capture_run("2026-11-21", argv=["x.py"]).date == "2026-11-21"
    assert run.as_dict()["command"] == run.command
    assert run.as_dict()["load_average"] == list(run.load_average)


def test_the_header_gives_title_date_machine_command_then_notes() -> None:
    run = rep.RunInfo("2026-11-21", "2026-11-21T16:36:00+00:00", "AMD EPYC, 2 cores",
                      (0.5, 0.8, 1.4), "python bench/bench_load.py")
    assert rep.header("Load run", run, ["Shared machine."]) == [
        "# Load run",
        "",
        "Date: 2026-11-21. Machine: AMD EPYC, 2 cores (at the start; other jobs share it).",
        "Command: `python bench/bench_load.py`",
        "Shared machine.",
        "",
    ]


def test_results_are_written_as_markdown_and_json_beside_each_other(tmp_path: Path) -> None:
    stem = rep.results_stem(tmp_path / "results", "embedder", "2026-11-21")
    assert stem == tmp_path / "results" / "embedder_2026-11-21"
    md, js = rep.write_results(stem, "# Embedder", {"levels": [{"streams": 1, "p99_ms": 3.2}]})
    assert md == tmp_path / "results" / "embedder_2026-11-21.md"
    assert js == tmp_path / "results" / "embedder_2026-11-21.json"
    assert md.read_text() == "# Embedder\n"
    assert json.loads(js.read_text()) == {"levels": [{"streams": 1, "p99_ms": 3.2}]}
    assert sorted(p.name for p in stem.parent.iterdir()) == [js.name, md.name]


def test_a_stem_without_a_date_keeps_its_name(tmp_path: Path) -> None:
    md, js = rep.write_results(tmp_path / "model_speed", "x\n", {})
    assert (md.name, js.name) == ("model_speed.md", "model_speed.json")
    assert md.read_text() == "x\n"


def test_rewriting_results_replaces_them_whole(tmp_path: Path) -> None:
    rep.write_results(tmp_path / "load_2026-11-21", "old\n" * 1000, {"old": True})
    md, js = rep.write_results(tmp_path / "load_2026-11-21", "new", {"new": True})
    assert md.read_text() == "new\n"
    assert json.loads(js.read_text()) == {"new": True}


def test_a_write_that_fails_midway_leaves_the_previous_file_and_no_temporary(
        tmp_path: Path) -> None:
    path = tmp_path / "mixer_2026-11-21.md"
    rep.write_atomic(path, "previous results\n")
    with pytest.raises(UnicodeEncodeError):
        rep.write_atomic(path, "half written \ud800 never encodable")
    assert path.read_text() == "previous results\n"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_unserialisable_data_writes_neither_file(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        rep.write_results(tmp_path / "bad", "# Bad", {"levels": {1, 2}})
    assert list(tmp_path.iterdir()) == []
