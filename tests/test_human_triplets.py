"""Human triplets from Segue Studio: both export formats, the split, agreement, and a real
fine-tune on real tracks whose held-out agreement the evaluation then reports."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from segue.studio.agreement import agreement_flags, agrees
from segue.studio.exports import answers_json, mecomp_csv
from segue.studio.model import AnsweredTriplet, Clip, Triplet, TripletKind
from training.frontend import SAMPLE_RATE_HZ, WINDOW_SAMPLES
from training.human_triplets import (
    MIDDLE_CLIP_S,
    HumanClip,
    HumanTriplet,
    MusicFolder,
    cut,
    index_triplets,
    parse_mecomp_csv,
    parse_studio_json,
    read_human_triplets,
    split,
)

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def answered(item: str, songs: tuple[str, str, str], pick: int, *, annotator: str = "ann-1",
             kind: TripletKind = TripletKind.RANDOM, starts: tuple[float, float, float] = (
                 10.0, 20.5, 30.25), clip_s: float = 12.0, position: int = 0) -> AnsweredTriplet:
    a, b, c = (Clip(s, t, clip_s) for s, t in zip(songs, starts, strict=True))
    expected = 0 if kind is TripletKind.GOLD else None
    triplet = Triplet((a, b, c), kind, expected_odd=expected,
                      repeat_of="i0" if kind is TripletKind.REPEAT else None)
    return AnsweredTriplet(annotator, f"sess-{annotator}", item, position, triplet, pick,
                           T0 + timedelta(minutes=position),
                           T0 + timedelta(minutes=position, seconds=40), (clip_s,) * 3)


ANSWERS = [
    answered("i1", ("rock/a.opus", "jazz/b.opus", "c.opus"), pick=0),
    answered("i2", ("rock/a.opus", "rock/a.opus", "d.opus"), pick=2, kind=TripletKind.GOLD),
    answered("i3", ('quote "q".opus', "comma, c.opus", "c.opus"), pick=1,
             kind=TripletKind.ACTIVE),
    answered("i4", ("jazz/b.opus", "c.opus", "rock/a.opus"), pick=2, kind=TripletKind.REPEAT),
    answered("i5", ("d.opus", "c.opus", "jazz/b.opus"), pick=2, annotator="ann-2"),
    answered("i6", ("d.opus", "rock/a.opus", "c.opus"), pick=1, annotator="ann-bad"),
]


# ---------------------------------------------------------------- the two formats


def test_the_studio_json_export_gives_the_clips_heard_and_the_picks() -> None:
    triplets = parse_studio_json(answers_json(ANSWERS, flagged={"ann-bad"}))
    # GOLD and REPEAT pages are left out (as in the CSVs), and so is the flagged annotator.
    assert [t.row for t in triplets] == [1, 3, 5]
    first = triplets[0]
    assert first.clips == (HumanClip("rock/a.opus", 10.0, 12.0),
                           HumanClip("jazz/b.opus", 20.5, 12.0),
                           HumanClip("c.opus", 30.25, 12.0))
    assert [t.odd for t in triplets] == [0, 1, 2]
    assert [t.annotator for t in triplets] == ["ann-1", "ann-1", "ann-2"]
    assert triplets[1].clips[0].song_id == 'quote "q".opus'

    with_flagged = parse_studio_json(answers_json(ANSWERS, flagged={"ann-bad"}),
                                     keep_flagged=True)
    assert [t.row for t in with_flagged] == [1, 3, 5, 6]


def test_mecomps_csv_gives_song_level_clips_and_the_odd_one_out() -> None:
    triplets = parse_mecomp_csv(mecomp_csv(ANSWERS))
    training = [a for a in ANSWERS if a.triplet.kind in (TripletKind.RANDOM,
                                                        TripletKind.ACTIVE)]
    assert [t.odd for t in triplets] == [a.pick for a in training]
    assert [[c.song_id for c in t.clips] for t in triplets] == [
        [c.song_id for c in a.triplet.clips] for a in training]
    assert all(c.start_s is None and c.duration_s is None for t in triplets for c in t.clips)
    assert all(t.annotator is None for t in triplets)


def test_files_are_read_by_content(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(answers_json(ANSWERS, flagged=set()))
    (tmp_path / "a.csv").write_text(mecomp_csv(ANSWERS))
    assert len(read_human_triplets(tmp_path / "a.json")) == 4
    assert len(read_human_triplets(tmp_path / "a.csv")) == 4


@pytest.mark.parametrize("text", [
    "song_1,song_2,odd_one_out\na,b,c\n",                  # bliss's CSV, not MECOMP's
    "song1,song2,song3,anchor,positive\na,b,c,1,1\n",      # anchor and positive the same
    "song1,song2,song3,anchor,positive\na,b,c,1,4\n",      # no slot 4
    "song1,song2,song3,anchor,positive\na,b,c,one,2\n",
    '{"format": "something-else", "version": 1, "answers": []}',
    '{"format": "segue-studio-answers", "version": 99, "answers": []}',
])
def test_malformed_exports_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=str(path)):
        read_human_triplets(path)


# ---------------------------------------------------------------- the split


def _many(n: int, annotators: int = 7) -> list[HumanTriplet]:
    return [HumanTriplet((HumanClip(f"s{i}"), HumanClip(f"s{i + 1}"), HumanClip(f"s{i + 2}")),
                         i % 3, f"ann-{i % annotators}", i + 1) for i in range(n)]


def test_the_split_is_deterministic_disjoint_and_independent_of_order() -> None:
    triplets = _many(100)
    tune, held = split(triplets)
    assert len(held) == 20 and len(tune) == 80
    assert {t.row for t in tune}.isdisjoint({t.row for t in held})
    assert split(triplets) == (tune, held)
    _, held_reversed = split(list(reversed(triplets)))
    assert {t.row for t in held_reversed} == {t.row for t in held}
    assert {t.row for t in split(triplets, seed=14)[1]} != {t.row for t in held}


def test_one_question_answered_twice_stays_on_one_side() -> None:
    triplets = _many(30)
    first = triplets[0]
    # The same three clips in another order, by another annotator.
    again = HumanTriplet((first.clips[2], first.clips[0], first.clips[1]), 2, "ann-x", 99)
    tune, held = split([*triplets, again])
    side = {t.row for t in held}
    assert (first.row in side) == (again.row in side)
    assert len(tune) + len(held) == 31


def test_splitting_by_annotator_holds_out_whole_annotators() -> None:
    tune, held = split(_many(70), by="annotator")
    assert held and tune
    assert {t.annotator for t in tune}.isdisjoint({t.annotator for t in held})
    with pytest.raises(ValueError, match="JSON export"):
        split(parse_mecomp_csv(mecomp_csv(ANSWERS)), by="annotator")


def test_tiny_sets_keep_something_on_each_side() -> None:
    tune, held = split(_many(2))
    assert len(tune) == 1 and len(held) == 1


def test_triplets_index_their_distinct_clips() -> None:
    triplets = _many(3)
    clips, rows, odd = index_triplets(triplets)
    assert len(clips) == 5
    assert rows.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
    assert odd.tolist() == [0, 1, 2]


# ---------------------------------------------------------------- agreement


def test_the_model_agrees_when_its_odd_one_out_is_the_humans() -> None:
    a = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    near_a = np.array([0.9, 0.1, 0.0], dtype=np.float32)
    far = np.array([0.0, 0.0, 1.0], dtype=np.float32)
    assert agrees([a, near_a, far], 2)
    assert not agrees([a, near_a, far], 0)
    assert agrees([far, a, near_a], 0)
    # Cosine distance: length does not matter.
    assert agrees([10 * a, near_a, 0.1 * far], 2)
    flags = agreement_flags(np.stack([np.stack([a, near_a, far]), np.stack([far, a, near_a])]),
                            [2, 1])
    assert flags.tolist() == [True, False]
    with pytest.raises(ValueError):
        agrees([a, near_a, far], 3)
    with pytest.raises(ValueError):
        agreement_flags(np.zeros((2, 2, 3)), [0, 1])


# ---------------------------------------------------------------- audio


def test_song_level_clips_come_from_the_middle() -> None:
    song = np.arange(40 * SAMPLE_RATE_HZ, dtype=np.float32)
    middle = cut(song, HumanClip("x"))
    assert middle.size == MIDDLE_CLIP_S * SAMPLE_RATE_HZ
    assert middle[0] == (40 - MIDDLE_CLIP_S) / 2 * SAMPLE_RATE_HZ
    exact = cut(song, HumanClip("x", 2.5, 3.0))
    assert exact[0] == 2.5 * SAMPLE_RATE_HZ and exact.size == 3 * SAMPLE_RATE_HZ
    short = np.zeros(5 * SAMPLE_RATE_HZ, dtype=np.float32)
    assert cut(short, HumanClip("x")).size == short.size
    with pytest.raises(ValueError, match="at least 1 s"):
        cut(song, HumanClip("x", 39.5, 2.0))


def test_song_ids_resolve_under_the_music_folder(tmp_path: Path) -> None:
    (tmp_path / "rock").mkdir()
    (tmp_path / "rock" / "a.opus").write_bytes(b"")
    (tmp_path / "b.flac").write_bytes(b"")
    (tmp_path.parent / "outside.opus").write_bytes(b"")
    music = MusicFolder(tmp_path)
    assert music.find("rock/a.opus") == (tmp_path / "rock" / "a.opus").resolve()
    assert music.find("b") == tmp_path / "b.flac"     # the demo's ids: file stems
    assert music.find("../outside.opus") is None
    assert music.find("nothing.opus") is None
    with pytest.raises(FileNotFoundError):
        MusicFolder(tmp_path / "missing")


# ---------------------------------------------------------------- fine-tune and evaluation


def test_the_shipped_weights_read_back_give_the_feel_the_graph_gives(
        music_tracks: list[Path]) -> None:
    from segue.audio import decode
    from training.finetune_human import feels, frozen_content, shipped_net

    net = shipped_net(REPO / "models")  # raises where torch and ONNX Runtime disagree
    pcm = decode(music_tracks[0], SAMPLE_RATE_HZ)[: 5 * WINDOW_SAMPLES + 100]
    with torch.no_grad():
        direct = net(torch.from_numpy(pcm[: 5 * WINDOW_SAMPLES])[None],
                     torch.zeros(1, 200)).feel
        via_content = feels(net, frozen_content(net, [pcm]))
    torch.testing.assert_close(via_content, direct, atol=1e-5, rtol=1e-5)


def _learnable_export(music_tracks: list[Path], root: Path) -> str:
    """150 answers over 10 real songs split into two arbitrary groups: the odd one out is
    always the clip from the other group (a taste the shipped model does not have)."""
    songs = [str(p.relative_to(root)) for p in music_tracks[::3]]
    group = {s: i % 2 for i, s in enumerate(songs)}
    rng = np.random.default_rng(0)
    answers = []
    for k in range(150):
        g = int(rng.integers(2))
        a, b = rng.choice([s for s in songs if group[s] == g], 2, replace=False)
        odd = rng.choice([s for s in songs if group[s] != g])
        order = [int(i) for i in rng.permutation(3)]
        picked = [str(a), str(b), str(odd)]
        page = (picked[order[0]], picked[order[1]], picked[order[2]])
        s0, s1, s2 = (float(x) for x in rng.integers(0, 24, size=3))
        answers.append(answered(f"i{k}", page, pick=order.index(2), annotator=f"ann-{k % 5}",
                                starts=(s0, s1, s2), clip_s=4.0, position=k))
    return answers_json(answers, flagged=set())


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.glob("*.onnx")))
                          ).hexdigest()


def _assert_only_the_feel_changed(base: Path, tuned: Path) -> None:
    """The frozen layers give the same embedding, entry and exit (to within the export's
    float16 rounding of the BatchNorm folded into the convs); the feel moved."""
    import onnxruntime as ort

    pcm = np.random.default_rng(3).standard_normal((2, 3 * WINDOW_SAMPLES)).astype(np.float32)
    feeds = {"pcm": 0.1 * pcm, "state": np.zeros((2, 200), np.float32)}
    outputs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feeds)
               for p in (base, tuned)]
    for i in range(3):  # embedding, entry, exit
        np.testing.assert_allclose(outputs[1][i], outputs[0][i], atol=2e-4)
    assert not np.allclose(outputs[1][3], outputs[0][3], atol=1e-3)  # feel


@pytest.mark.slow  # trains: about 10-20 s on a shared 2-core CPU
def test_a_tiny_fine_tune_learns_the_held_out_answers_and_eval_reports_them(
        music_tracks: list[Path], tmp_path: Path) -> None:
    from immich_memories_music import tracks_dir

    from bench import eval_human_triplets
    from training.finetune_human import Config, run

    root = Path(tracks_dir())
    export = tmp_path / "answers.json"
    export.write_text(_learnable_export(music_tracks, root))
    shipped = _digest(REPO / "models")
    out = tmp_path / "tuned"
    summary = run(Config(human=export, music=str(root), out=out, epochs=12, lr=3e-3,
                         threads=1))

    agreement = summary["held_out_agreement"]
    assert isinstance(agreement, dict)
    before, after = agreement["before"], agreement["after"]
    assert after >= before and after >= 0.7, agreement
    assert summary["split"] == {"by": "triplet", "seed": 13, "held_out_fraction": 0.2,
                                "keep_flagged": False, "fine_tune_triplets": 120,
                                "held_out_triplets": 30}
    for name in ("segue_stream.onnx", "audio_embedding_model.onnx", "finetune_human.json",
                 "finetune_human.pt"):
        assert (out / name).is_file(), name
    assert _digest(REPO / "models") == shipped  # models/ untouched without --replace-models
    _assert_only_the_feel_changed(REPO / "models" / "segue_stream.onnx",
                                  out / "segue_stream.onnx")

    results = tmp_path / "results"
    eval_human_triplets.main(["--human", str(export), "--music", str(root), "--finetuned",
                              str(out), "--out-dir", str(results), "--skip", "bliss", "mecomp"])
    (report,) = results.glob("human_triplets_*.json")
    scored = json.loads(report.read_text())
    assert scored["held_out_triplets"] == 30
    got = scored["results"]
    # The ONNX graphs agree with the torch figures to within a triplet or so (float16 rounding
    # and ORT's arithmetic may flip a near tie).
    assert abs(got["segue_before"]["agreement"] - before) <= 2 / 30
    assert abs(got["segue_after"]["agreement"] - after) <= 2 / 30
    low, high = got["segue_after"]["ci95"]
    assert low <= got["segue_after"]["agreement"] <= high
    assert "minus_segue_before_ci95" in got["segue_after"]
    assert set(got) == {"segue_before", "segue_after", "random"}
    assert (results / report.name.replace(".json", ".md")).is_file()
