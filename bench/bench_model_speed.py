"""Model-only speed of Segue's ONNX graphs beside MECOMP's model, in one run.

    python bench/bench_model_speed.py

Cases (median of --repeats timed runs after warm-up, ONNX Runtime CPU provider):
- 1 thread, one 30 s clip: x real time for our stream graph, our MECOMP-compatible graph and
  MECOMP's model (when ../shared/peers is present), and our speed-up over MECOMP;
- 2 threads, a batch of 32 one-second windows (the embedder's serving batch): milliseconds.
Results: bench/results/model_speed.md and .json with the machine and date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segue.machine import describe_machine  # noqa: E402

SR = 22050
MECOMP = ROOT.parent / "shared" / "peers" / "mecomp_audio_embedding_model.onnx"


def _session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _feeds(sess: ort.InferenceSession, audio: np.ndarray) -> dict[str, np.ndarray]:
    names = [i.name for i in sess.get_inputs()]
    if names == ["audio"]:
        return {"audio": audio}
    state_dim = int(sess.get_modelmeta().custom_metadata_map["segue.state_dim"])
    return {"pcm": audio, "state": np.zeros((audio.shape[0], state_dim), np.float32)}


def median_seconds(sess: ort.InferenceSession, audio: np.ndarray, repeats: int) -> float:
    feeds = _feeds(sess, audio)
    for _ in range(3):
        sess.run(None, feeds)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model_speed")
    a = p.parse_args()

    # Before the runs, so its load average is that of the machine alone.
    machine = describe_machine()
    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal((1, 30 * SR))).astype(np.float32)
    batch = (0.1 * rng.standard_normal((32, SR))).astype(np.float32)
    graphs = {
        "segue_stream": a.models / "segue_stream.onnx",
        "segue_mecomp_compatible": a.models / "audio_embedding_model.onnx",
    }
    if MECOMP.exists():
        graphs["mecomp"] = MECOMP

    rows: dict[str, dict[str, float]] = {}
    for name, path in graphs.items():
        one = median_seconds(_session(path, 1), clip, a.repeats)
        served = median_seconds(_session(path, 2), batch, a.repeats)
        rows[name] = {
            "clip30s_1thread_ms": one * 1e3,
            "x_realtime_1thread": 30.0 / one,
            "batch32x1s_2threads_ms": served * 1e3,
            "size_bytes": path.stat().st_size,
        }
        print(name, json.dumps(rows[name]), flush=True)
    if "mecomp" in rows:
        for name in graphs:
            if name != "mecomp":
                rows[name]["speedup_vs_mecomp_1thread"] = (
                    rows["mecomp"]["clip30s_1thread_ms"] / rows[name]["clip30s_1thread_ms"]
                )
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": machine,
        "repeats": a.repeats,
        "onnxruntime": ort.__version__,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    lines = [
        "# Model speed (ONNX Runtime, CPU)",
        "",
        f"Date: {meta['date']}. Machine: {meta['machine']}. Median of {a.repeats} runs.",
        "The machine is shared with other jobs; ratios within this run are the fair comparison.",
        "",
        "| graph | 30 s clip, 1 thread (ms) | x real time, 1 thread | speed-up vs MECOMP | "
        "32 x 1 s batch, 2 threads (ms) | size (KB) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        speedup = r.get("speedup_vs_mecomp_1thread")
        lines.append(
            f"| {name} | {r['clip30s_1thread_ms']:.2f} | {r['x_realtime_1thread']:.0f} | "
            f"{'-' if speedup is None else f'{speedup:.1f}x'} | "
            f"{r['batch32x1s_2threads_ms']:.2f} | {r['size_bytes'] / 1000:.0f} |"
        )
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
