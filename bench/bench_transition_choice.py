"""Random vs learned: which next segment from ANOTHER song makes the smoothest transition.

    OMP_NUM_THREADS=1 nice .venv/bin/python bench/bench_transition_choice.py
    .venv/bin/python bench/bench_transition_choice.py --max-songs 8      # a smoke run

Music the model never trained on: the rendered MIDI compositions of data/midi_set (`make
data`; see bench/midi_set.py: mono float16 at 22050 Hz, the first 60 s of each piece), one
soundfont per piece (fluidr3) so no composition appears twice, the catalogue's `heldout` split
(the `tuning` third tuned the structure analysis), pieces of at least 60 s, at most
--max-songs of them (a seeded draw). Each piece is written as a WAV, indexed into a real
matcher (`segue index --local`, the shipped model) and queried through the SDK.

For each song's end (the matcher's exit time: the end of its last segment), three choices of
the next segment among the OTHER songs' segments with at least INCOMING_S of audio after
their start (so that every choice can be rendered the same way):

- learned: the matcher's best such segment (NextSegment from the song's end, its default
  weights, all segments ranked; the matcher leaves out the query song, checked here);
- random: a uniformly random segment of a uniformly random other song (seeded);
- log-mel: the segment whose log-mel statistics over its first STATS_S seconds are nearest to
  those over the STATS_S seconds before the exit. Statistics: the mean and standard deviation
  per band of the model's own front end (segue.structure.onset.LogMel, 40 bands, 22 ms
  frames); each of the 80 dimensions z-scored over every exit and candidate of the run;
  Euclidean distance. No model involved: the baseline.

Each choice is rendered with the mixer engine (`render_transition`): OUTGOING_S before the
exit into INCOMING_S from the chosen start, a 12 s beat-matched overlap with the bass swap,
each excerpt carrying the song's stored analysis moved into its time (as the mixer service
does for stored songs); a pair too far apart in tempo is faded unmatched, as the continuous
mix does. Metrics: the mixer's QualityReport (segue/mixing/quality.py): worst-seam spectral
convergence, worst-seam mel MSE, loudness step (LU); lower is better. Per metric: each
choice's median with a 95% bootstrap interval (songs resampled), the paired median difference
learned - peer with its interval, and the share of songs where learned is lower.
Results: bench/results/transition_choice_<date>.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import soundfile as sf  # noqa: E402

from bench import report as rep  # noqa: E402
from devkit.localstack import running_stack  # noqa: E402
from segue.audio import decode  # noqa: E402
from segue.cli import main as segue_cli  # noqa: E402
from segue.client.matcher import MatcherClient  # noqa: E402
from segue.mixing.errors import MixInputError, TempoMismatchError  # noqa: E402
from segue.mixing.excerpt import Excerpt, in_excerpt_time  # noqa: E402
from segue.mixing.render import render_transition  # noqa: E402
from segue.mixing.style import Params, Style  # noqa: E402
from segue.structure.onset import LogMel  # noqa: E402
from segue.v1 import mixer_pb2  # noqa: E402

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

CATALOG = REPO / "data" / "midi_set" / "catalog.json"
FONT = "fluidr3"
ANALYSIS_RATE = 22050  # bench/midi_set.py's SR: the .npy files' rate (mono)
RATE = 44100  # the mixer's render rate (Params().rate_hz)
MIN_SONG_S = 60.0
OUTGOING_S = 24.0  # of the ending song, up to its exit
INCOMING_S = 24.0  # of the chosen song, from the segment's start
OVERLAP_S = 12.0  # 4 s context + 12 s overlap + 4 s context fits both excerpts at +-12% tempo
STATS_S = 3.0
MATCHER_K = 100  # the NextSegment maximum; ranked over all segments, so a feasible one is in it
RESAMPLES = 2000
CHOICES = ("learned", "random", "log-mel")
METRICS = ("spectral_convergence", "mel_mse", "loudness_step_lu")


@dataclass(frozen=True)
class Song:
    """One indexed piece: its matcher id, audio file, stored analysis and segment starts."""

    song_id: str
    name: str
    path: Path
    duration_s: float
    exit_s: float
    starts_s: tuple[float, ...]  # every segment's start, in song order
    analysis: Any  # common_pb2.SongAnalysis as stored (beats, key, sections)


@dataclass(frozen=True)
class Pick:
    """A chosen next segment: the song and where to enter it."""

    song_id: str
    start_s: float


# ---------------------------------------------------------------- pure helpers (tested)


def feasible_starts(starts_s: tuple[float, ...], duration_s: float, need_s: float) -> list[float]:
    """Segment starts with at least `need_s` of audio after them."""
    return [s for s in starts_s if s + need_s <= duration_s + 1e-6]


def logmel_stats(frames: F32) -> F64:
    """Mean and standard deviation per band of log-mel frames [n, bands]: one vector [2*bands]."""
    return np.concatenate([frames.mean(axis=0), frames.std(axis=0)]).astype(np.float64)


def zscore(rows: F64) -> F64:
    """Each column of `rows` z-scored over the rows (a constant column stays 0)."""
    std = rows.std(axis=0)
    scaled: F64 = (rows - rows.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return scaled


def nearest(query: F64, candidates: F64) -> int:
    """Index of the candidate row nearest to `query` (Euclidean)."""
    return int(np.argmin(np.linalg.norm(candidates - query, axis=1)))


def bootstrap_median(values: F64, rng: np.random.Generator,
                     resamples: int = RESAMPLES) -> tuple[float, float, float]:
    """(median, 2.5th and 97.5th percentile of the median over resamples of the values)."""
    idx = rng.integers(0, values.size, size=(resamples, values.size))
    medians = np.median(values[idx], axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(np.median(values)), float(low), float(high)


# ---------------------------------------------------------------- data and matcher


def select_pieces(catalog: list[dict[str, Any]], split: str, max_songs: int,
                  seed: int) -> list[dict[str, Any]]:
    """One font per piece, the split asked for, at least MIN_SONG_S long; a seeded draw."""
    root = CATALOG.parent
    fit = [e for e in catalog if e["font"] == FONT and (split == "all" or e["split"] == split)
           and np.load(root / e["audio"], mmap_mode="r").shape[0] >= MIN_SONG_S * ANALYSIS_RATE]
    fit.sort(key=lambda e: str(e["name"]))
    order = np.random.default_rng(seed).permutation(len(fit))[:max_songs]
    return [fit[i] for i in sorted(order)]


def file_name(entry: dict[str, Any]) -> str:
    """The WAV's name, which `segue index` makes the song id (its path in the folder)."""
    return str(entry["name"]).replace("/", "__") + ".wav"


def write_wavs(pieces: list[dict[str, Any]], folder: Path) -> dict[str, dict[str, Any]]:
    """Each piece as a float WAV at its own rate (lossless); {song id: catalogue entry}."""

    folder.mkdir(parents=True, exist_ok=True)
    by_id = {}
    for entry in pieces:
        pcm = np.load(CATALOG.parent / entry["audio"]).astype(np.float32)
        sf.write(folder / file_name(entry), pcm, ANALYSIS_RATE, subtype="FLOAT")
        by_id[file_name(entry)] = entry
    return by_id


async def fetch_songs(address: str, by_id: dict[str, dict[str, Any]],
                      folder: Path) -> tuple[list[Song], dict[str, list[Any]]]:
    """Every song's stored analysis, and the matcher's ranked candidates from its end."""

    songs, ranked = [], {}
    async with MatcherClient(address) as client:
        for song_id in sorted(by_id):
            stored = await client.get_song(song_id)
            # All segments ranked (not one per song), so the best feasible one is found.
            response = await client.next_segment(song_id, k=MATCHER_K,
                                                 allow_multiple_per_song=True)
            songs.append(Song(song_id, str(by_id[song_id]["name"]), folder / song_id,
                              stored.duration_s, response.exit_time_s,
                              tuple(s.start_s for s in stored.segments), stored.analysis))
            ranked[song_id] = list(response.candidates)
    return songs, ranked


def index_and_query(by_id: dict[str, dict[str, Any]], folder: Path,
                    work: Path) -> tuple[list[Song], dict[str, list[Any]]]:
    """Starts a real matcher, indexes the folder into it (--local) and reads it back."""

    with running_stack(work / "stack", services=("matcher",)) as stack:
        matcher = stack.grpc["matcher"]
        failed = segue_cli(["index", str(folder), "--local", "--matcher", matcher,
                            "--manifest", str(work / "index.json")])
        if failed:
            print(f"segue index: {failed} files failed", flush=True)
        return asyncio.run(fetch_songs(matcher, by_id, folder))


# ---------------------------------------------------------------- the three choices


def learned_pick(song: Song, ranked: list[Any], durations: dict[str, float]) -> Pick | None:
    """The matcher's best-ranked candidate with room for INCOMING_S after its start."""
    for c in ranked:
        if c.song_id == song.song_id:  # the matcher must leave the query song out
            raise AssertionError(f"NextSegment returned the query song {song.song_id}")
        if c.song_id in durations and c.entry_time_s + INCOMING_S <= durations[c.song_id] + 1e-6:
            return Pick(c.song_id, float(c.entry_time_s))
    return None


def random_pick(song: Song, songs: list[Song], rng: np.random.Generator) -> Pick:
    """A uniformly random other song, then a uniformly random feasible segment of it."""
    others = [s for s in songs if s.song_id != song.song_id
              and feasible_starts(s.starts_s, s.duration_s, INCOMING_S)]
    other = others[int(rng.integers(len(others)))]
    starts = feasible_starts(other.starts_s, other.duration_s, INCOMING_S)
    return Pick(other.song_id, starts[int(rng.integers(len(starts)))])


def logmel_frames(mono: F32, start_s: float, end_s: float) -> F32:
    """The model's log-mel frames (numpy front end) of mono[start_s:end_s] at ANALYSIS_RATE."""

    lo, hi = (max(0, round(t * ANALYSIS_RATE)) for t in (start_s, end_s))
    frames, _ = LogMel(ANALYSIS_RATE).frames(np.zeros(0, np.float32), mono[lo:hi])
    return frames


def logmel_picks(songs: list[Song], pcm: dict[str, F32]) -> dict[str, Pick]:
    """For each song's exit, the other songs' feasible segment with the nearest start stats."""
    pool = [(s.song_id, t) for s in songs
            for t in feasible_starts(s.starts_s, s.duration_s, INCOMING_S)]
    exits = [logmel_stats(logmel_frames(pcm[s.song_id], s.exit_s - STATS_S, s.exit_s))
             for s in songs]
    starts = [logmel_stats(logmel_frames(pcm[i], t, t + STATS_S)) for i, t in pool]
    z = zscore(np.vstack(exits + starts))  # one scale for exits and candidates alike
    z_exits, z_starts = z[: len(songs)], z[len(songs):]
    picks = {}
    for song, query in zip(songs, z_exits, strict=True):
        own = np.array([i == song.song_id for i, _ in pool])
        masked = np.where(own[:, None], np.inf, z_starts)  # never the song itself
        song_id, start = pool[nearest(query, masked)]
        picks[song.song_id] = Pick(song_id, start)
    return picks


# ---------------------------------------------------------------- rendering


def excerpt(name: str, song: Song, audio: F32, start_s: float, end_s: float) -> Excerpt:
    """audio[start_s:end_s] with the stored analysis moved into its time (as the mixer does)."""
    lo, hi = round(start_s * RATE), round(end_s * RATE)
    part = np.ascontiguousarray(audio[:, lo:hi])
    info = mixer_pb2.ExcerptInfo(encoded=True, song_id=song.song_id, song_start_s=start_s)
    info.analysis.CopyFrom(in_excerpt_time(song.analysis, start_s, part.shape[1] / RATE))
    return Excerpt(name, part, RATE, info)


def render_metrics(a: Excerpt, b: Excerpt) -> dict[str, Any]:
    """The QualityReport's seam metrics of A into B; unmatched fade on a tempo mismatch."""
    style = Style("seconds", seconds=OVERLAP_S, eq_bass_swap=True)
    try:
        try:
            r = render_transition(a, b, style, Params())
            matched = True
        except TempoMismatchError:  # as the continuous mix does: fade at own tempos
            r = render_transition(a, b, replace(style, beat_match=False), Params())
            matched = False
    except MixInputError as e:
        return {"error": str(e)}
    out: dict[str, Any] = {m: float(getattr(r.report, m)) for m in METRICS}
    return out | {"beat_matched": matched, "overlap_s": r.overlap_end_s - r.overlap_start_s}


def render_song(song: Song, picks: dict[str, Pick], songs: dict[str, Song],
                audio: dict[str, F32]) -> dict[str, Any]:
    """One row: the ending song and, per choice, the pick and its rendered metrics."""
    a = excerpt("outgoing", song, audio[song.song_id], song.exit_s - OUTGOING_S, song.exit_s)
    row: dict[str, Any] = {"song": song.name, "exit_s": song.exit_s}
    for choice, pick in picks.items():
        target = songs[pick.song_id]
        b = excerpt("incoming", target, audio[pick.song_id], pick.start_s,
                    pick.start_s + INCOMING_S)
        row[choice] = {"song": target.name, "start_s": pick.start_s, **render_metrics(a, b)}
    return row


# ---------------------------------------------------------------- summary and report


def summarise(rows: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """Per metric: medians with intervals, paired differences, share where learned is lower."""
    ok = [r for r in rows if all("error" not in r[c] for c in CHOICES)]
    out: dict[str, Any] = {"songs_compared": len(ok)}
    for peer in CHOICES[1:]:  # identical picks tie (difference 0): neither is lower
        out[f"same_pick_as_{peer}"] = sum(
            (r["learned"]["song"], r["learned"]["start_s"]) == (r[peer]["song"], r[peer]["start_s"])
            for r in ok)
    for metric in METRICS:
        values = {c: np.array([r[c][metric] for r in ok], np.float64) for c in CHOICES}
        entry: dict[str, Any] = {}
        for c in CHOICES:
            entry[c] = bootstrap_median(values[c], np.random.default_rng(seed))
        for peer in CHOICES[1:]:
            diff = values["learned"] - values[peer]
            entry[f"learned-{peer}"] = bootstrap_median(diff, np.random.default_rng(seed))
            entry[f"learned_better_than_{peer}"] = float(np.mean(diff < 0))
        out[metric] = entry
    return out


def verdict(summary: dict[str, Any]) -> tuple[bool, list[str]]:
    """PASSED when learned's median is lowest and both paired intervals lie below zero, on
    every metric; else which comparisons hold."""
    holds, lines = [], []
    for metric in METRICS:
        e = summary[metric]
        for peer in CHOICES[1:]:
            lower = e["learned"][0] < e[peer][0]
            excludes = e[f"learned-{peer}"][2] < 0  # the whole interval below zero
            holds.append(lower and excludes)
            lines.append(f"- {metric}, learned vs {peer}: median lower {'yes' if lower else 'no'}"
                         f", paired interval below zero {'yes' if excludes else 'no'}"
                         f" -> {'holds' if lower and excludes else 'does not hold'}")
    return all(holds), lines


def fmt(triple: tuple[float, float, float] | list[float], digits: int = 3) -> str:
    """`median [low, high]`."""
    m, lo, hi = triple
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def results_table(summary: dict[str, Any]) -> list[str]:
    """One row per metric: the three medians, both paired differences and shares."""
    cols = ["metric", *CHOICES, "learned - random", "learned - log-mel",
            "learned lower than random", "learned lower than log-mel"]
    rows = []
    for metric in METRICS:
        e = summary[metric]
        rows.append([metric, *(fmt(e[c]) for c in CHOICES), fmt(e["learned-random"]),
                     fmt(e["learned-log-mel"]), f"{100 * e['learned_better_than_random']:.0f}%",
                     f"{100 * e['learned_better_than_log-mel']:.0f}%"])
    return rep.table(cols, rows, "lrrrrrrr")


def write_report(args: argparse.Namespace, run: rep.RunInfo, rows: list[dict[str, Any]],
                 summary: dict[str, Any], facts: dict[str, Any]) -> Path:
    passed, checks = verdict(summary)
    matched = {c: sum(bool(r[c].get("beat_matched")) for r in rows) for c in CHOICES}
    errors = {c: sum("error" in r[c] for r in rows) for c in CHOICES}
    notes = [
        "", f"Songs: {len(rows)} rendered MIDI compositions of data/midi_set ({facts['sources']}"
        f"; font {FONT}; split {args.split}; the first 60 s of each piece, so a song's 'end' is "
        "where the excerpt stops, not the composition's ending), never used in training. "
        f"{summary['songs_compared']} songs had all three transitions rendered; learned picked "
        f"the same segment as random for {summary['same_pick_as_random']} and as log-mel for "
        f"{summary['same_pick_as_log-mel']} of them (ties, counted as not lower).",
        f"Model: {facts['model']} (version {facts['model_version']}).",
        f"Transitions: {OUTGOING_S:g} s before the exit into {INCOMING_S:g} s from the pick, "
        f"{OVERLAP_S:g} s overlap with the bass swap; beat-matched per choice: "
        + ", ".join(f"{c} {matched[c]}" for c in CHOICES) + "; render errors: "
        + ", ".join(f"{c} {errors[c]}" for c in CHOICES) + ".",
        f"Log-mel baseline: mean and std per band over {STATS_S:g} s, z-scored over the run, "
        "Euclidean. Medians with 95% bootstrap intervals (songs resampled, "
        f"{RESAMPLES} resamples, seed {args.seed}); lower is better for every metric.",
        f"Learned picks skipped for lack of room (top-ranked segment too near its song's end): "
        f"{facts['learned_skips']} times before the pick.",
    ]
    lines = [*rep.header("Transition choice: learned vs random vs log-mel", run, notes),
             *results_table(summary), "",
             "Target: learned transitions beat random and log-mel picks on the seam metrics: "
             + ("PASSED" if passed else "NOT PASSED"), *checks, ""]
    data = {"run": run.as_dict(), "args": vars(args) | {"out": str(args.out)},
            "facts": facts, "summary": summary, "passed": passed, "rows": rows}
    md, _ = rep.write_results(rep.results_stem(args.out, "transition_choice", run.date),
                              "\n".join(lines), data)
    print("\n".join(lines))
    return md


# ---------------------------------------------------------------- main


def learned_picks(songs: list[Song], ranked: dict[str, list[Any]]) -> tuple[dict[str, Pick],
                                                                           int]:
    """Each song's learned pick, and how many better-ranked candidates lacked room."""
    durations = {s.song_id: s.duration_s for s in songs}
    picks, skipped = {}, 0
    for s in songs:
        pick = learned_pick(s, ranked[s.song_id], durations)
        if pick is None:
            raise RuntimeError(f"no feasible matcher candidate for {s.song_id}")
        order = [(c.song_id, c.entry_time_s) for c in ranked[s.song_id]]
        skipped += order.index((pick.song_id, pick.start_s))
        picks[s.song_id] = pick
    return picks, skipped


def run_study(args: argparse.Namespace, work: Path) -> tuple[list[dict[str, Any]],
                                                             dict[str, Any]]:

    catalog = json.loads(CATALOG.read_text())
    pieces = select_pieces(catalog, args.split, args.max_songs, args.seed)
    by_id = write_wavs(pieces, work / "music")
    started = time.perf_counter()
    songs, ranked = index_and_query(by_id, work / "music", work)
    print(f"indexed and queried {len(songs)} songs in {time.perf_counter() - started:.0f} s",
          flush=True)
    pcm = {s.song_id: np.load(CATALOG.parent / by_id[s.song_id]["audio"]).astype(np.float32)
           for s in songs}
    audio = {s.song_id: decode(s.path, RATE, channels=2).T.copy() for s in songs}
    learned, skipped = learned_picks(songs, ranked)
    logmel = logmel_picks(songs, pcm)
    rng = np.random.default_rng(args.seed)
    by_song = {s.song_id: s for s in songs}
    rows = []
    for s in songs:
        picks = {"learned": learned[s.song_id], "random": random_pick(s, songs, rng),
                 "log-mel": logmel[s.song_id]}
        rows.append(render_song(s, picks, by_song, audio))
        print(s.name, json.dumps({c: rows[-1][c] for c in CHOICES}), flush=True)
    sources = sorted({str(by_id[s.song_id]["source"]) for s in songs})
    counts = {src: sum(by_id[s.song_id]["source"] == src for s in songs) for src in sources}
    model = os.environ.get("SEGUE_MODEL_PATH", "models/segue_stream.onnx")
    facts = {"sources": ", ".join(f"{n} from {src}" for src, n in counts.items()),
             "model": model, "model_version": songs[0].analysis.model_version,
             "learned_skips": skipped,
             "median_stored_beats": float(np.median([len(s.analysis.beats) for s in songs]))}
    return rows, facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-songs", type=int, default=40)
    parser.add_argument("--split", default="heldout", choices=("heldout", "tuning", "all"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--date", help="the results file's date (default today)")
    parser.add_argument("--out", type=Path, default=rep.RESULTS)
    args = parser.parse_args()
    if not CATALOG.exists():
        print(f"{CATALOG} is missing: run `make data` first", file=sys.stderr)
        return 2
    run = rep.capture_run(args.date)
    with tempfile.TemporaryDirectory(prefix="segue-bench-choice-") as tmp:
        rows, facts = run_study(args, Path(tmp))
    summary = summarise(rows, args.seed)
    md = write_report(args, run, rows, summary, facts)
    print(f"\nwritten {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
