"""Giving freed heap memory back to the operating system during long runs.

A long training loop frees and reallocates many tensors of the same few sizes; with glibc's
allocator the process's resident memory then grows without bound even though no tensor is kept
(measured: a 3-member batched IntroVAE run went from 785 MB to 1,549 MB in 600 steps, with no
Python-visible growth). ``malloc_trim(0)`` every few dozen steps returns the free pages: the same
run then stays at 696–704 MB, at no measurable cost in speed (90 s vs 92 s). Setting
``MALLOC_MMAP_THRESHOLD_`` also stops the growth but halves the speed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

TRIM_EVERY = 50  # steps between trims in the training loops


@functools.cache
def _malloc_trim():  # type: ignore[no-untyped-def]
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to do
        return None


def release_free_memory() -> bool:
    """Return the allocator's free heap pages to the OS (glibc only). True when it ran."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
