"""`segue analyze FILE|DIR...`: analyse songs with the library engine and write JSON.

In-process (`--local`) files are spread over one worker process per core; otherwise they are
streamed to the embedder replicas (`--embedder A,B`), several streams per replica. With
`--out-dir` each analysis is written as its file finishes and a ledger there skips unchanged
files on the next run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from segue.audio import decode
from segue.cli.common import DEFAULT_EMBEDDER, add_target, fail, message_to_json
from segue.files import atomic_output, write_atomically
from segue.library import Done, Ledger, Outcome, Source, Summary, analyze_remote
from segue.library.decoding import DECODE_RATE_HZ
from segue.library.progress import Progress
from segue.library.remote import DEFAULT_CHUNK_S, DEFAULT_STREAMS_PER_REPLICA
from segue.library.sources import find_sources
from segue.v1 import common_pb2

FloatArray = npt.NDArray[np.float32]
# The ledger of finished files inside --out-dir.
LEDGER_NAME = ".segue-ledger.jsonl"

_FUNCTIONS = {
    common_pb2.SECTION_FUNCTION_INTRO: "intro",
    common_pb2.SECTION_FUNCTION_VERSE: "verse",
    common_pb2.SECTION_FUNCTION_CHORUS: "chorus",
    common_pb2.SECTION_FUNCTION_BRIDGE: "bridge",
    common_pb2.SECTION_FUNCTION_OUTRO: "outro",
    common_pb2.SECTION_FUNCTION_INSTRUMENTAL: "instrumental",
}


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "analyze",
        help="analyse songs: feel vector, segments, tempo, key, sections (JSON)",
        description="Decodes each FILE (anything ffmpeg reads) or every audio file under each "
        "DIR, streams it to the embedder service (or analyses it in-process with --local) and "
        "writes one JSON analysis per file. Failed files are listed by path with a reason; the "
        "exit status is the number of failed files.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE|DIR")
    add_target(parser, "embedder", DEFAULT_EMBEDDER)
    parser.add_argument("--local", action="store_true",
                        help="analyse in this machine's processes with the ONNX model; no "
                        "server needed")
    parser.add_argument("--model", type=Path, default=None,
                        help="ONNX model for --local (default: SEGUE_MODEL_PATH or the bundled "
                        "one)")
    add_library_options(parser)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", type=Path, metavar="OUT.json",
                     help="write the analysis (a list for several files) to this file")
    out.add_argument("--out-dir", type=Path, metavar="DIR",
                     help="write DIR/<file>.json per file as it finishes; re-runs skip files "
                     "that did not change")
    parser.add_argument("--plot", type=Path, metavar="PNG_OR_DIR",
                        help="also draw the structure: a .png path (one file) or a directory")
    parser.set_defaults(func=run)


def add_library_options(parser: argparse.ArgumentParser) -> None:
    """--jobs, --streams, --chunk-s, --force and --summary, shared with `segue index`."""
    parser.add_argument("-j", "--jobs", type=int, default=None,
                        help="worker processes for --local (default: one per core)")
    parser.add_argument("--streams", type=int, default=DEFAULT_STREAMS_PER_REPLICA,
                        help="Analyze streams in flight per embedder replica (default "
                        f"{DEFAULT_STREAMS_PER_REPLICA}); give replicas as --embedder A,B")
    parser.add_argument("--chunk-s", type=float, default=DEFAULT_CHUNK_S,
                        help="seconds of audio per message streamed to the embedder (default "
                        f"{DEFAULT_CHUNK_S:g}; capped by the server's chunk limit)")
    parser.add_argument("--force", action="store_true", help="re-analyse unchanged files too")
    parser.add_argument("--summary", type=Path, metavar="SUMMARY.json",
                        help="also write the counts and every failure (path, reason) as JSON")


def library_options_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the library options, for the person; None when they are fine."""
    if args.jobs is not None and args.jobs < 1:
        return "--jobs must be at least 1"
    if not (math.isfinite(args.chunk_s) and args.chunk_s > 0):
        return f"--chunk-s must be a positive number of seconds, got {args.chunk_s:g}"
    return None


def library_outcomes(args: argparse.Namespace, sources: list[Source]) -> Iterator[Outcome]:
    """The engine the options ask for: worker processes (--local) or the embedder replicas."""
    if args.local:
        # Imported here: the model and the analysis stack take 0.8 s to import, which every
        # other command (and the service path) would pay for nothing.
        from segue.library.pool import analyze_local

        return analyze_local(sources, jobs=args.jobs, model_path=args.model)
    addresses = [a.strip() for a in args.embedder.split(",") if a.strip()]
    return analyze_remote(sources, addresses, streams_per_replica=args.streams,
                          chunk_s=args.chunk_s)


def finish_summary(summary: Summary, target: Path | None) -> int:
    """Prints the summary on stderr, writes it as JSON when asked; returns the exit status."""
    print(f"segue: {summary.lines()[0]}", file=sys.stderr)
    for failed in summary.failures:
        print(f"segue: {failed.source.path}: {failed.reason}: {failed.detail}", file=sys.stderr)
    if target is not None:
        write_atomically(target, json.dumps(summary.as_json(), indent=2) + "\n")
    return summary.exit_code


Analyzer = Callable[[str, FloatArray], common_pb2.SongAnalysis]


def _local_analyzer(model_path: Path | None) -> Analyzer:
    from segue.embedding.local import analyze_mono
    from segue.embedding.model import StreamModel
    from segue.embedding.settings import EngineSettings

    config = EngineSettings.from_env()
    model = StreamModel(model_path or config.model_path, provider=config.execution_provider,
                        intra_threads=config.ort_threads)
    settings = config.stream

    def analyze(song_id: str, audio: FloatArray) -> common_pb2.SongAnalysis:
        return analyze_mono(model, audio, DECODE_RATE_HZ, song_id, settings=settings)

    return analyze


def structure_of(analysis: common_pb2.SongAnalysis) -> Any:
    """The structure fields of an analysis as a segue.structure StructureResult (for plots)."""
    from segue.structure.result import CuePoint, KeyEstimate, Section, StructureResult

    positions = tuple(int(b.position_in_bar) for b in analysis.beats)
    return StructureResult(
        duration_s=analysis.duration_s,
        tempo_bpm=analysis.tempo.bpm,
        tempo_stability=analysis.tempo.stability,
        tempo_confidence=analysis.tempo.confidence,
        beat_times_s=tuple(b.time_s for b in analysis.beats),
        beat_positions=positions,
        beats_per_bar=max(positions, default=0),
        key=KeyEstimate(
            tonic_pitch_class=analysis.key.tonic_pitch_class,
            mode="minor" if analysis.key.mode == common_pb2.MODE_MINOR else "major",
            confidence=analysis.key.confidence,
        ),
        sections=tuple(
            Section(start_s=s.start_s, end_s=s.end_s, letter=s.letter,
                    function=_FUNCTIONS.get(s.function, "unknown"),  # type: ignore[arg-type]
                    confidence=s.confidence)
            for s in analysis.sections
        ),
        cue_points=tuple(
            CuePoint(time_s=c.time_s,
                     kind="exit" if c.kind == common_pb2.CUE_KIND_EXIT else "entry",
                     phrase_bars=c.phrase_bars, energy=c.energy)
            for c in analysis.cue_points
        ),
    )


def _plot(target: Path, path: Path, audio: FloatArray,
          analysis: common_pb2.SongAnalysis) -> None:
    try:
        from segue.structure.plot import plot_analysis
    except ModuleNotFoundError:
        print("segue: --plot needs segue.structure.plot, absent in this build", file=sys.stderr)
        return
    png = target if target.suffix.lower() == ".png" else target / f"{path.stem}.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    plot_analysis(audio, DECODE_RATE_HZ, structure_of(analysis), png)


class _ListWriter:
    """Writes analyses to one JSON file as they come (a list, or one object for one file),
    so a long run holds none of them; the file appears whole at the end or not at all."""

    def __init__(self, out: Path, many: bool) -> None:
        self._context = atomic_output(out)
        self._file = self._context.__enter__().open("w")
        self._many = many
        self._count = 0

    def add(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, indent=2)
        if self._many:
            self._file.write(("[\n" if self._count == 0 else ",\n") + text)
        else:
            self._file.write(text)
        self._count += 1

    def close(self, ok: bool) -> None:
        if self._many:
            self._file.write("\n]\n" if self._count else "[]\n")
        else:
            self._file.write("\n")
        self._file.close()
        if ok and (self._many or self._count):  # one file that failed: no output, as before
            self._context.__exit__(None, None, None)
        else:
            self._context.__exit__(RuntimeError, RuntimeError("interrupted"), None)


def _analysis_json(done: Done) -> dict[str, Any]:
    data = message_to_json(done.analysis)
    data["file"] = str(done.source.path)
    return data


def _pending(sources: list[Source], ledger: Ledger | None, out_dir: Path | None,
             force: bool, summary: Summary) -> list[Source]:
    """Sources still to analyse: those the ledger does not know unchanged (with their JSON)."""
    if ledger is None or out_dir is None or force:
        return sources
    todo = []
    for source in sources:
        if (out_dir / source.out_name).is_file() and ledger.unchanged(
                source.key, source.path, source.song_id):
            summary.unchanged += 1
        else:
            todo.append(source)
    return todo


def run(args: argparse.Namespace) -> int:
    inputs: list[Path] = args.files
    sources = find_sources(inputs)
    many = len(sources) > 1 or any(p.is_dir() for p in inputs)
    if args.plot is not None and many and args.plot.suffix.lower() == ".png":
        return fail("--plot needs a directory when analysing several files")
    if problem := library_options_problem(args):
        return fail(problem)
    ledger = None
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        ledger = Ledger(args.out_dir / LEDGER_NAME)
    summary = Summary()
    todo = _pending(sources, ledger, args.out_dir, args.force, summary)
    writer: _ListWriter | None = None
    printed: list[dict[str, Any]] = []
    ok = False
    try:
        if args.output is not None:
            writer = _ListWriter(args.output, many)
        with Progress(len(todo), desc="analyse", enabled=many) as progress:
            for outcome in library_outcomes(args, todo):
                summary.add(outcome)
                if isinstance(outcome, Done):
                    _store(args, outcome, ledger, writer, printed)
                progress.advance(outcome.audio_s if isinstance(outcome, Done) else 0.0)
        ok = True
    except Exception as e:  # model or channel set-up: tell the person, no traceback
        return fail(str(e))
    finally:
        if writer is not None:
            writer.close(ok)
        if ledger is not None:
            ledger.close()
    if args.out_dir is None and args.output is None and printed:
        payload: Any = printed if many else printed[0]
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    return finish_summary(summary, args.summary)


def _store(args: argparse.Namespace, done: Done, ledger: Ledger | None,
           writer: _ListWriter | None, printed: list[dict[str, Any]]) -> None:
    """Writes one finished file's analysis where the options say, then records it."""
    data = _analysis_json(done)
    if args.out_dir is not None:
        target = args.out_dir / done.source.out_name
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, json.dumps(data, indent=2) + "\n")
    elif writer is not None:
        writer.add(data)
    else:
        printed.append(data)
    if ledger is not None:
        ledger.finished(done.source.key, done.source.path, done.source.song_id,
                        done.size, done.mtime_ns)  # fmt: skip
    if args.plot is not None:
        _plot(args.plot, done.source.path, decode(done.source.path, DECODE_RATE_HZ),
              done.analysis)
