"""Whole-library analysis speed: Segue against the decode floor and bliss-audio, in one run.

The folder is the fetched training corpus (data/audio, `make data`) plus ../shared/music when
present (files of the same name and size counted once). One run measures, on the same files:

- ffmpeg decode only (22050 Hz mono f32, as Segue asks for it), one process per core;
- bliss-audio, one process per core (its Python binding analyses one song per call);
- `segue analyze --local` at 1 job and at one job per core;
- `segue analyze` through embedder replicas (one per core, on loopback), several streams each.

Each step reports x real time (audio seconds per wall second), CPU-seconds per audio-hour
(the processes' user + system time), peak RSS (the sum over the step's process tree, sampled
every 0.1 s) and the projected wall time of 1000 songs of 3.5 min on 8 cores (CPU-seconds /
8, i.e. perfect scaling). The machine is shared: compare ratios within one run only.

Run: python bench/bench_library.py [--max-files N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report as rep
from segue.audio import FRAMES_PER_WRITE
from segue.library import AUDIO_SUFFIXES

REPO = Path(__file__).resolve().parents[1]
DECODE_RATE_HZ = 22050
# The yardstick: 1000 songs of 3.5 minutes on an 8-core laptop.
PROJECT_SONGS, PROJECT_SONG_S, PROJECT_CORES = 1000, 210.0, 8
SAMPLE_S = 0.1  # RSS sampling period


@dataclass
class Step:
    """One measured way of going through the library."""

    name: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    audio_s: float
    files: int
    failed: int = 0

    def as_json(self) -> dict[str, Any]:
        rt = self.audio_s / self.wall_s
        cpu_per_hour = self.cpu_s / (self.audio_s / 3600.0)
        project_s = cpu_per_hour * PROJECT_SONGS * PROJECT_SONG_S / 3600.0 / PROJECT_CORES
        return {
            "name": self.name,
            "wall_s": round(self.wall_s, 2),
            "cpu_s": round(self.cpu_s, 2),
            "x_real_time": round(rt, 1),
            "cpu_s_per_audio_hour": round(cpu_per_hour, 1),
            "peak_rss_mb": round(self.peak_rss_mb),
            "files": self.files,
            "failed": self.failed,
            "projected_1000_songs_8_cores_s": round(project_s, 1),
        }


def library_files(extra: Sequence[Path]) -> list[Path]:
    """Audio files of the corpus and the extra folders, each (name, size) once."""
    seen: set[tuple[str, int]] = set()
    files = []
    for folder in [REPO / "data" / "audio", *extra]:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
                continue
            key = (path.name, path.stat().st_size)
            if key not in seen:
                seen.add(key)
                files.append(path)
    return files


def _tree_rss(roots: Sequence[psutil.Process]) -> int:
    """Summed RSS (bytes) of the roots and their descendants, each process counted once: a
    root may also be another root's descendant (the service step's replicas are this
    process's children and are passed as servers too)."""
    seen: dict[int, int] = {}
    for root in roots:
        try:
            for proc in [root, *root.children(recursive=True)]:
                if proc.pid not in seen:
                    seen[proc.pid] = proc.memory_info().rss
        except psutil.Error:
            continue  # exited between listing and reading
    return sum(seen.values())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def measured(roots: Callable[[], Sequence[psutil.Process]]) -> Iterator[dict[str, float]]:
    """Wall time, waited-for children's CPU and the peak tree RSS of the block (MB)."""
    out = {"peak_rss": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_S):
            out["peak_rss"] = max(out["peak_rss"], _tree_rss(roots()) / 2**20)

    sampler = threading.Thread(target=sample, daemon=True)
    cpu0, t0 = _children_cpu(), time.perf_counter()
    sampler.start()
    try:
        yield out
    finally:
        stop.set()
        sampler.join()
        out["wall_s"] = time.perf_counter() - t0
        out["cpu_s"] = _children_cpu() - cpu0


def _me() -> list[psutil.Process]:
    """This process's children (not itself: it only waits)."""
    children: list[psutil.Process] = psutil.Process().children()
    return children


def decode_only(files: list[Path], jobs: int) -> Step:
    """ffmpeg with Segue's decode arguments, output discarded, `jobs` at a time."""

    def one(path: Path) -> float:
        args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path),
                "-vn", "-af", f"asetnsamples=n={FRAMES_PER_WRITE}:p=0", "-f", "f32le",
                "-ac", "1", "-ar", str(DECODE_RATE_HZ), "pipe:1"]  # fmt: skip
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        total = 0
        while block := proc.stdout.read(1 << 20):
            total += len(block)
        proc.wait()
        return total / 4 / DECODE_RATE_HZ

    with measured(_me) as m, ThreadPoolExecutor(jobs) as pool:
        audio = sum(pool.map(one, files))
    return Step(
        f"ffmpeg decode only, {jobs} processes",
        m["wall_s"],
        m["cpu_s"],
        m["peak_rss"],
        audio,
        len(files),
    )


def _bliss_one(path: str) -> bool:
    from bliss_audio import Song

    try:
        Song(path)
    except BaseException:  # bliss panics (pyo3 PanicException, a BaseException) on some files
        return False
    return True


def bliss(files: list[Path], jobs: int, audio_s: float) -> Step | None:
    """bliss-audio's analysis of every file, one worker process per core."""
    try:
        import bliss_audio  # noqa: F401
    except ModuleNotFoundError:
        print("bliss-audio is not installed (pip install -e '.[bench]'); skipped")
        return None
    with measured(_me) as m, multiprocessing.get_context("spawn").Pool(jobs) as pool:
        ok = pool.map(_bliss_one, [str(p) for p in files], chunksize=1)
        pool.close()
        pool.join()
    return Step(
        f"bliss-audio, {jobs} processes",
        m["wall_s"],
        m["cpu_s"],
        m["peak_rss"],
        audio_s,
        len(files),
        failed=ok.count(False),
    )


def _segue(
    name: str,
    files: list[Path],
    options: list[str],
    workdir: Path,
    servers: Sequence[psutil.Process] = (),
) -> Step:
    """`segue analyze` over the files as a child process; CPU includes `servers`' time."""
    out, summary = workdir / name.replace(" ", "_"), workdir / f"{name.replace(' ', '_')}.json"
    listing = [str(p) for p in files]
    server_cpu0 = sum(_cpu_of(s) for s in servers)
    with measured(lambda: [*_me(), *servers]) as m:
        proc = subprocess.run([sys.executable, "-m", "segue.cli", "analyze", *listing,
                               "--out-dir", str(out), "--summary", str(summary), *options],
                              cwd=REPO, env=user_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, check=False)  # fmt: skip
    if not summary.exists():
        raise RuntimeError(f"segue analyze failed: {proc.stderr[-2000:]}")
    data = json.loads(summary.read_text())
    cpu = m["cpu_s"] + sum(_cpu_of(s) for s in servers) - server_cpu0
    return Step(
        name, m["wall_s"], cpu, m["peak_rss"], data["audio_s"], len(files), failed=data["failed"]
    )


def user_env() -> dict[str, str]:
    """This environment without the thread-count variables: Segue runs as a user starts it,
    and holds its own BLAS threads (segue.native_threads, the embedder's start-up)."""
    threads = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}
    return {k: v for k, v in os.environ.items() if k not in threads}


def _cpu_of(proc: psutil.Process) -> float:
    """User + system seconds of a running process and its waited-for children."""
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def service(files: list[Path], jobs: int, streams: int, workdir: Path) -> Step:
    """`segue analyze` against `jobs` embedder replicas started on loopback."""
    from devkit.localstack import running_stack

    env = {"SEGUE_MAX_SONG_S": "14400"}
    with running_stack(
        workdir / "stack", services=("embedder",), replicas={"embedder": jobs}, env=env
    ) as stack:
        replicas = stack.replicas["embedder"]
        servers = [psutil.Process(r.pid) for r in replicas]
        addresses = ",".join(r.grpc for r in replicas)
        return _segue(
            f"segue service, {jobs} replicas x {streams} streams",
            files,
            ["--embedder", addresses, "--streams", str(streams)],
            workdir,
            servers,
        )


def markdown(
    run: rep.RunInfo, steps: list[Step], ratios: dict[str, float], total_audio_s: float, files: int
) -> str:
    rows = [s.as_json() for s in steps]
    lines = rep.header(
        "Library analysis: Segue against the decode floor and bliss-audio",
        run,
        [
            f"Files: {files} ({total_audio_s / 60:.1f} min of audio): data/audio plus "
            "../shared/music. One run; ratios compare steps of this run only.",
        ],
    )
    lines += rep.table(
        [
            "step",
            "wall s",
            "CPU s",
            "x real time",
            "CPU s / audio h",
            "peak RSS MB",
            "1000 songs, 8 cores (s)",
            "failed",
        ],
        [
            [
                r["name"],
                r["wall_s"],
                r["cpu_s"],
                r["x_real_time"],
                r["cpu_s_per_audio_hour"],
                r["peak_rss_mb"],
                r["projected_1000_songs_8_cores_s"],
                r["failed"],
            ]
            for r in rows
        ],
        "lrrrrrrr",
    )
    lines += ["", "Targets (wall-clock rates, same run):", ""]
    lines += [f"- {k}: {v:.2f}" for k, v in ratios.items()]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--max-files", type=int, default=None, help="use the first N files")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--streams", type=int, default=4, help="streams per replica")
    parser.add_argument("--out", type=Path, default=rep.RESULTS)
    parser.add_argument("--date", default=None)
    parser.add_argument("--skip", nargs="*", default=[], choices=["bliss", "single", "service"])
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    run = rep.capture_run(args.date)
    files = library_files([REPO.parent / "shared" / "music"])[: args.max_files]
    if not files:
        print("no audio: run `make data` first")
        return 1
    print(f"{len(files)} files, {args.jobs} jobs; load {os.getloadavg()}", flush=True)
    steps = [decode_only(files, args.jobs)]
    print(steps[-1].as_json(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-library-") as tmp:
        work = Path(tmp)
        if "single" not in args.skip:
            steps.append(_segue("segue --local, 1 job", files, ["--local", "-j", "1"], work))
            print(steps[-1].as_json(), flush=True)
        steps.append(
            _segue(
                f"segue --local, {args.jobs} jobs", files, ["--local", "-j", str(args.jobs)], work
            )
        )
        local = steps[-1]
        print(local.as_json(), flush=True)
        if "bliss" not in args.skip:
            bliss_step = bliss(files, args.jobs, local.audio_s)
            if bliss_step is not None:
                steps.append(bliss_step)
                print(bliss_step.as_json(), flush=True)
        if "service" not in args.skip:
            steps.append(service(files, args.jobs, args.streams, work))
            print(steps[-1].as_json(), flush=True)
    rate = {s.name: s.audio_s / s.wall_s for s in steps}
    ratios = {
        "segue all cores / ffmpeg decode only (target >= 0.8)": rate[local.name]
        / rate[steps[0].name]
    }
    bliss_rates = [v for k, v in rate.items() if k.startswith("bliss")]
    if bliss_rates:
        ratios["segue all cores / bliss-audio (target >= 2)"] = rate[local.name] / bliss_rates[0]
    data = {
        "run": run.as_dict(),
        "files": len(files),
        "audio_s": local.audio_s,
        "load_average_end": list(os.getloadavg()),
        "steps": [s.as_json() for s in steps],
        "ratios": ratios,
    }
    text = markdown(run, steps, ratios, local.audio_s, len(files))
    text += f"\nLoad average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}.\n"
    md, _ = rep.write_results(rep.results_stem(args.out, "library", run.date), text, data)
    print(text)
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
