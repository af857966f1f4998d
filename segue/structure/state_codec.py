"""The structure accumulator's resumable state as bytes: versions 2-5 read, 5 written.

Layout of versions 4 and 5 (all little-endian): a header (magic "SGST", version u16, CRC-32 u32 of
the fixed part, the previous mel frame and the tail), the fixed part (`_FIXED`), then the
arrays windows [n, 3] int32, onset [m, 4] float16, tonal [k, 13] float16, timbre [2n, 13]
float16, previous mel frame float32 and tail samples float32. The fixed part carries each of
the four growing arrays' own CRC-32, kept running as rows are added (`Rows`), so writing a
state costs a copy, not a pass over the whole song's features.

Version 5 changed what the chroma columns of `tonal` hold (spectral peaks per pitch class,
`segue.structure.chroma.peak_pitch_classes`), not the layout. A version 4 state keeps the
chroma it was written with: a song resumed across the upgrade reads its key from both kinds.
Version 3 is the same as 4 with onset [m, 2] (flux over all bands and over the bass bands);
version 2 (read only too) a zlib-compressed npz archive of those arrays after the header,
checked by the header's CRC-32. Their onsets are widened on reading (`widen_onset`), so
tokens issued before an upgrade still resume.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt

from segue.structure.onset import BAND_GROUPS, N_MELS, band_group_shares
from segue.structure.window_features import (
    ONSET_WIDTH,
    TIMBRE_COEFFS,
    TIMBRE_PER_WINDOW,
    TONAL_WIDTH,
    WINDOW_WIDTH,
    Source,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer

F32 = npt.NDArray[np.float32]

MAGIC = b"SGST"
# 2: onsets on the model's own 490-sample frame grid (npz, zlib).
# 3: raw little-endian arrays, each growing one with a running CRC-32.
# 4: onset flux per group of bands instead of over all bands and the bass bands.
# 5: chroma from spectral peaks (the same layout as 4).
VERSION = 5
READABLE_VERSIONS = (2, 3, 4, 5)
# Onset columns of versions 2 and 3: all bands, bass bands.
OLD_ONSET_WIDTH = 2
_HEADER = struct.Struct("<4sHI")
# sample rate, source, n_mels of previous_mel (0: none), windows, onset rows, tonal rows,
# tail samples, then the CRC-32 of the windows, onset, tonal and timbre arrays.
_FIXED = struct.Struct("<IBxHIIII4I")

_SOURCE_CODES: dict[Source | None, int] = {None: 0, "pcm": 1, "mel": 2}
_SOURCES = {code: source for source, code in _SOURCE_CODES.items()}

WINDOWS_DTYPE = "<i4"
FEATURE_DTYPE = "<f2"


# Built at every checkpoint, so slotted, not frozen: that builds in a third of the time.
@dataclass(slots=True)
class StoredRows:
    """One stored array as consecutive blocks of rows (C-contiguous, in the stored dtype),
    their total count, and the CRC-32 of all their bytes in order. The blocks may be views
    of an accumulator's buffers: read them, never write."""

    parts: tuple[npt.NDArray[np.generic], ...]
    rows: int
    crc: int


class Rows:
    """A growable [rows, width] array with the CRC-32 of its bytes so far: appending costs
    only the new rows, and serialising needs no pass over the old ones."""

    def __init__(self, width: int, dtype: str, capacity: int = 64) -> None:
        self._data = np.zeros((capacity, width), dtype)
        self._size = 0
        self.crc = 0

    def __len__(self) -> int:
        return self._size

    @property
    def values(self) -> npt.NDArray[np.generic]:
        return self._data[: self._size]

    def append(self, rows: npt.NDArray[np.generic]) -> None:
        """Adds rows [k, width] (cast to the stored type)."""
        end = self._size + len(rows)
        if end > len(self._data):
            grown = np.zeros((max(end, 2 * len(self._data)), self._data.shape[1]), self._data.dtype)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        added = self._data[self._size : end]
        added[...] = rows
        self.crc = zlib.crc32(added.data, self.crc)
        self._size = end

    def stored(self, extra: npt.NDArray[np.generic] | None = None) -> StoredRows:
        """These rows, followed by `extra` rows (cast to the stored type) if given, as stored:
        the rows are not copied and nothing here changes."""
        values = self._data[: self._size]
        if extra is None or not len(extra):
            return StoredRows((values,), self._size, self.crc)
        added = np.ascontiguousarray(extra, self._data.dtype)
        crc = zlib.crc32(added.data, self.crc)
        return StoredRows((values, added), self._size + len(added), crc)

    @classmethod
    def of(cls, stored: StoredRows) -> Rows:
        """A growable copy of stored rows (their CRC-32 is taken as given)."""
        width, dtype = stored.parts[0].shape[1], stored.parts[0].dtype
        rows = cls(width, dtype.str, max(64, stored.rows))
        start = 0
        for part in stored.parts:
            rows._data[start : start + len(part)] = part
            start += len(part)
        rows._size = start
        rows.crc = stored.crc
        return rows


@dataclass(slots=True)
class StructureState:
    """Everything a structure accumulator needs to continue a stream (read-only, like the
    rows it holds)."""

    sample_rate_hz: int
    source: Source | None  # None until the first window
    windows: StoredRows  # [windows, WINDOW_WIDTH] int32: samples, mel frames, chroma frames
    onset: StoredRows  # [mel frames, ONSET_WIDTH] float16
    tonal: StoredRows  # [chroma frames, TONAL_WIDTH] float16
    timbre: StoredRows  # [windows * TIMBRE_PER_WINDOW, TIMBRE_COEFFS] float16
    previous_mel: F32 | None  # the last log-mel frame, the next flux's reference
    tail: F32  # own log-mel only: samples of a frame that the next window completes


def encode(state: StructureState) -> bytes:
    """The state in the current version's bytes (about 530 bytes per second of audio)."""
    previous = np.zeros(0, np.float32) if state.previous_mel is None else state.previous_mel
    windows, onset, tonal, timbre = state.windows, state.onset, state.tonal, state.timbre
    fixed = _FIXED.pack(
        state.sample_rate_hz,
        _SOURCE_CODES[state.source],
        len(previous),
        windows.rows,
        onset.rows,
        tonal.rows,
        len(state.tail),
        windows.crc,
        onset.crc,
        tonal.crc,
        timbre.crc,
    )
    previous_data = np.ascontiguousarray(previous, "<f4").data
    tail_data = np.ascontiguousarray(state.tail, "<f4").data
    crc = zlib.crc32(tail_data, zlib.crc32(previous_data, zlib.crc32(fixed)))
    # The parts are C-contiguous arrays, which join reads as buffers (numpy's stubs declare
    # that only for Python 3.12+, hence the cast); taking .data of each costs twice as long.
    blocks = [*windows.parts, *onset.parts, *tonal.parts, *timbre.parts]
    header = _HEADER.pack(MAGIC, VERSION, crc)
    return b"".join([header, fixed, *cast("list[Buffer]", blocks), previous_data, tail_data])


def decode(data: bytes) -> StructureState:
    """A state written by `encode`, now or by an earlier readable version; ValueError when it
    is corrupt, of another version, or not a structure state."""
    if len(data) < _HEADER.size:
        raise ValueError("structure state too short")
    magic, version, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not a structure state")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"unsupported structure state version {version}")
    try:
        if version == 2:
            return _widened(_decode_v2(data[_HEADER.size :], crc))
        body = memoryview(data)[_HEADER.size :]
        if version == 3:
            return _widened(_decode_raw(body, crc, OLD_ONSET_WIDTH))
        return _decode_raw(body, crc, ONSET_WIDTH)
    except ValueError:
        raise
    except Exception as error:  # any decoding failure means a corrupt state
        raise ValueError(f"corrupt structure state: {error}") from error


def _widened(state: StructureState) -> StructureState:
    """A version 2 or 3 state with its onsets widened to the current columns."""
    n_mels = N_MELS if state.previous_mel is None else len(state.previous_mel)
    rows = widen_onset(np.concatenate(state.onset.parts).astype(np.float32), n_mels)
    stored = np.ascontiguousarray(rows.astype(FEATURE_DTYPE))
    return replace(state, onset=StoredRows((stored,), len(stored), zlib.crc32(stored.data)))


def widen_onset(old: F32, n_mels: int) -> F32:
    """Flux over all bands and over the bass bands [m, 2] as flux per band group [m,
    BAND_GROUPS]: the bass group keeps its flux, and each group above it gets the mean flux
    of the bands above the bass, so that the mean over all bands stays what it was."""
    shares = band_group_shares(n_mels)
    bass_share = float(shares[0])
    above = (old[:, 0] - bass_share * old[:, 1]) / max(1.0 - bass_share, 1e-6)
    out = np.empty((len(old), BAND_GROUPS), np.float32)
    out[:, 0] = old[:, 1]
    out[:, 1:] = np.maximum(above, 0.0)[:, None]
    return out


def _decode_raw(body: memoryview, crc: int, onset_width: int) -> StructureState:
    """Versions 3 to 5, whose onset rows are `onset_width` wide."""
    if len(body) < _FIXED.size:
        raise ValueError("structure state too short")
    fixed = body[: _FIXED.size]
    (rate, source_code, n_mels, windows, onsets, tonals, tail, *crcs) = _FIXED.unpack(fixed)
    shapes = [
        ((windows, WINDOW_WIDTH), WINDOWS_DTYPE),
        ((onsets, onset_width), FEATURE_DTYPE),
        ((tonals, TONAL_WIDTH), FEATURE_DTYPE),
        ((windows * TIMBRE_PER_WINDOW, TIMBRE_COEFFS), FEATURE_DTYPE),
        ((n_mels,), "<f4"),
        ((tail,), "<f4"),
    ]
    sizes = [int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in shapes]
    if len(body) != _FIXED.size + sum(sizes):
        raise ValueError("structure state has the wrong length")
    arrays = []
    position = _FIXED.size
    for (shape, dtype), size in zip(shapes, sizes, strict=True):
        arrays.append(np.frombuffer(body[position : position + size], dtype).reshape(shape))
        position += size
    if zlib.crc32(b"".join([fixed, arrays[4].tobytes(), arrays[5].tobytes()])) != crc or any(
        zlib.crc32(a.data) != c for a, c in zip(arrays[:4], crcs, strict=True)
    ):
        raise ValueError("structure state checksum mismatch")
    if source_code not in _SOURCES:
        raise ValueError("unknown feature source")
    _check_counts(*arrays[:4])
    stored = [StoredRows((a,), len(a), c) for a, c in zip(arrays[:4], crcs, strict=True)]
    return StructureState(
        sample_rate_hz=rate,
        source=_SOURCES[source_code],
        windows=stored[0],
        onset=stored[1],
        tonal=stored[2],
        timbre=stored[3],
        previous_mel=arrays[4].astype(np.float32) if n_mels else None,
        tail=arrays[5].astype(np.float32),
    )


def _decode_v2(payload: bytes, crc: int) -> StructureState:
    """Version 2: an npz archive in zlib, checked by the header's CRC-32."""
    if zlib.crc32(payload) != crc:
        raise ValueError("structure state checksum mismatch")
    with np.load(io.BytesIO(zlib.decompress(payload)), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    sample_rate, source_code = (int(v) for v in arrays["meta"])
    names = ("window_lengths", "mel_counts", "chroma_counts")
    counts = [arrays[k].astype(np.int32) for k in names]
    if not len(counts[0]) == len(counts[1]) == len(counts[2]):
        raise ValueError("inconsistent window counts")
    tables = [
        _rows(np.stack(counts, axis=1), WINDOW_WIDTH, WINDOWS_DTYPE),
        _rows(arrays["onset"], OLD_ONSET_WIDTH, FEATURE_DTYPE),
        _rows(arrays["tonal"], TONAL_WIDTH, FEATURE_DTYPE),
        _rows(arrays["timbre"], TIMBRE_COEFFS, FEATURE_DTYPE),
    ]
    _check_counts(*tables)
    stored = [StoredRows((t,), len(t), zlib.crc32(t.data)) for t in tables]
    previous = np.asarray(arrays["previous_mel"], dtype=np.float32)
    return StructureState(
        sample_rate_hz=sample_rate,
        source=_SOURCES[source_code],
        windows=stored[0],
        onset=stored[1],
        tonal=stored[2],
        timbre=stored[3],
        previous_mel=previous if len(previous) else None,
        tail=np.asarray(arrays["tail"], dtype=np.float32),
    )


def _rows(values: npt.ArrayLike, width: int, dtype: str) -> npt.NDArray[np.generic]:
    """`values` as C-contiguous [rows, width] of the stored `dtype`."""
    out: npt.NDArray[np.generic] = np.ascontiguousarray(
        np.asarray(values, dtype=dtype).reshape(-1, width)
    )
    return out


def _check_counts(
    windows: npt.NDArray[np.generic],
    onset: npt.NDArray[np.generic],
    tonal: npt.NDArray[np.generic],
    timbre: npt.NDArray[np.generic],
) -> None:
    """ValueError unless the feature rows match the per-window counts."""
    counts = windows.astype(np.int64)
    if np.any(counts < 0) or len(timbre) != TIMBRE_PER_WINDOW * len(counts):
        raise ValueError("inconsistent window counts")
    if counts[:, 1].sum() != len(onset) or counts[:, 2].sum() != len(tonal):
        raise ValueError("feature lengths do not match window counts")
