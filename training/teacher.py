"""musicnn, the training-time teacher and evaluation peer, run in its own environment.

    .venv-teacher/bin/python training/teacher.py clips CLIPS.npz OUT.npz [--models ...]
    .venv-teacher/bin/python training/teacher.py tracks LISTING OUT_DIR [--models ...]

musicnn (ISC; weights inside its PyPI wheel) needs TensorFlow and numpy<2, which cannot live
beside the project's numpy 2, so it gets a virtual environment of its own (`make teacher-env`:
tensorflow-cpu==2.15.1, "numpy<2", librosa, soxr, then musicnn==0.1.0 without its
dependencies). Nothing in segue/ or the shipped models imports it. This script is its whole
interface: it reads clips and writes outputs, and training.teacher_cache keeps those on disk so
that training and evaluation never load TensorFlow themselves.

clips: CLIPS.npz holds "audio", float32 [clips, samples], mono at "sr" Hz (22050 here).
OUT.npz, for each model M: "M/penultimate" [clips, 200] and "M/taggram" [clips, 50]: the
penultimate layer and the tag probabilities, each averaged over the clip's 3 s patches (no
overlap, as musicnn's extractor does by default).
tracks: each LISTING line is "<track .npy (float16 or float32, 22050 Hz)>\t<name>"; writes
OUT_DIR/<name>.npz with the same keys per patch ([patches, 200], [patches, 50]; patch k covers
seconds [k * PATCH_S, (k + 1) * PATCH_S) of the track, PATCH_S = 187 frames of 16 ms = 2.992 s),
skipping names already there.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

MODELS = ("MTT_musicnn", "MSD_musicnn")
MUSICNN_SR_HZ = 16000
PATCH_SECONDS = 3


def _log_mel_patches(audio: NDArray[np.float32], sr: int) -> NDArray[np.float32]:
    """[patches, 187, 96] log-compressed mel patches, exactly as musicnn's batch_data makes them."""
    import librosa
    from musicnn import configuration as config

    y = librosa.resample(audio, orig_sr=sr, target_sr=config.SR, res_type="soxr_hq")
    mel = librosa.feature.melspectrogram(
        y=y, sr=config.SR, hop_length=config.FFT_HOP, n_fft=config.FFT_SIZE, n_mels=config.N_MELS
    ).T.astype(np.float16)
    rep = np.log10(10000 * mel + 1)
    n = _patch_frames()
    starts = range(0, rep.shape[0] - n + 1, n)
    return np.stack([rep[s : s + n] for s in starts]).astype(np.float32)


def _patch_frames() -> int:
    import librosa
    from musicnn import configuration as config

    frames = librosa.time_to_frames(
        PATCH_SECONDS, sr=config.SR, n_fft=config.FFT_SIZE, hop_length=config.FFT_HOP
    )
    return int(frames) + 1


class Model:
    """One musicnn model, its graph built and its weights restored once."""

    def __init__(self, name: str, patch_frames: int) -> None:
        import tensorflow as tf
        from musicnn import configuration as config
        from musicnn import models

        tf.compat.v1.disable_eager_execution()
        labels = config.MTT_LABELS if name.startswith("MTT") else config.MSD_LABELS
        self.graph = tf.Graph()
        with self.graph.as_default(), tf.name_scope("model"):
            self.x = tf.compat.v1.placeholder(tf.float32, [None, patch_frames, config.N_MELS])
            self.is_training = tf.compat.v1.placeholder(tf.bool)
            y, *_, self.penultimate = models.define_model(
                self.x, self.is_training, name, len(labels)
            )
            self.probs = tf.nn.sigmoid(y)
            self.session = tf.compat.v1.Session(graph=self.graph)
            weights = os.path.dirname(models.__file__) + f"/{name}/"
            tf.compat.v1.train.Saver().restore(self.session, weights)

    def __call__(self, patches: NDArray[np.float32]) -> tuple[NDArray[np.float32], ...]:
        """(tag probabilities [n, tags], penultimate [n, 200]) for every patch."""
        out = [
            self.session.run(
                [self.probs, self.penultimate],
                {self.x: patches[i : i + 256], self.is_training: False},
            )
            for i in range(0, len(patches), 256)
        ]
        return tuple(np.concatenate([o[k] for o in out]).astype(np.float32) for k in range(2))


def clips_main(clips: str, out: str, names: list[str]) -> None:
    """Outputs averaged over each clip's patches (evaluation; the distillation cache)."""
    with np.load(clips) as f:
        audio, sr = f["audio"].astype(np.float32), int(f["sr"])
    per_clip = [_log_mel_patches(clip, sr) for clip in audio]
    owner = np.concatenate([np.full(len(pc), i) for i, pc in enumerate(per_clip)])
    counts = np.bincount(owner, minlength=len(audio))[:, None]
    patches = np.concatenate(per_clip)
    result: dict[str, NDArray[np.float32]] = {}
    for name in names:
        probs, pen = Model(name, patches.shape[1])(patches)
        for key, v in (("taggram", probs), ("penultimate", pen)):
            sums = np.zeros((len(audio), v.shape[1]), np.float64)
            np.add.at(sums, owner, v)
            result[f"{name}/{key}"] = (sums / counts).astype(np.float32)
    np.savez(out, **result)  # type: ignore[arg-type]
    print(f"teacher: {len(audio)} clips, {len(patches)} patches, {names}", file=sys.stderr)


def tracks_main(listing: str, out_dir: str, names: list[str], sr: int) -> None:
    """Per-patch outputs of whole tracks: one OUT_DIR/<name>.npz per line "<npy>\t<name>"."""
    jobs = [line.split("\t") for line in Path(listing).read_text().splitlines() if line]
    models = {name: Model(name, _patch_frames()) for name in names}
    for npy, stem in jobs:
        target = os.path.join(out_dir, stem + ".npz")
        if os.path.exists(target):
            continue
        patches = _log_mel_patches(np.load(npy).astype(np.float32), sr)
        result: dict[str, NDArray[np.float32]] = {}
        for name, model in models.items():
            result[f"{name}/taggram"], result[f"{name}/penultimate"] = model(patches)
        np.savez(target + ".tmp.npz", **result)  # type: ignore[arg-type]
        os.replace(target + ".tmp.npz", target)
        print(f"teacher: {stem}: {len(patches)} patches", file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["clips", "tracks"])
    p.add_argument("input", help="clips: CLIPS.npz; tracks: a listing of '<npy>\\t<name>'")
    p.add_argument("out", help="clips: OUT.npz; tracks: a folder")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--sr", type=int, default=22050, help="tracks: sample rate of the .npy files")
    a = p.parse_args()
    if a.mode == "clips":
        clips_main(a.input, a.out, a.models)
    else:
        tracks_main(a.input, a.out, a.models, a.sr)


if __name__ == "__main__":
    main()
