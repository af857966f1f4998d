"""Memory of a service process as the benchmarks watch it: the process with its children
(the mixer's render workers, ffmpeg), in MiB."""

from __future__ import annotations

import psutil  # type: ignore[import-untyped, unused-ignore]


def tree_rss_mb(proc: psutil.Process) -> float:
    """RSS of `proc` and its children, MiB; what was read so far once one has exited."""
    total = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            total += p.memory_info().rss
    except psutil.Error:
        pass
    return total / 2**20
