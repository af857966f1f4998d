"""The protobuf messages the clients take and return, under one roof, with what they mean.

The clients return the generated messages themselves (not copies): they are typed (see the
`.pyi` stubs in segue/v1), print readably, convert to JSON with
`google.protobuf.json_format.MessageToDict`, and gain new fields as the protos grow. Units are
in field names (`_s` seconds, `_hz` hertz, `_bpm` beats per minute, `_lufs` loudness units);
vectors are float32 and L2-normalised. proto/segue/v1/*.proto documents every field; the
notes below say what each message is for and what its main fields mean. An unset message
field reads as its empty value (0, "", empty list), never None.
"""

from __future__ import annotations

from segue.v1 import common_pb2, embedder_pb2, matcher_pb2, mixer_pb2

# --- shared (common.proto) ---

#: What the embedder learns about a song: song_id, model_name/model_version (vectors of
#: different versions must not be compared), duration_s, feel (song-level vector), segments,
#: tempo (bpm, stability, confidence), beats (time_s, position_in_bar), key, sections,
#: cue_points (phrase-aligned entry/exit points) and loudness_lufs.
SongAnalysis = common_pb2.SongAnalysis
#: A part of a song: index, start_s, end_s, entry and exit vectors (compare one segment's
#: exit with the next's entry), energy (0 to 1) and section_letter.
Segment = common_pb2.Segment
#: A key estimate: tonic_pitch_class (0 = C .. 11 = B), mode, camelot ("8B"), name
#: ("F# minor") and confidence (0 to 1).
Key = common_pb2.Key
#: Layout of raw PCM: sample_rate_hz, channels (interleaved) and sample_format (S16LE, F32LE).
AudioFormat = common_pb2.AudioFormat

# --- Embedder ---

#: One message of an Analyze stream: exactly one of windows, checkpoint or analysis (the
#: last message), as `WhichOneof("kind")` says.
AnalyzeResponse = embedder_pb2.AnalyzeResponse
#: One model window: index, start_s, end_s, embedding, entry and exit vectors.
WindowEmbedding = embedder_pb2.WindowEmbedding
#: Where a stream can be resumed: resume_token (opaque bytes, pass to `resume`), position_s
#: and position_frames (audio consumed so far).
Checkpoint = embedder_pb2.Checkpoint
#: EmbedClip's answer: feel, windows and duration_s of one short clip.
EmbedClipResponse = embedder_pb2.EmbedClipResponse
#: The model being served: name, version, sha256, vector sizes (embedding_dim, feel_dim,
#: transition_dim), native_sample_rate_hz, window_s, execution_provider, and the server's
#: limits (max_chunk_bytes, max_song_s, max_clip_s, max_concurrent_streams).
ModelInfo = embedder_pb2.ModelInfoResponse

# --- Matcher ---

#: The user's description of a song, stored with it and usable in filters: title, artist,
#: album, genre, uri (where the audio lives) and extra (any other key/value pairs).
SongMetadata = matcher_pb2.SongMetadata
#: What GetSong returns: song_id, metadata, duration_s, tempo_bpm, key, model_version,
#: segments in song order, and analysis (the SongAnalysis given to UpsertSong: beats,
#: sections, cue points and the rest); vectors (the feel, the segments' entry and exit) only
#: with `with_vectors=True`.
StoredSong = matcher_pb2.StoredSong
#: One page of ListSongs: songs in song id order (each a StoredSong without segments and
#: analysis; feel only with `with_vectors=True`) and next_page_token (empty on the last page).
ListSongsResponse = matcher_pb2.ListSongsResponse
#: UpsertSong's answer: song_id, segments_stored, replaced (an earlier version existed).
UpsertSongResponse = matcher_pb2.UpsertSongResponse
#: DeleteSong's answer: song_id and segments_removed.
DeleteSongResponse = matcher_pb2.DeleteSongResponse
#: NextSegment's answer: candidates, best first, and exit_time_s (where the query song is
#: left, for a stored song).
NextSegmentResponse = matcher_pb2.NextSegmentResponse
#: A segment to move into: song_id, segment_index, entry_time_s (where to enter it),
#: segment_end_s, score (higher is better), breakdown, metadata, tempo_bpm and key.
Candidate = matcher_pb2.Candidate
#: How a score was made: each component (transition, feel, tempo, key, energy) in [0, 1] and
#: its weighted share (weighted_transition, ...).
ScoreBreakdown = matcher_pb2.ScoreBreakdown
#: SimilarSongs' answer: songs, each with song_id, similarity (cosine of feel) and metadata.
SimilarSongsResponse = matcher_pb2.SimilarSongsResponse
#: PlanPlaylist's answer: steps in play order (song_id, entry_time_s, exit_time_s,
#: transition_score, breakdown, metadata, tempo_bpm, key) and total_score.
PlanPlaylistResponse = matcher_pb2.PlanPlaylistResponse
#: Cluster's answer: clusters (cluster_id, song_ids, centroid) and silhouette (-1 to 1).
ClusterResponse = matcher_pb2.ClusterResponse
#: Restricts candidates (all parts combine with AND): exclude_song_ids, exclude_artists,
#: played_song_ids, tempo_range, tempo_compatible, key_compatible, conditions.
Filter = matcher_pb2.Filter
#: Weights of the score components; unset ones take the server defaults (transition 0.6,
#: feel 0.2, tempo 0.1, key 0.05, energy 0.05).
ScoreWeights = matcher_pb2.ScoreWeights

# --- Mixer ---

#: Length and shape of a transition: one of bars, seconds or auto; curve, eq_bass_swap,
#: filter_sweep, tempo_ramp_bars, allow_key_shift.
TransitionStyle = mixer_pb2.TransitionStyle
#: The mix mask: gain_outgoing and gain_incoming at rate_hz points per second of output, and
#: overlap_start_s/overlap_end_s in the output.
MixEnvelope = mixer_pb2.MixEnvelope
#: What was rendered and how well: duration_s, overlap_s, overlap_bars, length_reason (why
#: the overlap is this long), tempo_ratio, key_shift_semitones, beat_alignment_error_ms,
#: loudness_step_lu, spectral_convergence, mel_mse, true_peak_dbtp, output_loudness_lufs,
#: render_speed_x_realtime, tempo_a_bpm and tempo_b_bpm.
QualityReport = mixer_pb2.QualityReport

__all__ = [
    "AnalyzeResponse",
    "AudioFormat",
    "Candidate",
    "Checkpoint",
    "ClusterResponse",
    "DeleteSongResponse",
    "EmbedClipResponse",
    "Filter",
    "Key",
    "ListSongsResponse",
    "MixEnvelope",
    "ModelInfo",
    "NextSegmentResponse",
    "PlanPlaylistResponse",
    "QualityReport",
    "ScoreBreakdown",
    "ScoreWeights",
    "Segment",
    "SimilarSongsResponse",
    "SongAnalysis",
    "SongMetadata",
    "StoredSong",
    "TransitionStyle",
    "UpsertSongResponse",
    "WindowEmbedding",
]
