"""Every fetched track carries its source, package, licence and content hash; whole sources are
held out of training, and no track (by content hash) is on both sides of a split."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from segue.files import sha256_of
from training.catalog import Track, load_catalog, split
from training.corpus import build_catalog
from training.sources import HELD_OUT_SOURCES, MIN_TRACK_SECONDS, PACKAGES, package_source

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = ROOT.parent / "shared" / "data-sources.tsv"


def _tone(path: Path, seconds: float, hz: int) -> None:
    """An Ogg/Vorbis file of a sine tone, made by ffmpeg."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=f={hz}:d={seconds}",
            "-c:a",
            "libvorbis",
            str(path),
        ],
        check=True,
    )


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Track]]:
    """A data/ folder as `make data` leaves it: two training and two held-out sources."""
    data = tmp_path_factory.mktemp("data")
    audio = data / "audio"
    _tone(audio / "wesnoth" / "battle.ogg", 40, 220)
    _tone(audio / "wesnoth" / "march.ogg", 35, 330)
    _tone(audio / "supertux" / "forest" / "chipdisko.ogg", 45, 440)
    _tone(audio / "hedgewars" / "Data.ogg", 40, 550)
    # The same file shipped again by a held-out package: it must stay on the training side only.
    (audio / "colobot").mkdir()
    shutil.copy2(audio / "wesnoth" / "battle.ogg", audio / "colobot" / "battle-copy.ogg")
    _tone(audio / "colobot" / "jingle.ogg", 3, 660)  # under MIN_TRACK_SECONDS
    (audio / "colobot" / "broken.ogg").write_bytes(b"OggS not really")  # will not decode
    for source in ("wesnoth", "supertux", "hedgewars", "colobot"):
        (audio / source / "copyright").write_text("Format: test\n")
    return data, build_catalog(data, shared=None, immich=False, jobs=1)


def test_every_track_names_its_source_package_licence_and_content_hash(
    fetched: tuple[Path, list[Track]],
) -> None:
    data, tracks = fetched
    assert {t.source for t in tracks} == {"wesnoth", "supertux", "hedgewars"}
    for t in tracks:
        source = package_source(t.source)
        assert t.package == f"debian:{source.package}"
        assert source.license in t.license
        audio_file = next((data / "audio").rglob(t.id.split("/", 1)[1] + ".ogg"))
        assert t.sha256 == sha256_of(audio_file)
    assert load_catalog(data / "catalog.json") == tracks


def test_jingles_undecodable_files_and_byte_identical_copies_are_left_out(
    fetched: tuple[Path, list[Track]],
) -> None:
    _, tracks = fetched
    ids = {t.id for t in tracks}
    assert "colobot/jingle" not in ids and "colobot/broken" not in ids
    assert "colobot/battle-copy" not in ids and "wesnoth/battle" in ids
    assert all(t.seconds >= MIN_TRACK_SECONDS for t in tracks)


def test_held_out_sources_are_never_trained_on_and_share_no_content(
    fetched: tuple[Path, list[Track]],
) -> None:
    _, tracks = fetched
    train, by_album = split(tracks, "album")
    train_again, by_source = split(tracks, "source")
    assert train == train_again
    assert {t.source for t in by_source} == {"hedgewars"}
    assert not {t.source for t in train + by_album} & HELD_OUT_SOURCES
    train_hashes = {t.sha256 for t in train}
    assert not train_hashes & {t.sha256 for t in by_source + by_album}


def test_album_protocol_holds_out_whole_tracks_of_every_training_album() -> None:
    tracks = [
        Track(id=f"wesnoth/{i}", source="wesnoth", album="wesnoth/wesnoth", sha256=str(i))
        for i in range(10)
    ] + [
        Track(id=f"starfighter/{i}", source="starfighter", album="sf", sha256=f"s{i}")
        for i in range(4)
    ]
    train, held = split(tracks, "album")
    assert len(held) == 2 and {t.source for t in held} == {"wesnoth"}
    assert {t.id for t in train}.isdisjoint(t.id for t in held)
    assert len(train) == 8


def test_sources_are_unique_and_the_held_out_ones_exist() -> None:
    names = [s.name for s in PACKAGES]
    assert len(names) == len(set(names))
    assert len({s.package for s in PACKAGES}) == len(PACKAGES)
    assert set(names) > HELD_OUT_SOURCES
    assert all(s.license and s.music_dirs for s in PACKAGES)


@pytest.mark.skipif(not ALLOWED.exists(), reason="../shared/data-sources.tsv is not here")
def test_every_package_is_on_the_allowed_list() -> None:
    rows = [line.split("\t") for line in ALLOWED.read_text().splitlines()[1:]]
    allowed = {row[1] for row in rows if len(row) > 1 and not row[0].startswith("#")}
    assert {s.package for s in PACKAGES} <= allowed


@pytest.mark.skipif(
    not (ROOT / "data" / "catalog.json").exists(), reason="no fetched data (`make data`)"
)
def test_the_fetched_catalogue_keeps_held_out_content_out_of_training() -> None:
    tracks = load_catalog(ROOT / "data" / "catalog.json")
    assert all(t.source and t.license and t.sha256 for t in tracks)
    train, held = split(tracks, "source")
    assert not {t.sha256 for t in train} & {t.sha256 for t in held}
