"""A bounded load run against the whole stack, with SLO verdicts from two sides.

Starts the three services and a real Prometheus (with deploy/prometheus's rules) on loopback,
drives `segue.loadgen` for --duration-s (default 300 s), then reports the client-side latency
percentiles and errors, and what Prometheus's SLO recording rules say over the same window.

    .venv/bin/python bench/bench_load.py [--duration-s 300] [--rate 8] [--concurrency 16]
        [--out bench/results]

Results: <out>/load_<date>.md and .json, with the machine, date and command line.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import report as rep  # noqa: E402
from devkit.localstack import running_stack  # noqa: E402
from segue.audio import decode  # noqa: E402
from segue.loadgen import MODEL_RATE_HZ, LoadConfig, LoadGenerator  # noqa: E402
from segue.music import find_music  # noqa: E402


def prometheus_slos(query: Any, window: str) -> list[dict[str, Any]]:
    """Each SLO's error ratio over `window` next to its error budget (1 - objective)."""
    objectives = {(s["metric"]["slo"], s["metric"].get("service")): float(s["value"][1])
                  for s in query("segue_slo:objective:ratio")}
    rows = []
    for series in query(f"segue_slo:sli_error:ratio_rate{window}"):
        key = (series["metric"]["slo"], series["metric"].get("service"))
        error = float(series["value"][1])
        objective = objectives.get(key, math.nan)
        budget = 1.0 - objective
        rows.append({"slo": key[0], "service": key[1], "error_ratio": error,
                     "objective": objective,
                     "met": math.isfinite(error) and error <= budget + 1e-12})
    return sorted(rows, key=lambda r: (str(r["service"]), str(r["slo"])))


def slo_table(slos: list[dict[str, Any]]) -> list[str]:
    """Prometheus's SLO error ratios beside their budgets."""
    return rep.table(
        ["service", "SLO", "error ratio", "error budget", "verdict"],
        [[row["service"], row["slo"], f"{row['error_ratio']:.4f}", f"{1 - row['objective']:.4f}",
          "met" if row["met"] else "MISSED"] for row in slos], "llrrl")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=300.0)
    parser.add_argument("--rate", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--songs", type=int, default=8)
    parser.add_argument("--music", type=Path)
    parser.add_argument("--out", type=Path, default=rep.RESULTS,
                        help="folder of the results (load_<date>.md and .json)")
    args = parser.parse_args()

    songs = {p.stem: decode(p, MODEL_RATE_HZ) for p in find_music(args.music)[: args.songs]}
    run = rep.capture_run()
    with tempfile.TemporaryDirectory() as tmp, \
            running_stack(Path(tmp), prometheus=True) as stack:
        config = LoadConfig(
            embedder=stack.grpc["embedder"], matcher=stack.grpc["matcher"],
            mixer=stack.grpc["mixer"], duration_s=args.duration_s, rate_per_s=args.rate,
            concurrency=args.concurrency,
        )
        report = asyncio.run(LoadGenerator(config, songs).run())
        time.sleep(3)  # two more scrapes and rule evaluations after the last call
        window = "5m" if args.duration_s >= 240 else "30m"
        slos = prometheus_slos(stack.query, window)

    started = run.started_utc[:16].replace("T", " ")
    text = "\n".join([
        *rep.header(f"Load run, {started} UTC", run, [
            "The load generator runs on the same cores as the three services and Prometheus."]),
        f"{len(songs)} real songs (immich-memories-music unless --music), "
        f"{args.duration_s:.0f} s at {args.rate} operations/s (30% Analyze streams of 10 s in "
        f"1 s chunks, 60% NextSegment, 10% 10 s RenderTransition), at most "
        f"{args.concurrency} at once.",
        "",
        "## Client side",
        "",
        report.markdown(),
        f"## Prometheus, SLO recording rules over the last {window}",
        "",
        *slo_table(slos),
    ]) + "\n"
    print(text)
    rep.write_results(rep.results_stem(args.out, "load", run.date), text, {
        **run.as_dict(), "date": run.started_utc,
        "duration_s": report.duration_s, "rate_per_s": args.rate,
        "concurrency": args.concurrency,
        "percentiles_ms": {k: {q: report.percentile(k, q) * 1e3 for q in (50, 90, 99)}
                           for k in report.latencies_s},
        "codes": {s: dict(c) for s, c in report.codes.items()},
        "client_slo": report.slo_verdicts(), "prometheus_slo": slos,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
