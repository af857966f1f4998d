"""One file through the in-process engine, with its audio streamed from ffmpeg (lossless files
are decoded in this process instead: segue.library.av_reader).

The song is never held whole: ffmpeg decodes ahead into its pipe while the model runs on the
previous chunk, so decoding overlaps model work and memory does not grow with the file's
length (only the structure features, a few kB per minute, do).
"""

from __future__ import annotations

from pathlib import Path

from segue.audio import DecodeError
from segue.embedding.analysis import build_analysis
from segue.embedding.local import run_windows
from segue.embedding.model import StreamModel
from segue.embedding.settings import EngineSettings
from segue.embedding.stream_state import SongStream
from segue.library import outcome as why
from segue.library.decoding import DECODE_RATE_HZ, check_file, decode_failure, open_reader
from segue.library.outcome import Done, Failed, Outcome
from segue.library.sources import Source
from segue.v1 import common_pb2

# Frames per chunk handed to the model: 2^18 frames = 11.9 s at 22050 Hz, 1 MiB of float32.
CHUNK_FRAMES = 1 << 18
# Longest song whose structure (tempo, key, sections) is analysed, seconds: the embedder's
# default max_song_s. The section analysis compares every beat with every other, so its
# memory grows with the square of the length (measured: 0.3 GB at 30 min, 1.9 GB at 2 h);
# longer files (DJ sets, audiobooks) get their vectors and segments without structure.
STRUCTURE_MAX_S = 1800.0


class LocalEngine:
    """The ONNX session and settings one process reuses for every file it analyses."""

    def __init__(self, model_path: Path | None = None) -> None:
        config = EngineSettings.from_env()
        self.model = StreamModel(model_path or config.model_path,
                                 provider=config.execution_provider,
                                 intra_threads=config.ort_threads)  # fmt: skip
        self.settings = config.stream
        self.format = common_pb2.AudioFormat(
            sample_rate_hz=DECODE_RATE_HZ, channels=1,
            sample_format=common_pb2.SAMPLE_FORMAT_F32LE,
        )  # fmt: skip

    def analyze(self, source: Source) -> Outcome:
        """The file's analysis, or the reason it failed; never raises for a bad file."""
        info, failed = check_file(source)
        if failed is not None or info is None:
            return failed or Failed(source, why.UNREADABLE, "no file status")
        stream = SongStream(self.model.spec, source.song_id, self.format, self.settings)
        try:
            with open_reader(source.path, check_length=True) as reader:
                for chunk in reader.chunks(CHUNK_FRAMES):
                    run_windows(self.model, stream, stream.push(chunk))
            run_windows(self.model, stream, stream.finish())
            analysis = build_analysis(stream, with_structure=stream.position_s <= STRUCTURE_MAX_S)
        except DecodeError as e:
            return decode_failure(source, e)
        except Exception as e:  # the engine's own errors: report this file, go on
            return Failed(source, why.ANALYSIS, f"{type(e).__name__}: {e}")
        return Done(source, analysis.SerializeToString(), stream.position_s,
                    info.st_size, info.st_mtime_ns)  # fmt: skip


__all__ = ["CHUNK_FRAMES", "STRUCTURE_MAX_S", "LocalEngine"]
