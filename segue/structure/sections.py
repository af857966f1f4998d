"""Sections: boundaries from a self-similarity novelty curve, letters from section similarity."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.ndimage

from segue.structure.result import Section, SectionFunction

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# Features are pooled into blocks of about this length when no bar grid is known.
BLOCK_S = 1.0
# Half-width of the checkerboard kernel, in blocks (bars or seconds).
KERNEL_HALF_BARS = 8
KERNEL_HALF_S = 10.0
MIN_SECTION_S = 6.0
# Novelty peaks count as boundaries above the curve's median plus this many deviations.
THRESHOLD_STD = 0.25
# Shares of the feature groups in the self-similarity that boundaries are found on. Each
# group's similarities are standardised first, so these are shares of evidence whatever a
# group's size or spread. Chosen on generated songs (seeds 2000-2023) and splice composites
# (rng seeds 7 and 8), not on the evaluation sets: timbre and groove mark a change of
# recording or arrangement best; loudness varies a lot within sections.
GROUP_WEIGHTS = {"chroma": 0.5, "timbre": 1.5, "loudness": 0.15, "rhythm": 1.5}
# Mean self-similarity between two sections above which they share a letter, and between
# VARIANT and SAME a primed letter (A').
SAME = 0.80
VARIANT = 0.65


@dataclass(frozen=True)
class BlockFeatures:
    starts_s: F64
    features: F64  # [blocks, dims], all groups stacked, rows L2-normalised
    energy: F64  # mean linear RMS per block
    # Each group standardised over the song, [blocks, group dims], keyed as GROUP_WEIGHTS.
    groups: dict[str, F64]


def pool_blocks(
    edges_s: F64,
    chroma_times_s: F64,
    chroma: F32,
    level_db: F32,
    timbre_times_s: F64,
    timbre: F32,
    rhythm_times_s: F64 | None = None,
    rhythm: F64 | None = None,
) -> BlockFeatures:
    """Chroma, timbre, loudness (and rhythm pattern) averaged between consecutive `edges_s`."""
    n = len(edges_s) - 1
    lin = np.sqrt(np.power(10.0, chroma.astype(np.float64)))
    lin /= np.maximum(lin.sum(axis=1, keepdims=True), 1e-12)
    rms = np.power(10.0, level_db.astype(np.float64) / 20.0)
    c_idx = np.clip(np.searchsorted(edges_s, chroma_times_s, side="right") - 1, 0, n - 1)
    t_idx = np.clip(np.searchsorted(edges_s, timbre_times_s, side="right") - 1, 0, n - 1)
    chroma_sum = np.zeros((n, 12))
    np.add.at(chroma_sum, c_idx, lin)
    energy = np.zeros(n)
    np.add.at(energy, c_idx, rms)
    counts = np.maximum(np.bincount(c_idx, minlength=n), 1)
    timbre_sum = np.zeros((n, timbre.shape[1]))
    np.add.at(timbre_sum, t_idx, timbre.astype(np.float64))
    t_counts = np.maximum(np.bincount(t_idx, minlength=n), 1)
    chroma_mean = chroma_sum / counts[:, None]
    timbre_mean = timbre_sum / t_counts[:, None]
    energy = energy / counts
    # Timbre is standardised over the song so its scale (unknown log base) does not matter.
    timbre_z = (timbre_mean - timbre_mean.mean(axis=0)) / np.maximum(timbre_mean.std(axis=0), 1e-6)
    chroma_z = (chroma_mean - chroma_mean.mean(axis=0)) / np.maximum(chroma_mean.std(axis=0), 1e-6)
    loud = np.log(energy + 1e-6)
    loud_z = (loud - loud.mean()) / max(float(loud.std()), 1e-6)
    groups = {"chroma": chroma_z, "timbre": timbre_z, "loudness": loud_z[:, None]}
    if rhythm is not None and rhythm_times_s is not None and len(rhythm):
        r_idx = np.clip(np.searchsorted(edges_s, rhythm_times_s, side="right") - 1, 0, n - 1)
        rhythm_sum = np.zeros((n, rhythm.shape[1]))
        np.add.at(rhythm_sum, r_idx, rhythm)
        r_counts = np.bincount(r_idx, minlength=n)
        # Blocks shorter than the rhythm hop borrow the nearest row.
        nearest = np.clip(np.searchsorted(rhythm_times_s, edges_s[:-1]), 0, len(rhythm) - 1)
        rhythm_mean = np.where(
            (r_counts > 0)[:, None], rhythm_sum / np.maximum(r_counts, 1)[:, None], rhythm[nearest]
        )
        spread = np.maximum(rhythm_mean.std(axis=0), 1e-6)
        groups["rhythm"] = (rhythm_mean - rhythm_mean.mean(axis=0)) / spread
    # Stacked with each group scaled to unit expected norm, for section similarity.
    stacked = np.hstack([g / np.sqrt(g.shape[1]) for g in groups.values()])
    stacked /= np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-9)
    return BlockFeatures(edges_s[:-1].astype(np.float64), stacked, energy, groups)


def fused_similarity(blocks: BlockFeatures) -> F64:
    """Weighted mean of the groups' standardised self-similarity matrices, [blocks, blocks].

    Cosine similarity within each group (for a single value, minus the absolute difference),
    standardised over the matrix so that every group speaks on the same scale before the
    GROUP_WEIGHTS mix them; a group that does not vary says nothing.
    """
    n = len(blocks.starts_s)
    total = np.zeros((n, n))
    weight = 0.0
    for name, values in blocks.groups.items():
        if values.shape[1] == 1:
            similarity = -np.abs(values - values.T)
        else:
            unit = values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-9)
            similarity = unit @ unit.T
        spread = float(similarity.std())
        if spread < 1e-9:
            continue
        share = GROUP_WEIGHTS[name]
        total += share * (similarity - similarity.mean()) / spread
        weight += share
    out: F64 = total / weight if weight else total
    return out


def novelty(ssm: F64, half: int) -> F64:
    """Foote novelty: a Gaussian-tapered checkerboard kernel slid along the SSM diagonal."""
    n = len(ssm)
    half = max(1, min(half, n // 2))
    axis = np.arange(-half, half) + 0.5
    taper = np.exp(-0.5 * (axis / (0.5 * half)) ** 2)
    kernel = np.outer(taper, taper) * np.outer(np.sign(axis), np.sign(axis))
    padded = np.pad(ssm, half, mode="constant")
    # Every kernel-sized block along the diagonal at once, as a strided view.
    rows, cols = padded.strides
    blocks = np.lib.stride_tricks.as_strided(
        padded, shape=(n, 2 * half, 2 * half), strides=(rows + cols, rows, cols), writeable=False
    )
    out = np.maximum(np.einsum("ijk,jk->i", blocks, kernel), 0.0)
    peak = float(out.max())
    result: F64 = out / peak if peak > 0 else out
    return result


def segment(
    blocks: BlockFeatures, duration_s: float, block_s: float, kernel_half: int
) -> tuple[list[float], list[float]]:
    """Boundary times (excluding 0 and the end) and the novelty at each."""
    n = len(blocks.starts_s)
    if n < 4:
        return [], []
    curve = novelty(fused_similarity(blocks), kernel_half)
    min_gap = max(1, round(MIN_SECTION_S / block_s))
    local_max = scipy.ndimage.maximum_filter1d(curve, size=2 * (min_gap // 2) + 1, mode="constant")
    threshold = max(0.15, float(np.median(curve) + THRESHOLD_STD * np.std(curve)))
    candidates = [i for i in range(1, n) if curve[i] == local_max[i] and curve[i] >= threshold]
    # Strongest first, keeping sections at least MIN_SECTION_S long.
    chosen: list[int] = []
    for i in sorted(candidates, key=lambda i: -curve[i]):
        t = blocks.starts_s[i]
        if t < MIN_SECTION_S / 2 or duration_s - t < MIN_SECTION_S / 2:
            continue
        if all(abs(t - blocks.starts_s[j]) >= MIN_SECTION_S for j in chosen):
            chosen.append(i)
    chosen.sort()
    return [float(blocks.starts_s[i]) for i in chosen], [float(curve[i]) for i in chosen]


def label_sections(
    blocks: BlockFeatures, bounds_s: list[float], strengths: list[float], duration_s: float
) -> list[Section]:
    """Letters by similarity to earlier sections, and a guess at each section's function."""
    edges = [0.0, *bounds_s, duration_s]
    index_of = [int(np.searchsorted(blocks.starts_s, t, side="left")) for t in edges[:-1]]
    index_of.append(len(blocks.starts_s))
    means = []
    energies = []
    for a, b in itertools.pairwise(index_of):
        b = max(b, a + 1)
        v = blocks.features[a:b].mean(axis=0)
        means.append(v / max(float(np.linalg.norm(v)), 1e-9))
        energies.append(float(blocks.energy[a:b].mean()) if b <= len(blocks.energy) else 0.0)
    letters: list[str] = []
    bases: list[int] = []  # index of the section that first used each letter
    for i, v in enumerate(means):
        sims = [(float(v @ means[j]), j) for j in bases]
        best_sim, best_j = max(sims, default=(-1.0, -1))
        if best_sim >= SAME:
            letters.append(letters[best_j].rstrip("'"))
        elif best_sim >= VARIANT:
            letters.append(letters[best_j].rstrip("'") + "'")
        else:
            letters.append(chr(ord("A") + min(len(bases), 25)))
            bases.append(i)
    functions = _functions(letters, energies, edges)
    confidences = [1.0, *(float(np.clip(s, 0.0, 1.0)) for s in strengths)]
    return [
        Section(edges[i], edges[i + 1], letters[i], functions[i], round(confidences[i], 3))
        for i in range(len(letters))
    ]


def _functions(
    letters: list[str], energies: list[float], edges: list[float]
) -> list[SectionFunction]:
    """Intro/outro: quiet or short first/last sections; chorus: the loudest repeated letter;
    verse: other repeated letters; bridge: a one-off between choruses."""
    n = len(letters)
    out: list[SectionFunction] = ["unknown"] * n
    if n < 3:
        return out
    base = [x.rstrip("'") for x in letters]
    peak = max(energies) or 1.0
    rel = [e / peak for e in energies]
    lengths = np.diff(edges)
    typical = float(np.median(lengths))
    if rel[0] < 0.8 or lengths[0] < 0.75 * typical:
        out[0] = "intro"
    if rel[-1] < 0.8 or lengths[-1] < 0.75 * typical:
        out[-1] = "outro"
    body = [i for i in range(n) if out[i] == "unknown"]
    counts = {x: sum(1 for i in body if base[i] == x) for x in {base[i] for i in body}}
    repeated = [x for x in counts if counts[x] > 1]
    chorus = max(
        repeated,
        key=lambda x: float(np.mean([rel[i] for i in body if base[i] == x])),
        default=None,
    )
    for i in body:
        if base[i] == chorus:
            out[i] = "chorus"
        elif counts[base[i]] > 1:
            out[i] = "verse"
        elif chorus is not None and chorus in base[:i] and i < n - 1:
            out[i] = "bridge"
    return out
