"""One BLAS thread per process where the processes already run one per core.

numpy's OpenBLAS starts a thread per core and its idle threads spin (in sched_yield) between
calls. The analysis makes thousands of small matrix products, each too small to split, so in
a library run (one worker per core) or an embedder replica the spinning threads burned more
CPU than decoding and analysis together: measured on 12 real tracks, 8.5 CPU-s of the
analysing process with the default against 2.2 CPU-s with one thread, and less wall time too.
The embedder service sets OPENBLAS_NUM_THREADS before numpy loads; library workers and the
mixer service, which load numpy before they know their role, call `single_threaded_blas`.
"""

from __future__ import annotations

import logging

from threadpoolctl import threadpool_info, threadpool_limits

log = logging.getLogger(__name__)


def single_threaded_blas() -> int:
    """Limits every BLAS library loaded in this process to one thread, for the rest of the
    process's life; returns how many libraries it limited (0 where none is loaded)."""
    threadpool_limits(limits=1, user_api="blas")
    libraries = [i for i in threadpool_info() if i["user_api"] == "blas"]
    log.debug("BLAS held to one thread: %s", [i["internal_api"] for i in libraries])
    return len(libraries)


def blas_threads() -> list[int]:
    """The thread count of each BLAS library loaded in this process."""
    return [int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]


__all__ = ["blas_threads", "single_threaded_blas"]
