"""Model-only speed of Segue's ONNX graphs beside MECOMP's model, in one run.

    python bench/bench_model_speed.py [--repeats 30] [--out bench/results/model_speed]
        [--candidate NAME=DIR ...]

Cases (median of --repeats timed runs after warm-up, ONNX Runtime CPU provider):
- 1 thread, one 30 s clip: x real time for our stream graph, our MECOMP-compatible graph and
  MECOMP's model (when ../shared/peers is present), and our speed-up over MECOMP;
- 2 threads, a batch of 32 one-second windows (the embedder's serving batch): milliseconds.
Each --candidate folder (another export: a wider model, another weight precision) is measured
in the same run as NAME_stream and NAME_mecomp_compatible.
Results: <out>.md and .json (default bench/results/model_speed) with the machine, date and
command line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import report as rep  # noqa: E402

FloatArray = npt.NDArray[np.float32]
SR = 22050
MECOMP = ROOT.parent / "shared" / "peers" / "mecomp_audio_embedding_model.onnx"


def session(path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session with `threads` intra-op threads, sequential execution."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def feeds(sess: ort.InferenceSession, audio: FloatArray) -> dict[str, FloatArray]:
    """Inputs for either kind of graph: `audio` alone (MECOMP's signature), or our stream
    graph's `pcm` (cut to whole windows) with a zero state; `audio` is (batch, samples)."""
    if [i.name for i in sess.get_inputs()] == ["audio"]:
        return {"audio": audio}
    meta = sess.get_modelmeta().custom_metadata_map
    window = int(meta["segue.window_samples"])
    state = np.zeros((audio.shape[0], int(meta["segue.state_dim"])), np.float32)
    return {"pcm": audio[:, : audio.shape[1] // window * window], "state": state}


def median_seconds(sess: ort.InferenceSession, audio: FloatArray, repeats: int) -> float:
    """Median wall seconds of one run on `audio`, after three warm-up runs."""
    inputs = feeds(sess, audio)
    for _ in range(3):
        sess.run(None, inputs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, inputs)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(graphs: dict[str, Path], repeats: int) -> dict[str, dict[str, float]]:
    """Each graph's clip (1 thread) and batch (2 threads) timings, and speed-ups vs MECOMP."""
    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal((1, 30 * SR))).astype(np.float32)
    batch = (0.1 * rng.standard_normal((32, SR))).astype(np.float32)
    rows: dict[str, dict[str, float]] = {}
    for name, path in graphs.items():
        one = median_seconds(session(path, 1), clip, repeats)
        served = median_seconds(session(path, 2), batch, repeats)
        rows[name] = {"clip30s_1thread_ms": one * 1e3, "x_realtime_1thread": 30.0 / one,
                      "batch32x1s_2threads_ms": served * 1e3,
                      "size_bytes": path.stat().st_size}
        print(name, rows[name], flush=True)
    if "mecomp" in rows:
        for name, row in rows.items():
            if name != "mecomp":
                row["speedup_vs_mecomp_1thread"] = (rows["mecomp"]["clip30s_1thread_ms"]
                                                    / row["clip30s_1thread_ms"])
    return rows


def markdown(rows: dict[str, dict[str, float]], run: rep.RunInfo, repeats: int) -> str:
    """The results file: header, then one table row per graph."""
    table = rep.table(
        ["graph", "30 s clip, 1 thread (ms)", "x real time, 1 thread", "speed-up vs MECOMP",
         "32 x 1 s batch, 2 threads (ms)", "size (KB)"],
        [[name, f"{r['clip30s_1thread_ms']:.2f}", f"{r['x_realtime_1thread']:.0f}",
          f"{r['speedup_vs_mecomp_1thread']:.1f}x" if "speedup_vs_mecomp_1thread" in r else "-",
          f"{r['batch32x1s_2threads_ms']:.2f}", f"{r['size_bytes'] / 1000:.0f}"]
         for name, r in rows.items()], "lrrrrr")
    return "\n".join([
        *rep.header("Model speed (ONNX Runtime, CPU)", run, [
            f"Median of {repeats} runs. The machine is shared with other jobs; ratios within "
            "this run are the fair comparison."]),
        *table]) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--candidate", action="append", default=[], metavar="NAME=DIR",
                   help="another model folder measured in the same run; repeatable")
    p.add_argument("--out", type=Path, default=rep.RESULTS / "model_speed",
                   help="results path without suffix (.md and .json are written)")
    a = p.parse_args()

    run = rep.capture_run()  # before the runs: the load average of the machine alone
    graphs = {"segue_stream": a.models / "segue_stream.onnx",
              "segue_mecomp_compatible": a.models / "audio_embedding_model.onnx"}
    for spec in a.candidate:
        name, _, folder = spec.partition("=")
        graphs[f"{name}_stream"] = Path(folder) / "segue_stream.onnx"
        graphs[f"{name}_mecomp_compatible"] = Path(folder) / "audio_embedding_model.onnx"
    if MECOMP.exists():
        graphs["mecomp"] = MECOMP
    rows = measure(graphs, a.repeats)
    meta: dict[str, Any] = {"date": run.date, "machine": run.machine, "command": run.command,
                            "repeats": a.repeats, "onnxruntime": ort.__version__}
    md, _ = rep.write_results(a.out, markdown(rows, run, a.repeats),
                              {"meta": meta, "results": rows})
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
