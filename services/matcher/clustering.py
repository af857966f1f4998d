"""Cluster: groups songs by feel with seeded spherical k-means++ and silhouette-chosen k.

Feel vectors are L2-normalised, so k-means runs on the unit sphere (assignment by cosine,
centroids renormalised) and the silhouette uses cosine distance. Everything random draws from
one numpy Generator seeded by the request, so the same library and seed give the same groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.matcher.errors import InvalidArgumentError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MAX_AUTO_K = 12
# Most groups a ClusterRequest may ask for (k-means costs songs x groups per iteration).
MAX_CLUSTERS = 100
KMEANS_RESTARTS = 4
KMEANS_ITERATIONS = 100
SILHOUETTE_SAMPLE = 2000
# Largest block of the silhouette's distance matrix held at once (8 bytes each: 32 MB).
DISTANCE_BLOCK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Clustering:
    labels: IntArray
    centroids: FloatArray
    silhouette: float


def _normalise(x: FloatArray) -> FloatArray:
    out: FloatArray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def _kmeans_pp_init(x: FloatArray, k: int, rng: np.random.Generator) -> FloatArray:
    centroids = [x[rng.integers(len(x))]]
    distance = 1.0 - x @ centroids[0]
    for _ in range(1, k):
        weights = np.maximum(distance, 0.0) ** 2
        total = weights.sum()
        index = rng.choice(len(x), p=weights / total) if total > 0 else rng.integers(len(x))
        centroids.append(x[index])
        distance = np.minimum(distance, 1.0 - x @ x[index])
    return np.array(centroids)


def spherical_kmeans(
    x: FloatArray, k: int, rng: np.random.Generator
) -> tuple[IntArray, FloatArray, float]:
    """Best of a few seeded restarts: (labels, centroids, within-cluster cosine distance)."""
    best: tuple[IntArray, FloatArray, float] | None = None
    for _ in range(KMEANS_RESTARTS):
        centroids = _kmeans_pp_init(x, k, rng)
        labels = np.zeros(len(x), dtype=np.int64)
        for iteration in range(KMEANS_ITERATIONS):
            new_labels = np.argmax(x @ centroids.T, axis=1).astype(np.int64)
            if iteration > 0 and np.array_equal(new_labels, labels):
                break
            labels = new_labels
            for c in range(k):
                members = x[labels == c]
                if len(members):
                    centroids[c] = members.sum(axis=0)
                else:  # re-seed an empty cluster at the worst-fitting point
                    worst = np.argmin(np.sum(x * centroids[labels], axis=1))
                    centroids[c] = x[worst]
            centroids = _normalise(centroids)
        inertia = float(np.sum(1.0 - np.sum(x * centroids[labels], axis=1)))
        if best is None or inertia < best[2] - 1e-12:
            best = (labels, centroids, inertia)
    assert best is not None
    return best


def silhouette(x: FloatArray, labels: IntArray, rng: np.random.Generator) -> float:
    """Mean silhouette with cosine distance (on a seeded sample for large libraries)."""
    clusters = np.unique(labels)
    if len(clusters) < 2:
        return 0.0
    index = np.arange(len(x))
    if len(x) > SILHOUETTE_SAMPLE:
        index = np.sort(rng.choice(len(x), size=SILHOUETTE_SAMPLE, replace=False))
    onehot = (labels[:, None] == clusters[None, :]).astype(np.float64)  # [all, k]
    counts = onehot.sum(axis=0)
    # Summed distance from each sampled song to each cluster, a block of sampled songs at a
    # time: the whole [sample, all] distance matrix of a large library would take gigabytes.
    sums = np.empty((len(index), len(clusters)), dtype=np.float64)
    step = max(1, DISTANCE_BLOCK_ELEMENTS // len(x))
    for start in range(0, len(index), step):
        block = index[start : start + step]
        sums[start : start + len(block)] = (1.0 - x[block] @ x.T) @ onehot
    own = np.searchsorted(clusters, labels[index])
    rows = np.arange(len(index))
    own_count = counts[own] - 1  # the song's distance to itself is 0 and not counted
    a = np.where(own_count > 0, sums[rows, own] / np.maximum(own_count, 1), 0.0)
    mean_other = sums / counts[None, :]
    mean_other[rows, own] = np.inf
    b = mean_other.min(axis=1)
    scores = np.where(own_count > 0, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(scores.mean())


def cluster(feels: FloatArray, num_clusters: int, seed: int) -> Clustering:
    """Groups rows of `feels`; num_clusters 0 picks k in 2..12 by the best silhouette."""
    n = len(feels)
    if n == 0:
        return Clustering(np.zeros(0, dtype=np.int64), np.zeros((0, feels.shape[1])), 0.0)
    if num_clusters > n:
        raise InvalidArgumentError(
            "num_clusters", f"is {num_clusters}, but only {n} songs match the filter"
        )
    x = _normalise(feels.astype(np.float64))
    if num_clusters == 1 or (n < 3 and num_clusters == 0):
        centroid = _normalise(x.sum(axis=0, keepdims=True))
        return Clustering(np.zeros(n, dtype=np.int64), centroid, 0.0)
    candidates = [num_clusters] if num_clusters else list(range(2, min(MAX_AUTO_K, n - 1) + 1))
    best: Clustering | None = None
    for k in candidates:
        rng = np.random.default_rng([seed, k])
        labels, centroids, _ = spherical_kmeans(x, k, rng)
        score = silhouette(x, labels, rng)
        if best is None or score > best.silhouette + 1e-9:
            best = Clustering(labels, centroids, score)
    assert best is not None
    return best
