"""Timing shared by the benchmark scripts (run them from the repository root)."""

from __future__ import annotations

import time

import jax
import numpy as np


def median_ms(f, *args, repeat=5):
    """Median wall time of ``f(*args)`` in ms over ``repeat`` calls, after one untimed call
    (compilation), each waited for with ``jax.block_until_ready``."""
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))
