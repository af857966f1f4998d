"""The state of one song being analysed: the analysis core shared by the server and `--local`.

Audio flows: client PCM -> mono -> streaming resampler (model rate) -> window buffer -> whole
model windows. The caller runs the model on each window (with `state`) and hands the outputs
back to `commit`, in order. Everything downstream of the window cut (model state, segment
vectors, loudness, structure features) sees the same windows whatever the chunking, so the
result does not depend on how the client sliced its audio.

End of stream: the final partial window is zero-padded to a whole window when it holds at least
`min_tail_s` of audio (or when the song would otherwise have no window at all); a shorter tail
is dropped from the model's input but still counts towards the duration and the loudness.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from segue.embedding.loudness import LoudnessMeter
from segue.embedding.model import ModelOutputs, ModelSpec
from segue.resample import ResamplerState, StreamingResampler
from segue.structure.accumulator import StructureAccumulator
from segue.v1 import common_pb2, embedder_pb2

FloatArray = npt.NDArray[np.float32]
Arrays = dict[str, npt.NDArray[np.generic]]


@dataclass(frozen=True)
class PendingWindow:
    """One whole model window cut from the stream, waiting for its model run."""

    index: int
    pcm: FloatArray  # [window_samples] at the model rate
    valid: int  # samples of real audio; the rest is zero padding


@dataclass
class SegmentAccumulator:
    """Vectors and energy of one fixed-length segment, filled window by window."""

    entry: FloatArray
    exit: FloatArray
    energy_sum: float = 0.0
    windows: int = 0


@dataclass
class StreamSettings:
    segment_s: float = 8.0
    min_tail_s: float = 0.1


@dataclass
class SongStream:
    """Everything the server keeps for one stream between chunks (and puts in its token)."""

    spec: ModelSpec
    song_id: str
    audio_format: common_pb2.AudioFormat
    settings: StreamSettings = field(default_factory=StreamSettings)

    def __post_init__(self) -> None:
        self.resampler = StreamingResampler(
            self.audio_format.sample_rate_hz, self.spec.sample_rate_hz
        )
        self.buffer = np.zeros(0, dtype=np.float32)
        self.state: FloatArray = np.zeros(self.spec.state_dim, dtype=np.float32)
        self.feel: FloatArray = np.zeros(self.spec.feel_dim, dtype=np.float32)
        self.windows_cut = 0
        self.windows_committed = 0
        self.model_samples_cut = 0  # model-rate samples of real audio in cut windows
        self.segments: list[SegmentAccumulator] = []
        self.loudness = LoudnessMeter(self.spec.sample_rate_hz)
        self.structure = StructureAccumulator(self.spec.sample_rate_hz)
        self.finished = False
        self._windows_per_segment = max(1, round(self.settings.segment_s / self.spec.window_s))

    # ---- sizes ---------------------------------------------------------------------------

    @property
    def frames_consumed(self) -> int:
        """Client frames received so far (at the client's rate)."""
        return self.resampler.consumed

    @property
    def position_s(self) -> float:
        return self.frames_consumed / self.audio_format.sample_rate_hz

    @property
    def windows_per_segment(self) -> int:
        return self._windows_per_segment

    # ---- audio in, windows out -----------------------------------------------------------

    def push(self, mono: FloatArray) -> list[PendingWindow]:
        """Adds client audio (mono, client rate); returns the whole windows it completes."""
        if self.finished:
            raise RuntimeError("audio after the end of the stream")
        resampled = self.resampler.push(mono)
        if resampled.size:
            self.buffer = np.concatenate([self.buffer, resampled])
        return self._cut(final=False)

    def finish(self) -> list[PendingWindow]:
        """Flushes the resampler and cuts the final (padded) window, if any."""
        if self.finished:
            return []
        self.finished = True
        tail = self.resampler.finish()
        # Resampler rounding can yield one sample more than the real duration holds.
        if tail.size:
            self.buffer = np.concatenate([self.buffer, tail])
        return self._cut(final=True)

    def _cut(self, *, final: bool) -> list[PendingWindow]:
        size = self.spec.window_samples
        out: list[PendingWindow] = []
        whole = self.buffer.size // size
        for i in range(whole):
            out.append(self._window(self.buffer[i * size : (i + 1) * size].copy(), size))
        self.buffer = self.buffer[whole * size :].copy()
        if final and self.buffer.size:
            min_tail = round(self.settings.min_tail_s * self.spec.sample_rate_hz)
            if self.buffer.size >= min_tail or self.windows_cut == 0:
                padded = np.zeros(size, dtype=np.float32)
                padded[: self.buffer.size] = self.buffer
                out.append(self._window(padded, self.buffer.size))
            else:
                self.loudness.push(self.buffer)
            self.buffer = np.zeros(0, dtype=np.float32)
        return out

    def _window(self, pcm: FloatArray, valid: int) -> PendingWindow:
        window = PendingWindow(index=self.windows_cut, pcm=pcm, valid=valid)
        self.windows_cut += 1
        self.model_samples_cut += valid
        return window

    # ---- model results in ----------------------------------------------------------------

    def commit(self, window: PendingWindow, out: ModelOutputs, k: int = 0,
               update_state: bool = True) -> None:
        """Records window `window` whose outputs are at position k of `out` (batch of one).

        `update_state` is False for all but the last window of a multi-window run, whose
        state_out and feel then already cover the earlier windows.
        """
        if window.index != self.windows_committed:
            raise RuntimeError(
                f"window {window.index} committed out of order (expected {self.windows_committed})"
            )
        entry = out.entry[0, k]
        exit_ = out.exit[0, k]
        segment = window.index // self.windows_per_segment
        if segment == len(self.segments):
            self.segments.append(SegmentAccumulator(entry=entry.copy(), exit=exit_.copy()))
        current = self.segments[segment]
        current.exit = exit_.copy()
        real = window.pcm[: window.valid]
        # One float64 copy serves both the RMS energy and the loudness filter.
        wide = real.astype(np.float64)
        current.energy_sum += float(np.sqrt(np.dot(wide, wide) / max(1, wide.size)))
        current.windows += 1
        self.loudness.push(wide)
        fpw = self.spec.frames_per_window
        mel = out.frames[0, k * fpw : (k + 1) * fpw]
        if window.valid < window.pcm.size:
            keep = max(1, -(-window.valid // self.spec.frame_hop_samples))
            mel = mel[:keep]
        self.structure.push(real, mel)
        if update_state:
            self.state = out.state[0].copy()
            self.feel = out.feel[0].copy()
        self.windows_committed += 1

    def window_embedding(self, window: PendingWindow, embedding: FloatArray, entry: FloatArray,
                         exit_: FloatArray) -> embedder_pb2.WindowEmbedding:
        window_s = self.spec.window_s
        start = window.index * window_s
        end = start + window.valid / self.spec.sample_rate_hz
        return embedder_pb2.WindowEmbedding(
            index=window.index,
            start_s=start,
            end_s=end,
            embedding=embedding.tolist(),
            entry=entry.tolist(),
            exit=exit_.tolist(),
        )

    # ---- checkpointing -------------------------------------------------------------------

    def snapshot(self) -> Arrays:
        """Every value needed to continue this stream elsewhere, as named arrays."""
        if self.windows_committed != self.windows_cut:
            raise RuntimeError("snapshot with windows still waiting for the model")
        r = self.resampler.state()
        seg = self.segments
        width = self.spec.transition_dim
        lstate = self.loudness.state()
        # Checkpoints are where held-back structure windows get analysed: once, here.
        self.structure.flush()
        return {
            "format": np.asarray(
                [self.audio_format.sample_rate_hz, self.audio_format.channels,
                 self.audio_format.sample_format], dtype=np.int64),
            "counters": np.asarray(
                [r.consumed, r.produced, r.history_start, int(r.finished), self.windows_cut,
                 self.model_samples_cut, int(self.finished)], dtype=np.int64),
            "settings": np.asarray([self.settings.segment_s, self.settings.min_tail_s]),
            "resampler_history": r.history,
            "buffer": self.buffer,
            "state": self.state,
            "feel": self.feel,
            "segment_entry": np.asarray([s.entry for s in seg], np.float32).reshape(-1, width),
            "segment_exit": np.asarray([s.exit for s in seg], np.float32).reshape(-1, width),
            "segment_energy": np.asarray([s.energy_sum for s in seg], np.float64),
            "segment_windows": np.asarray([s.windows for s in seg], np.int64),
            "loudness_zi": np.asarray(lstate["zi"]),
            "loudness_energies": np.asarray(lstate["energies"]),
            "loudness_partial": np.asarray([lstate["partial_sum"], lstate["partial_count"]],
                                           np.float64),
            "structure": np.frombuffer(self.structure.to_bytes(), dtype=np.uint8),
        }

    @classmethod
    def restore(cls, spec: ModelSpec, song_id: str, arrays: Arrays) -> SongStream:
        """Rebuilds a stream from `snapshot()`; ValueError when the values are inconsistent."""
        try:
            rate, channels, sample_format = (int(v) for v in arrays["format"])
            (consumed, produced, history_start, r_finished, windows_cut, samples_cut,
             finished) = (int(v) for v in arrays["counters"])
            segment_s, min_tail_s = (float(v) for v in arrays["settings"])
            fmt = common_pb2.AudioFormat(
                sample_rate_hz=rate, channels=channels,
                sample_format=common_pb2.SampleFormat.ValueType(sample_format))
            stream = cls(spec, song_id, fmt, StreamSettings(segment_s, min_tail_s))
            stream.resampler = StreamingResampler.from_state(ResamplerState(
                rate_in=rate, rate_out=spec.sample_rate_hz, consumed=consumed, produced=produced,
                history_start=history_start,
                history=np.asarray(arrays["resampler_history"], np.float32),
                finished=bool(r_finished)))
            stream.buffer = np.asarray(arrays["buffer"], np.float32)
            stream.state = np.asarray(arrays["state"], np.float32).reshape(spec.state_dim)
            stream.feel = np.asarray(arrays["feel"], np.float32).reshape(spec.feel_dim)
            stream.windows_cut = stream.windows_committed = windows_cut
            stream.model_samples_cut = samples_cut
            stream.finished = bool(finished)
            entries = np.asarray(arrays["segment_entry"], np.float32)
            exits = np.asarray(arrays["segment_exit"], np.float32)
            energies = np.asarray(arrays["segment_energy"], np.float64)
            counts = np.asarray(arrays["segment_windows"], np.int64)
            if not len(entries) == len(exits) == len(energies) == len(counts):
                raise ValueError("segment arrays differ in length")
            stream.segments = [
                SegmentAccumulator(entry=e.copy(), exit=x.copy(), energy_sum=float(s),
                                   windows=int(c))
                for e, x, s, c in zip(entries, exits, energies, counts, strict=True)
            ]
            partial = np.asarray(arrays["loudness_partial"], np.float64)
            stream.loudness = LoudnessMeter.from_state(
                spec.sample_rate_hz, np.asarray(arrays["loudness_zi"], np.float64),
                np.asarray(arrays["loudness_energies"], np.float64), float(partial[0]),
                int(partial[1]))
            stream.structure = StructureAccumulator.from_bytes(
                np.asarray(arrays["structure"], np.uint8).tobytes())
        except KeyError as e:
            raise ValueError(f"missing field {e}") from e
        except (TypeError, IndexError) as e:
            raise ValueError(str(e)) from e
        if stream.structure.windows_pushed != windows_cut:
            raise ValueError("structure state does not match the window count")
        return stream


__all__ = ["PendingWindow", "SegmentAccumulator", "SongStream", "StreamSettings"]
