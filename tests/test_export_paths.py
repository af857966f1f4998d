"""File locations are spelled as each DJ program expects: Rekordbox URLs, Traktor's
VOLUME/DIR/FILE, Mixxx's plain paths; from paths and file:// URIs alike."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pyrekordbox.rbxml import decode_path
from test_export_fixtures import held_tone_analysis

from segue.export.files import ExportError, atomic_output
from segue.export.m3u import write_m3u
from segue.export.paths import (
    local_path,
    mixxx_location,
    path_of_rekordbox_location,
    rekordbox_location,
    traktor_location,
)
from segue.export.rekordbox import write_rekordbox
from segue.export.track import track_facts
from segue.export.traktor import write_traktor
from segue.v1 import matcher_pb2

AWKWARD = "/home/dj/Música nueva/Björk – Jóga (live).opus"


@pytest.mark.parametrize(
    ("given", "path"),
    [
        (AWKWARD, AWKWARD),
        ("file://localhost/home/dj/M%C3%BAsica%20nueva/a%20b.mp3", "/home/dj/Música nueva/a b.mp3"),
        ("file:///home/dj/caf%C3%A9.flac", "/home/dj/café.flac"),
        ("file://localhost/C:/Music/My%20Song.mp3", "C:/Music/My Song.mp3"),
        ("C:\\Music\\My Song.mp3", "C:/Music/My Song.mp3"),
        ("/home/dj/../dj/set/a.mp3", "/home/dj/set/a.mp3"),
    ],
)
def test_paths_and_file_uris_become_one_absolute_path(given: str, path: str) -> None:
    assert local_path(given) == path


def test_a_relative_path_is_taken_from_the_given_folder() -> None:
    assert local_path("songs/a b.mp3", base=Path("/home/dj")) == "/home/dj/songs/a b.mp3"


@pytest.mark.parametrize("uri", ["https://example.com/a.mp3", "file://nas/share/a.mp3", ""])
def test_locations_that_are_no_local_file_are_refused(uri: str) -> None:
    with pytest.raises(ExportError):
        local_path(uri)


def test_rekordbox_gets_a_percent_encoded_utf8_url_with_one_slash_after_localhost() -> None:
    location = rekordbox_location(AWKWARD)
    assert location == (
        "file://localhost/home/dj/M%C3%BAsica%20nueva/"
        "Bj%C3%B6rk%20%E2%80%93%20J%C3%B3ga%20%28live%29.opus"
    )
    assert rekordbox_location("C:/Music/My Song.mp3") == "file://localhost/C:/Music/My%20Song.mp3"


def test_a_rekordbox_location_decodes_back_to_the_same_path() -> None:
    for path in (AWKWARD, "C:/Music/My Song.mp3", "/Volumes/USB Stick/a.mp3"):
        location = rekordbox_location(path)
        assert path_of_rekordbox_location(location) == path
        # pyrekordbox's reader hands back the decoded form without "file://localhost/".
        assert path_of_rekordbox_location(decode_path(location)) == path


def test_traktor_splits_a_path_into_volume_dir_and_file_unescaped() -> None:
    home = traktor_location(AWKWARD)
    assert (home.volume, home.dir, home.file) == (
        "Macintosh HD",
        "/:home/:dj/:Música nueva/:",
        "Björk – Jóga (live).opus",
    )
    assert home.primary_key == "Macintosh HD/:home/:dj/:Música nueva/:Björk – Jóga (live).opus"


def test_traktor_names_external_disks_and_windows_drives_as_volumes() -> None:
    usb = traktor_location("/Volumes/USB Stick/Sets/a b.mp3")
    assert (usb.volume, usb.dir, usb.file) == ("USB Stick", "/:Sets/:", "a b.mp3")
    drive = traktor_location("C:/Users/dj/Music/a.mp3")
    assert (drive.volume, drive.dir, drive.file) == ("C:", "/:Users/:dj/:Music/:", "a.mp3")
    assert traktor_location("/a.mp3", "Data").primary_key == "Data/:a.mp3"


def test_mixxx_keeps_the_plain_path_its_folder_and_its_name() -> None:
    row = mixxx_location(AWKWARD)
    assert (row.location, row.directory, row.filename) == (
        AWKWARD,
        "/home/dj/Música nueva",
        "Björk – Jóga (live).opus",
    )


def test_an_output_is_replaced_only_when_the_writer_succeeds(tmp_path: Path) -> None:
    out = tmp_path / "set.xml"
    out.write_text("earlier")
    with pytest.raises(RuntimeError), atomic_output(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert out.read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.xml"]
    with atomic_output(out) as tmp:
        tmp.write_text("whole")
    assert out.read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.xml"]


def test_a_song_stored_with_a_file_uri_is_located_as_each_program_expects(tmp_path: Path) -> None:
    uri = "file://localhost/home/dj/M%C3%BAsica%20nueva/Bj%C3%B6rk%20%E2%80%93%20J%C3%B3ga%20%28live%29.opus"
    facts = track_facts(held_tone_analysis(), matcher_pb2.SongMetadata(uri=uri, title="Jóga"))
    assert facts.path == AWKWARD
    write_rekordbox([facts], tmp_path / "a.xml")
    # The URL as written (pyrekordbox's reader would decode it).
    track = ET.parse(tmp_path / "a.xml").getroot().find("COLLECTION/TRACK")
    assert track is not None and track.get("Location") == rekordbox_location(AWKWARD)
    write_traktor([facts], tmp_path / "a.nml", playlist="p")
    root = ET.parse(tmp_path / "a.nml").getroot()
    location = root.find("COLLECTION/ENTRY/LOCATION")
    assert location is not None
    assert (location.get("DIR"), location.get("FILE")) == (
        "/:home/:dj/:Música nueva/:",
        "Björk – Jóga (live).opus",
    )
    key = root.find("PLAYLISTS/NODE/SUBNODES/NODE/PLAYLIST/ENTRY/PRIMARYKEY")
    assert key is not None and key.get("KEY") == traktor_location(AWKWARD).primary_key
    write_m3u([facts], tmp_path / "a.m3u8")
    assert (tmp_path / "a.m3u8").read_text(encoding="utf-8").splitlines()[2] == AWKWARD
