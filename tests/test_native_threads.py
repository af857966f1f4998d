"""numpy's BLAS held to one thread in processes that run one per core (segue.native_threads)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, numpy
from segue.native_threads import blas_threads, single_threaded_blas
before = blas_threads()
limited = single_threaded_blas()
numpy.ones((64, 64)) @ numpy.ones((64, 64))  # BLAS still works, on one thread
print(json.dumps({"before": before, "limited": limited, "after": blas_threads()}))
"""


def test_every_blas_library_of_the_process_runs_one_thread_after_the_limit() -> None:
    # A process of its own, started without OPENBLAS_NUM_THREADS: the limit is process-wide.
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, env=env)
    seen = json.loads(out.stdout)
    assert seen["limited"] >= 1 and len(seen["after"]) == seen["limited"]
    assert seen["after"] == [1] * seen["limited"]
