"""The mixer service: beat-matched, loudness-matched transitions and mashups."""
