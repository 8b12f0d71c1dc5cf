"""Subnormal floats flushed to zero while training.

Soft-IntroVAE weights the gradient of each generated sample's ELBO by exp(-2s·ELBO) (Eq. 4;
Algorithm 2 lines 12-14). When the ELBOs are large those weights are tiny (about 1e-29 on 8×8
digits at β_rec = 12), and products in the backward pass fall below float32's smallest normal
number (1.2e-38). x86 CPUs compute on such subnormal numbers many times slower: 100 steps on those
digits took 24.6 s, and 9.5 s with them flushed in every thread (benchmarks/denormals.py; the same
losses). Flushing them to zero changes only numbers below 1.2e-38, which a weight update cannot feel.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def flushing_denormals() -> bool:
    """Whether the CPU now flushes subnormal floats to zero (torch has no getter: a product
    that is subnormal comes out as 0 then)."""
    return (torch.tensor([1e-30]) * 1e-10).item() == 0.0


@contextlib.contextmanager
def denormals_flushed() -> Iterator[None]:
    """Flush subnormal floats to zero within the block (where the CPU can), then restore the
    caller's setting."""
    before = flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def flush_denormals_in_every_thread() -> None:
    """Flush subnormal floats to zero for the whole process, for the commands that train: called
    before torch starts its worker threads, which take the setting from the thread that starts
    them (:func:`denormals_flushed` reaches only its own thread, so that a Python caller's other
    threads keep their setting)."""
    torch.set_flush_denormal(True)
