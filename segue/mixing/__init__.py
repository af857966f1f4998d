"""The mixing engine: beat-matched, loudness-matched transitions, mashups and continuous mixes.

Pure DSP over decoded excerpts and their analyses; the mixer service and the CLI both call it.
"""
