"""How the C allocator hands memory back: large buffers straight back to the system.

glibc serves an allocation of at least its mmap threshold with its own mapping, which a free
returns at once; smaller ones come from heaps that keep freed space. The threshold starts at
128 KiB but rises (up to 32 MiB) each time a mapped block is freed, so a renderer that frees
many multi-MiB arrays soon has them all carved from heaps, and a request's peak stays
resident after it. A fixed threshold turns that adjustment off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter numbers from glibc's malloc.h
M_TRIM_THRESHOLD = -1
# Buffers from 1 MiB on (~3 s of 44.1 kHz stereo float32) are mapped, and freed as they go.
MMAP_THRESHOLD_BYTES = 1 << 20


def return_large_buffers(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fixes glibc's mmap threshold at `threshold_bytes` (and trims heaps above 4x it).
    Returns False where the C library has no mallopt (not glibc): nothing changes then."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.info("no mallopt in the C library: allocator left as it is")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mapped = int(mallopt(M_MMAP_THRESHOLD, threshold_bytes)) == 1
    trimmed = int(mallopt(M_TRIM_THRESHOLD, 4 * threshold_bytes)) == 1
    return mapped and trimmed
