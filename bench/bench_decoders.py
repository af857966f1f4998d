"""Decoders for the library engine, side by side on real files: which is cheapest per format.

Issue 15 asks to use a library decoder where it beats a pipe from ffmpeg for a format. Each
decoder here turns a file into what the engine analyses, 22050 Hz mono float32:

- ffmpeg: the engine's own path (segue.audio.PcmReader: an ffmpeg process, its output read
  from a pipe); its CPU is this process's plus ffmpeg's;
- PyAV: FFmpeg's libraries in this process (decode, then its resampler to 22050 Hz mono);
- soundfile + soxr: libsndfile decodes at the file's rate, numpy averages the channels, soxr
  resamples (its default HQ quality).

Files are grouped by suffix and drawn with a fixed seed, and the Ogg files are also transcoded
to 44.1 kHz stereo WAV, FLAC, MP3 and AAC, as libraries hold them (the fetched WAVs are 8 kHz
mono). Every decoder reads
every file once per pass, the decoders taking turns, and the median of the passes is reported.
Agreement with ffmpeg's output is the correlation, level and length difference.

With --engine, the whole in-process analysis of the lossless groups is also timed, reading
through the pipe and in-process in turn (segue.library.decoding chooses the reader).

Run: python bench/bench_decoders.py [--per-format N] [--repeats R] [--engine]   (needs `make data`)
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report as rep
from segue.audio import PcmReader
from segue.library import AUDIO_SUFFIXES
from segue.library.decoding import DECODE_RATE_HZ

REPO = Path(__file__).resolve().parents[1]
FloatArray = npt.NDArray[np.float32]
# Left out of the agreement: resampler filters start and end differently (samples).
EDGE = DECODE_RATE_HZ // 10


def by_ffmpeg(path: Path) -> FloatArray:
    with PcmReader(path, DECODE_RATE_HZ) as reader:
        return np.concatenate(list(reader.chunks(1 << 18)))


def _mono(frame: Any) -> FloatArray:
    return np.asarray(frame.to_ndarray(), dtype=np.float32).reshape(-1)


def by_pyav(path: Path) -> FloatArray:
    import av

    parts: list[FloatArray] = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=DECODE_RATE_HZ)
        for frame in container.decode(audio=0):
            parts.extend(_mono(f) for f in resampler.resample(frame))
        parts.extend(_mono(f) for f in resampler.resample(None))
    return np.concatenate(parts)


def by_soundfile(path: Path) -> FloatArray:
    import soundfile
    import soxr

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono: FloatArray = audio.mean(axis=1, dtype=np.float32)
    if rate == DECODE_RATE_HZ:
        return mono
    return np.asarray(soxr.resample(mono, rate, DECODE_RATE_HZ), dtype=np.float32)


DECODERS: dict[str, Callable[[Path], FloatArray]] = {
    "ffmpeg pipe (Segue's)": by_ffmpeg,
    "PyAV in-process": by_pyav,
    "soundfile + soxr": by_soundfile,
}


def cpu_s() -> float:
    """This process's and its waited-for children's user + system seconds."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def agreement(reference: FloatArray, other: FloatArray) -> tuple[float, float, int]:
    """Correlation with the reference (edges left out), the level against it (dB) and the
    length difference (samples)."""
    n = min(reference.size, other.size) - EDGE
    if n <= EDGE:
        return float("nan"), float("nan"), other.size - reference.size
    a, b = reference[EDGE:n].astype(np.float64), other[EDGE:n].astype(np.float64)
    r = float(np.corrcoef(a, b)[0, 1])
    level_db = float(10 * np.log10(max(np.dot(b, b), 1e-30) / max(np.dot(a, a), 1e-30)))
    return r, level_db, other.size - reference.size


def one_pass(files: list[Path], references: dict[Path, FloatArray]) -> dict[str, Any]:
    """CPU seconds, audio seconds, failures and agreement of each decoder over the files."""
    row: dict[str, Any] = {}
    for name, decode in DECODERS.items():
        spent, audio_s, failed, corr, levels, lengths = 0.0, 0.0, [], [], [], []
        for path in files:
            start = cpu_s()
            try:
                pcm = decode(path)
            except Exception as e:  # a decoder that cannot read a format: reported, not fatal
                failed.append(f"{path.name}: {type(e).__name__}: {e}"[:200])
                continue
            finally:
                spent += cpu_s() - start
            audio_s += pcm.size / DECODE_RATE_HZ
            if path not in references:
                references[path] = pcm
            r, level_db, d = agreement(references[path], pcm)
            corr.append(r)
            levels.append(level_db)
            lengths.append(d)
        row[name] = {"cpu_s": spent, "audio_s": audio_s, "failed": failed,
                     "min_correlation": float(np.nanmin(corr)) if corr else float("nan"),
                     "max_level_db": float(np.nanmax(np.abs(levels))) if levels else float("nan"),
                     "max_length_diff": int(np.max(np.abs(lengths))) if lengths else 0}  # fmt: skip
    return row


def groups(per_format: int) -> dict[str, list[Path]]:
    """Up to `per_format` fetched files per suffix, drawn with seed 1 (keyed by suffix)."""
    found: defaultdict[str, list[Path]] = defaultdict(list)
    for p in sorted((REPO / "data" / "audio").rglob("*")):
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES:
            found[p.suffix.lower()].append(p)
    rng = random.Random(1)
    for paths in found.values():
        rng.shuffle(paths)
    return {suffix: paths[:per_format] for suffix, paths in sorted(found.items())}


def transcoded(files: list[Path], workdir: Path) -> dict[str, list[Path]]:
    """The files as libraries hold them (44.1 kHz stereo, as ripped), made with ffmpeg: WAV
    (the fetched WAVs are 8 kHz mono), FLAC, MP3 (LAME V2) and AAC in MP4."""
    made: dict[str, list[Path]] = {}
    codecs = {".wav": ["-c:a", "pcm_s16le"], ".flac": ["-c:a", "flac"],
              ".mp3": ["-c:a", "libmp3lame", "-q:a", "2"],
              ".m4a": ["-c:a", "aac", "-b:a", "192k"]}  # fmt: skip
    for suffix, codec in codecs.items():
        label = f"{suffix} 44.1 kHz stereo"
        made[label] = []
        for i, path in enumerate(files):
            target = workdir / f"{i:03d}{suffix}"
            subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                            "-i", str(path), "-ar", "44100", "-ac", "2", *codec, str(target)],
                           check=True)  # fmt: skip
            made[label].append(target)
    return made


def engine_ab(chosen: dict[str, list[Path]], repeats: int) -> dict[str, dict[str, float]]:
    """CPU seconds per audio hour of the whole in-process analysis (segue analyze --local's
    engine, BLAS on one thread) of each lossless group, reading through the ffmpeg pipe and
    in-process in turn; medians of `repeats` passes."""
    import segue.library.decoding as decoding
    from segue.library import find_sources
    from segue.library.engine import LocalEngine
    from segue.native_threads import single_threaded_blas

    single_threaded_blas()
    engine = LocalEngine()
    in_process = decoding.IN_PROCESS_SUFFIXES
    out: dict[str, dict[str, float]] = {}
    for group, files in chosen.items():
        if Path(files[0]).suffix.lower() not in in_process or "fetched" in group:
            continue
        per_mode: dict[str, list[float]] = {"ffmpeg pipe": [], "in-process": []}
        for _ in range(repeats):
            for mode in per_mode:
                decoding.IN_PROCESS_SUFFIXES = in_process if mode == "in-process" else frozenset()
                start, audio_s = cpu_s(), 0.0
                for source in find_sources(files):
                    audio_s += getattr(engine.analyze(source), "audio_s", 0.0)
                per_mode[mode].append((cpu_s() - start) / audio_s * 3600)
        decoding.IN_PROCESS_SUFFIXES = in_process
        out[group] = {mode: sorted(v)[len(v) // 2] for mode, v in per_mode.items()}
    return out


def markdown(run: rep.RunInfo, results: dict[str, dict[str, Any]], repeats: int) -> str:
    notes = [f"Median of {repeats} passes; each pass runs every decoder over the same files, "
             "one after another in this process. CPU is user + system time, ffmpeg's included.",
             "Rate: audio seconds per CPU second. Agreement with ffmpeg's output over the "
             "files (first and last 0.1 s left out): the lowest correlation, the largest level "
             "difference (dB) and the largest length difference (samples)."]  # fmt: skip
    lines = rep.header("Library decoding: ffmpeg's pipe against in-process decoders", run, notes)
    rows = []
    for group, per_decoder in results.items():
        base = per_decoder["ffmpeg pipe (Segue's)"]
        base_rate = base["audio_s"] / base["cpu_s"] if base["cpu_s"] else float("nan")
        for name, r in per_decoder.items():
            rate = r["audio_s"] / r["cpu_s"] if r["cpu_s"] else float("nan")
            rows.append([group, r["files"], name, f"{r['cpu_s']:.2f}", f"{rate:.0f}",
                         f"{rate / base_rate:.2f}", f"{r['min_correlation']:.5f}",
                         f"{r['max_level_db']:.3f}", r["max_length_diff"],
                         len(r["failed"])])  # fmt: skip
    lines += rep.table(["format", "files", "decoder", "CPU s", "x real time per CPU s",
                        "rate / ffmpeg's", "agreement r", "level dB", "length diff", "failed"],
                       rows, "lrlrrrrrrr")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--per-format", type=int, default=24, help="files per suffix")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=rep.RESULTS)
    parser.add_argument("--date", default=None)
    parser.add_argument("--engine", action="store_true",
                        help="also time the whole analysis of the lossless groups both ways")
    args = parser.parse_args()
    chosen = {f"{suffix} fetched": files for suffix, files in groups(args.per_format).items()}
    if not chosen:
        print("no audio: run `make data` first")
        return 1
    run = rep.capture_run(args.date)
    workdir = Path(tempfile.mkdtemp(prefix="segue-decoders-"))
    chosen.update(transcoded(chosen.get(".ogg fetched", [])[: args.per_format], workdir))
    for decode in DECODERS.values():  # imports and first-call set-up stay out of the passes
        decode(next(iter(chosen.values()))[0])
    results: dict[str, dict[str, Any]] = {}
    for group, files in chosen.items():
        references: dict[Path, FloatArray] = {}
        passes = [one_pass(files, references) for _ in range(args.repeats)]
        results[group] = {}
        for name in DECODERS:
            cpu = sorted(p[name]["cpu_s"] for p in passes)[len(passes) // 2]
            spread = [p[name]["cpu_s"] for p in passes]
            results[group][name] = {**passes[0][name], "cpu_s": cpu, "files": len(files),
                                     "cpu_s_passes": spread}  # fmt: skip
    engine = engine_ab(chosen, args.repeats) if args.engine else {}
    shutil.rmtree(workdir, ignore_errors=True)
    text = markdown(run, results, args.repeats)
    if engine:
        text += "\n".join(["", "Whole analysis (`segue analyze --local`'s engine, one process), "
                            "CPU seconds per audio hour, reading each way:", "",
                            *rep.table(["format", "ffmpeg pipe", "in-process", "ratio"],
                                       [[g, f"{v['ffmpeg pipe']:.2f}", f"{v['in-process']:.2f}",
                                         f"{v['in-process'] / v['ffmpeg pipe']:.2f}"]
                                        for g, v in engine.items()], "lrrr")]) + "\n"
    md, _ = rep.write_results(rep.results_stem(args.out, "decoders", run.date), text,
                              {"run": run.as_dict(), "results": results,
                               "engine": engine})  # fmt: skip
    print(text)
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
