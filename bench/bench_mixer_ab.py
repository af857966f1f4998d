"""Mixer render speed against an earlier checkout of Segue, measured in one run.

    git worktree add /tmp/baseline <REV>
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_mixer_ab.py --baseline /tmp/baseline

Both checkouts render the same 30 s transition (calm_electronic_s411 -> calm_electronic_s522,
22 s overlap, bass swap; the bench_mixer.py speed case) in fresh processes that alternate
(baseline, current, baseline, ...), so load from other jobs falls on both alike. Each process
renders it `--renders` times; the figure is CPU time of the one thread. Each process imports
its own checkout's code (PYTHONPATH), whichever module path it used for the renderer then.
Results: bench/results/mixer_ab_<date>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import capture_run, header, ratio, results_stem, table, write_results  # noqa: E402

# Run inside each checkout: the renderer moved from services.mixer to segue.mixing.
_CHILD = """
import json, sys, time
from pathlib import Path
from immich_memories_music import tracks_dir
from segue.audio import decode
from segue.v1 import mixer_pb2
try:
    from segue.mixing.excerpt import Excerpt
    from segue.mixing.render import render_transition
    from segue.mixing.style import Params, Style
except ImportError:
    from services.mixer.excerpt import Excerpt
    from services.mixer.render import Params, Style, render_transition
tracks = {p.stem: p for p in Path(tracks_dir()).rglob("*.opus")}
a = decode(tracks["calm_electronic_s411"], 44100, channels=2).T.copy()
b = decode(tracks["calm_electronic_s522"], 44100, channels=2).T.copy()
info = mixer_pb2.ExcerptInfo(encoded=True)
style = Style("seconds", seconds=22.0, eq_bass_swap=True)
cpu = []
for _ in range(int(sys.argv[1])):
    ea, eb = Excerpt("outgoing", a, 44100, info), Excerpt("incoming", b, 44100, info)
    t = time.process_time()
    r = render_transition(ea, eb, style, Params())
    cpu.append(time.process_time() - t)
print(json.dumps({"out_s": r.report.duration_s, "cpu_s": cpu}))
"""


def render_once(checkout: Path, renders: int) -> dict[str, Any]:
    """Renders in a fresh process importing `checkout`'s code; its CPU seconds per render."""
    env = os.environ | {"PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(renders)], cwd=checkout, env=env,
                         check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="earlier checkout")
    parser.add_argument("--rounds", type=int, default=6, help="alternations (default 6)")
    parser.add_argument("--renders", type=int, default=7, help="renders per process")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    run = capture_run()
    sides: dict[str, list[float]] = {"baseline": [], "current": []}
    rounds: list[dict[str, float]] = []
    out_s = 0.0
    for n in range(args.rounds):
        order = ("baseline", "current") if n % 2 == 0 else ("current", "baseline")
        medians = {}
        for side in order:
            got = render_once(args.baseline if side == "baseline" else REPO, args.renders)
            sides[side] += got["cpu_s"]
            medians[side] = statistics.median(got["cpu_s"])
            out_s = got["out_s"]
        rounds.append(medians)
        print(f"round {n + 1}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in medians.items()))
    base, cur = (statistics.median(sides[k]) for k in ("baseline", "current"))
    lines = header("Mixer render speed against an earlier checkout", run) + table(
        ["checkout", "median CPU per render", "x real time", "round medians (ms)"],
        [[side, f"{statistics.median(v) * 1000:.0f} ms", f"{out_s / statistics.median(v):.1f}",
          " ".join(f"{r[side] * 1000:.0f}" for r in rounds)] for side, v in sides.items()],
    ) + ["", f"Current / baseline CPU time: {ratio(cur, base, 3)} ({out_s:.1f} s transition, "
         f"{args.rounds} alternating rounds of {args.renders} renders; baseline {args.baseline})."]
    data = {**run.as_dict(), "baseline": str(args.baseline), "out_s": out_s, "cpu_s": sides,
            "round_medians": rounds, "current_over_baseline": cur / base}
    md, _ = write_results(results_stem(args.out, "mixer_ab", run.date), "\n".join(lines), data)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
