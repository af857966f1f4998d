"""The structure evaluation's cost share: the embedder figure it divides by comes from this
machine's processor, never from another machine's run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import eval_structure


def _embedder_result(
    folder: Path,
    date: str,
    machine: str,
    server_ms: float,
    model_ms: tuple[float, float] | None = None,
) -> None:
    levels = [
        {"replicas": 1, "streams": 8, "server_cpu_ms_per_window": 9.0},
        {"replicas": 1, "streams": 32, "server_cpu_ms_per_window": server_ms},
        {"replicas": 2, "streams": 32, "server_cpu_ms_per_window": 7.0},
    ]
    report: dict[str, object] = {
        "machine": machine,
        "model": "segue-stream 2.1.0",
        "levels": levels,
    }
    if model_ms:
        report["breakdown"] = {
            "model_ms_per_window_batch8": model_ms[0],
            "model_ms_per_window_batch32": model_ms[1],
        }
    (folder / f"embedder_{date}.json").write_text(json.dumps(report))


@pytest.fixture
def here(monkeypatch: pytest.MonkeyPatch) -> str:
    machine = "Intel(R) Xeon(R) Processor, 2 cores, Linux 6.18, Python 3.11.7"
    monkeypatch.setattr(eval_structure, "machine", lambda: machine)
    return machine


def test_the_latest_run_on_this_processor_is_used_even_when_another_machine_ran_later(
    tmp_path: Path, here: str
) -> None:
    _embedder_result(tmp_path, "2026-12-01", here.replace("Linux 6.18", "Linux 6.17"), 1.4)
    _embedder_result(tmp_path, "2026-12-02", "AMD EPYC, 2 cores, Linux 6.18", 1.1)
    ref = eval_structure.embedder_reference(tmp_path)
    # One replica at 32 streams, in µs; the AMD file is newer but not comparable.
    assert ref["embedder_server_us_per_window"] == pytest.approx(1400.0)
    assert ref["embedder_file"] == "embedder_2026-12-01.json"
    assert ref["embedder_model"] == "segue-stream 2.1.0"


def test_only_other_machines_runs_give_where_they_came_from_and_no_figure(
    tmp_path: Path, here: str
) -> None:
    _embedder_result(tmp_path, "2026-11-20", "AMD EPYC, 2 cores", 1.0)
    _embedder_result(tmp_path, "2026-11-21", "AMD EPYC, 2 cores", 1.1)
    ref = eval_structure.embedder_reference(tmp_path)
    assert "embedder_server_us_per_window" not in ref
    assert ref["embedder_file"] == "embedder_2026-11-21.json"
    assert eval_structure.embedder_reference(tmp_path / "none") == {}


def test_the_embedder_figure_is_scaled_by_how_fast_the_model_ran_in_each_run(
    tmp_path: Path, here: str
) -> None:
    # The embedder run: 1.8 ms of server CPU per window, its model 0.32 / 0.18 ms per window
    # at batch 8 / 32 (0.24 ms at batch 16, their geometric mean).
    _embedder_result(tmp_path, "2026-12-07", here, 1.8, model_ms=(0.32, 0.18))
    ref = eval_structure.embedder_reference(tmp_path)
    assert ref["embedder_model_us_per_window_batch8"] == pytest.approx(320.0)
    # This run's machine is half again as fast: its model takes 160 µs, not 240.
    cost = {**ref, "segue_model_us_per_window": 160.0}
    assert eval_structure.speed_scaled_server_us(cost) == pytest.approx(1200.0)


def test_without_the_embedder_runs_model_figures_nothing_is_scaled(
    tmp_path: Path, here: str
) -> None:
    _embedder_result(tmp_path, "2026-12-07", here, 1.8)
    cost = {**eval_structure.embedder_reference(tmp_path), "segue_model_us_per_window": 160.0}
    assert eval_structure.speed_scaled_server_us(cost) is None


def test_the_share_figures_take_turns_so_a_speed_change_reaches_them_alike() -> None:
    order: list[str] = []

    def spin(name: str, loops: int) -> None:
        order.append(name)
        total = 0
        for i in range(loops):
            total += i * i

    best = eval_structure.interleaved_best_cpu_time(
        {"model": lambda: spin("model", 20_000), "push": lambda: spin("push", 200_000)}, 3
    )
    assert order == ["model", "push"] * 3
    assert set(best) == {"model", "push"}
    # Each is its own smallest time: ten times the work takes longer.
    assert 0.0 <= best["model"] < best["push"]
