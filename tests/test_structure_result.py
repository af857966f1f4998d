from segue.structure import fill_analysis
from segue.structure.result import CuePoint, KeyEstimate, Section, StructureResult
from segue.v1 import common_pb2


def _result() -> StructureResult:
    return StructureResult(
        duration_s=30.0,
        tempo_bpm=120.0,
        tempo_stability=0.9,
        tempo_confidence=0.8,
        beat_times_s=(0.5, 1.0, 1.5, 2.0),
        beat_positions=(1, 2, 3, 4),
        beats_per_bar=4,
        key=KeyEstimate(6, "minor", 0.7),
        sections=(Section(0.0, 10.0, "A", "intro", 1.0), Section(10.0, 30.0, "B", "chorus", 0.6)),
        cue_points=(CuePoint(0.5, "entry", 8, 0.4), CuePoint(10.0, "exit", 16, 0.9)),
    )


def test_fill_analysis_writes_every_structure_field() -> None:
    analysis = common_pb2.SongAnalysis(song_id="s", duration_s=30.0)
    fill_analysis(_result(), analysis)
    assert analysis.song_id == "s"
    assert analysis.tempo.bpm == 120.0
    assert [b.position_in_bar for b in analysis.beats] == [1, 2, 3, 4]
    assert analysis.key.camelot == "11A" and analysis.key.name == "F# minor"
    assert analysis.key.mode == common_pb2.MODE_MINOR
    assert analysis.sections[1].function == common_pb2.SECTION_FUNCTION_CHORUS
    assert analysis.cue_points[1].kind == common_pb2.CUE_KIND_EXIT
    assert analysis.cue_points[1].phrase_bars == 16


def test_fill_analysis_replaces_earlier_structure() -> None:
    analysis = common_pb2.SongAnalysis()
    fill_analysis(_result(), analysis)
    fill_analysis(_result(), analysis)
    assert (
        len(analysis.beats) == 4 and len(analysis.sections) == 2 and len(analysis.cue_points) == 2
    )


def test_downbeats_are_the_beats_in_position_one() -> None:
    assert _result().downbeat_times_s == (0.5,)


def test_nothing_lands_past_the_songs_end() -> None:
    # Found indexing real game music: a beat 0.1 s past the last sample, and a cue at the end
    # rounded up by 0.00001 s, made the matcher refuse the whole song.
    analysis = common_pb2.SongAnalysis(song_id="s", duration_s=1.74999)
    fill_analysis(_result(), analysis)
    assert [b.time_s for b in analysis.beats] == [0.5, 1.0, 1.5]
    assert [(s.start_s, s.end_s) for s in analysis.sections] == [(0.0, 1.74999)]
    assert [c.time_s for c in analysis.cue_points] == [0.5, 1.74999]
