"""The FMA loader reads FMA's layout: multi-row tracks.csv header, genres.csv, NNN/NNNNNN.mp3."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest

from training.fma import (
    Triplet,
    audio_path,
    genre_triplets,
    human_triplets,
    load_genre_parents,
    load_tracks,
    to_catalog,
)

# genre_id: (parent, title, top_level)
GENRES = {
    12: (0, "Rock", 12),
    25: (12, "Punk", 12),
    15: (0, "Electronic", 15),
    236: (15, "Ambient", 15),
}
# track_id: (album_id, artist, title, genre_top, genres_all)
TRACKS = {
    2: (1, "AWOL", "Food", "Rock", [12, 25]),
    3: (1, "AWOL", "Electric Ave", "Rock", [12, 25]),
    5: (2, "Kurt", "This World", "Rock", [12]),
    140: (9, "Alec", "Ambient One", "Electronic", [15, 236]),
    141: (9, "Alec", "Ambient Two", "Electronic", [15, 236]),
    999: (7, "Nobody", "No Audio", "Rock", [12]),  # listed, but its file is absent
}


def _write_fixture(root: Path) -> None:
    meta = root / "fma_metadata"
    meta.mkdir(parents=True)
    sections = ["", "album", "artist", "set", "", "track", "", "", "", ""]
    fields = [
        "",
        "id",
        "name",
        "split",
        "subset",
        "genre_top",
        "genres",
        "genres_all",
        "license",
        "title",
    ]
    with (meta / "tracks.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(sections)
        w.writerow(fields)
        w.writerow(["track_id"] + [""] * (len(fields) - 1))
        for tid, (album, artist, title, top, genres) in TRACKS.items():
            w.writerow(
                [
                    tid,
                    album,
                    artist,
                    "training",
                    "small",
                    top,
                    str(genres[-1:]),
                    str(genres),
                    "CC BY 4.0",
                    title,
                ]
            )
    with (meta / "genres.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["genre_id", "#tracks", "parent", "title", "top_level"])
        for gid, (parent, name, top_level) in GENRES.items():
            w.writerow([gid, 1, parent, name, top_level])
    for i, tid in enumerate(t for t in TRACKS if t != 999):
        path = audio_path(root, "small", tid)
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostdin",
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency={220 * (i + 1)}:duration=0.5",
                "-ac",
                "1",
                "-ar",
                "22050",
                "-b:a",
                "32k",
                str(path),
            ],
            check=True,
        )


@pytest.fixture(scope="module")
def fma_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is required (apt-get install ffmpeg)")
    root = tmp_path_factory.mktemp("fma")
    _write_fixture(root)
    return root


def test_audio_paths_use_the_first_three_digits_as_folder(tmp_path: Path) -> None:
    assert audio_path(tmp_path, "small", 140) == tmp_path / "fma_small" / "000" / "000140.mp3"
    assert audio_path(tmp_path, "large", 123456) == tmp_path / "fma_large" / "123" / "123456.mp3"


def test_loader_reads_the_multi_row_header_and_keeps_tracks_with_audio(fma_root: Path) -> None:
    tracks = load_tracks(fma_root)
    assert [t.track_id for t in tracks] == [2, 3, 5, 140, 141]
    first = tracks[0]
    assert (first.genre_top, first.genres, first.album_id) == ("Rock", (12, 25), 1)
    assert (first.artist, first.title, first.subset, first.split) == (
        "AWOL",
        "Food",
        "small",
        "training",
    )
    assert first.path.exists()


def test_tracks_become_catalogue_entries_with_album_and_genre(fma_root: Path) -> None:
    entries = to_catalog(load_tracks(fma_root))
    assert entries[0].id == "fma/000002" and entries[0].source == "fma"
    assert entries[0].album == entries[1].album != entries[2].album
    assert entries[3].style == "Electronic"


def test_genre_triplets_share_a_top_genre_and_prefer_a_shared_subgenre(fma_root: Path) -> None:
    tracks = {t.track_id: t for t in load_tracks(fma_root)}
    parents = load_genre_parents(fma_root)
    assert parents[25] == 12 and parents[12] == 0
    triplets = genre_triplets(list(tracks.values()), n=50, seed=0, parents=parents)
    assert len(triplets) == 50
    for t in triplets:
        a, p, n = tracks[t.anchor], tracks[t.positive], tracks[t.negative]
        assert a.track_id != p.track_id
        assert a.genre_top == p.genre_top != n.genre_top
        if a.track_id in (2, 3):
            assert {a.track_id, p.track_id} == {2, 3}  # both Punk, not the plain-Rock track 5


def test_genre_triplets_are_seeded(fma_root: Path) -> None:
    tracks = load_tracks(fma_root)
    assert genre_triplets(tracks, 20, seed=3) == genre_triplets(tracks, 20, seed=3)


def test_human_triplets_map_one_based_positions_to_songs(tmp_path: Path) -> None:
    path = tmp_path / "study.csv"
    path.write_text("song1,song2,song3,anchor,positive\n2,140,3,1,3\n5,141,140,3,2\n")
    assert human_triplets(path) == [Triplet(2, 3, 140), Triplet(140, 141, 5)]


def test_human_triplets_reject_an_anchor_equal_to_the_positive(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("song1,song2,song3,anchor,positive\n2,140,3,2,2\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2"):
        human_triplets(path)
