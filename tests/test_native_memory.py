"""The mixer's allocator setting: freed multi-MiB buffers leave the process at once."""

from __future__ import annotations

import subprocess
import sys

# A child process, so the setting does not leak into other tests. As a render does, it frees
# one large buffer (which raises glibc's default threshold), then holds 100 buffers of 4 MiB
# at once beside small objects that outlive them, frees the buffers, and prints how much of
# that peak is still resident, in MiB.
CHILD = """
import sys, numpy as np, psutil
from segue.native_memory import return_large_buffers
if sys.argv[1] == "fixed":
    assert return_large_buffers()
proc = psutil.Process()
first = np.ones(1 << 21)  # 16 MiB, mapped and freed
del first
before = proc.memory_info().rss
buffers, survivors = [], []
for i in range(100):
    buffers.append(np.ones(1 << 19))  # 4 MiB
    survivors.append(np.ones(64))
del buffers
print((proc.memory_info().rss - before) / 2**20)
"""


def growth_mib(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip())


def test_with_a_fixed_mmap_threshold_freed_buffers_are_not_kept_resident() -> None:
    assert growth_mib("fixed") < 40  # of a 400 MiB peak
