"""`segue analyze FILE...`: stream songs to the embedder (or analyse in-process) and write JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from segue.audio import DecodeError, decode
from segue.cli.common import DEFAULT_EMBEDDER, add_target, describe_error, fail, message_to_json
from segue.client.embedder import AnalyzeResult, EmbedderClient
from segue.client.errors import SegueError
from segue.v1 import common_pb2

FloatArray = npt.NDArray[np.float32]
# Rate files are decoded at: the model's own, so nothing is resampled twice.
DECODE_RATE_HZ = 22050

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
        description="Decodes each FILE (anything ffmpeg reads), streams it to the embedder "
        "service (or analyses it in-process with --local) and writes one JSON analysis per file.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    add_target(parser, "embedder", DEFAULT_EMBEDDER)
    parser.add_argument("--local", action="store_true",
                        help="analyse in this process with the ONNX model; no server needed")
    parser.add_argument("--model", type=Path, default=None,
                        help="ONNX model for --local (default: SEGUE_MODEL_PATH or the bundled "
                        "one)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", type=Path, metavar="OUT.json",
                     help="write the analysis (a list for several files) to this file")
    out.add_argument("--out-dir", type=Path, metavar="DIR",
                     help="write DIR/<file stem>.json per file")
    parser.add_argument("--plot", type=Path, metavar="PNG_OR_DIR",
                        help="also draw the structure: a .png path (one file) or a directory")
    parser.add_argument("--chunk-s", type=float, default=1.0,
                        help="seconds of audio per streamed chunk (default 1)")
    parser.set_defaults(func=run)


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


def _remote_analyzer(address: str, chunk_s: float, loop: asyncio.AbstractEventLoop) -> Analyzer:
    client = loop.run_until_complete(_make_client(address))

    def analyze(song_id: str, audio: FloatArray) -> common_pb2.SongAnalysis:
        result: AnalyzeResult = loop.run_until_complete(
            client.analyze_audio(song_id, audio, DECODE_RATE_HZ, chunk_s=chunk_s,
                                 stream_windows=False))
        return result.analysis

    return analyze


async def _make_client(address: str) -> EmbedderClient:
    return EmbedderClient(address)


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


def run(args: argparse.Namespace) -> int:
    files: list[Path] = args.files
    many = len(files) > 1
    if args.plot is not None and many and args.plot.suffix.lower() == ".png":
        return fail("--plot needs a directory when analysing several files")
    loop = asyncio.new_event_loop()
    try:
        analyzer = (_local_analyzer(args.model) if args.local
                    else _remote_analyzer(args.embedder, args.chunk_s, loop))
    except Exception as e:  # model or channel set-up: tell the person, no traceback
        loop.close()
        return fail(str(e))
    results: list[dict[str, Any]] = []
    failures = 0
    try:
        for path in tqdm(files, desc="analyse", unit="song", file=sys.stderr,
                         disable=not many):
            try:
                audio = decode(path, DECODE_RATE_HZ)
                analysis = analyzer(path.stem, audio)
            except (DecodeError, OSError) as e:
                failures += 1
                print(f"segue: {path}: {e}", file=sys.stderr)
                continue
            except SegueError as e:  # the embedder refused or failed: report per file, go on
                failures += 1
                print(f"segue: {path}: {describe_error(e)}", file=sys.stderr)
                continue
            except Exception as e:  # the in-process engine's own errors (--local), likewise
                failures += 1
                print(f"segue: {path}: {e}", file=sys.stderr)
                continue
            data = message_to_json(analysis)
            data["file"] = str(path)
            if args.out_dir is not None:
                args.out_dir.mkdir(parents=True, exist_ok=True)
                (args.out_dir / f"{path.stem}.json").write_text(json.dumps(data, indent=2) + "\n")
            results.append(data)
            if args.plot is not None:
                _plot(args.plot, path, audio, analysis)
    finally:
        loop.close()
    if args.out_dir is None:
        payload: Any = results if many else (results[0] if results else None)
        text = json.dumps(payload, indent=2) + "\n"
        if args.output is not None:
            args.output.write_text(text)
        elif results:
            sys.stdout.write(text)
    return 1 if failures else 0
