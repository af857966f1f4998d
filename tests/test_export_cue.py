"""CD cue sheets of rendered mixes: one TRACK per song at the CD frame where it takes over."""

from __future__ import annotations

import pytest

from segue.export.cue import CueTrack, cue_sheet, cue_time


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "00:00:00"),
        (1.0, "00:01:00"),
        (61.52, "01:01:39"),
        (3599.99, "59:59:74"),
        (3600.0, "60:00:00"),
        (-2.0, "00:00:00"),
    ],
)
def test_times_are_minutes_seconds_and_cd_frames_of_a_75th_of_a_second(
    seconds: float, text: str
) -> None:
    assert cue_time(seconds) == text


def test_a_sheet_lists_every_song_with_its_title_id_and_start() -> None:
    sheet = cue_sheet(
        [CueTrack(1, "Intro", "song-1", 0.0), CueTrack(2, 'The "Big" One', "", 95.2)],
        "friday set.mp3",
        "Friday",
    )
    assert sheet.splitlines() == [
        'REM COMMENT "Rendered by Segue"',
        'TITLE "Friday"',
        'PERFORMER "Segue"',
        'FILE "friday set.mp3" MP3',
        "  TRACK 01 AUDIO",
        '    TITLE "Intro"',
        '    REM SEGUE_SONG_ID "song-1"',
        "    INDEX 01 00:00:00",
        "  TRACK 02 AUDIO",
        "    TITLE \"The 'Big' One\"",
        "    INDEX 01 01:35:15",
    ]


def test_audio_that_is_not_mp3_is_declared_as_wave() -> None:
    assert 'FILE "set.flac" WAVE' in cue_sheet([], "set.flac")
