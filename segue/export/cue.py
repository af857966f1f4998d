"""CD cue sheets (.cue) of rendered mixes: one TRACK per song at the point it takes over.

The sheet names one audio FILE (WAVE, or MP3 for an .mp3 file), and for every song a TRACK with
its TITLE, a "REM SEGUE_SONG_ID" comment when the song has an id, and INDEX 01 at the song's
start in the mix as MM:SS:FF, FF counting CD frames of 1/75 s. Double quotes inside names
become single quotes, since the format has no escape for them. Players that read cue sheets
(foobar2000, VLC, DJ programs importing a recorded set) show the mix's songs by these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# CD frames per second, the unit of cue sheet times.
CD_FRAMES_PER_S = 75


@dataclass(frozen=True)
class CueTrack:
    """One song in the mix."""

    number: int  # 1-based
    title: str
    song_id: str  # "" when unknown
    start_s: float  # where it takes over in the mix, seconds


def cue_sheet(
    tracks: Sequence[CueTrack],
    audio_file: str,
    title: str = "Segue mix",
    performer: str = "Segue",
) -> str:
    """The cue sheet text of a mix in `audio_file` (a name next to the sheet)."""
    kind = "MP3" if audio_file.lower().endswith(".mp3") else "WAVE"
    lines = [
        'REM COMMENT "Rendered by Segue"',
        f"TITLE {_quote(title)}",
        f"PERFORMER {_quote(performer)}",
        f"FILE {_quote(audio_file)} {kind}",
    ]
    for track in tracks:
        lines += [f"  TRACK {track.number:02d} AUDIO", f"    TITLE {_quote(track.title)}"]
        if track.song_id:
            lines.append(f"    REM SEGUE_SONG_ID {_quote(track.song_id)}")
        lines.append(f"    INDEX 01 {cue_time(track.start_s)}")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def cue_time(seconds: float) -> str:
    """MM:SS:FF of a time in seconds (negative times count as 0)."""
    frames = round(max(seconds, 0.0) * CD_FRAMES_PER_S)
    minutes, rest = divmod(frames, 60 * CD_FRAMES_PER_S)
    return f"{minutes:02d}:{rest // CD_FRAMES_PER_S:02d}:{rest % CD_FRAMES_PER_S:02d}"


__all__ = ["CD_FRAMES_PER_S", "CueTrack", "cue_sheet", "cue_time"]
