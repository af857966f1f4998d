"""In-process analysis without a server: the offline pass used by `segue analyze --local`.

It runs the same SongStream core as the server, but feeds the whole song at once and runs the
model over many windows per call (state threaded through), which the model contract makes the
same computation as window by window.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from segue.embedding.analysis import build_analysis
from segue.embedding.model import StreamModel
from segue.embedding.stream_state import PendingWindow, SongStream, StreamSettings
from segue.v1 import common_pb2

FloatArray = npt.NDArray[np.float32]

# Windows per model call: long enough to amortise the call, short enough to bound memory.
WINDOWS_PER_RUN = 32


def run_windows(model: StreamModel, stream: SongStream, windows: list[PendingWindow]) -> None:
    """Runs and commits windows in order, several per model call."""
    for start in range(0, len(windows), WINDOWS_PER_RUN):
        group = windows[start : start + WINDOWS_PER_RUN]
        pcm = np.concatenate([w.pcm for w in group])[None, :]
        out = model.run(pcm, stream.state[None, :])
        for k, window in enumerate(group):
            stream.commit(window, out, k, update_state=k == len(group) - 1)


def analyze_mono(
    model: StreamModel,
    mono: FloatArray,
    sample_rate_hz: int,
    song_id: str,
    *,
    settings: StreamSettings | None = None,
    on_window: Callable[[int], None] | None = None,
) -> common_pb2.SongAnalysis:
    """The full analysis of one mono song given at any supported rate."""
    if mono.size == 0:
        raise ValueError("no audio to analyse")
    fmt = common_pb2.AudioFormat(
        sample_rate_hz=sample_rate_hz, channels=1, sample_format=common_pb2.SAMPLE_FORMAT_F32LE
    )
    stream = SongStream(model.spec, song_id, fmt, settings or StreamSettings())
    windows = stream.push(np.asarray(mono, dtype=np.float32)) + stream.finish()
    run_windows(model, stream, windows)
    if on_window is not None:
        on_window(len(windows))
    return build_analysis(stream)


__all__ = ["WINDOWS_PER_RUN", "analyze_mono", "run_windows"]
