"""Development support for tests, benchmarks and the demo; not part of the installed package.

`synth` makes procedural songs with known structure, `splice` joins real songs into composites
with known boundaries, and `localstack` starts the three services the way an operator would.
"""
