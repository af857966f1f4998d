"""The embedding engine: streams audio through the ONNX model with per-song recurrent state.

`model` runs the exported graph, `stream_state` carries one song's state between chunks,
`loudness` measures integrated loudness as audio streams in, `analysis` assembles the final
`SongAnalysis`, and `local` runs a whole song in-process (no server).
"""
