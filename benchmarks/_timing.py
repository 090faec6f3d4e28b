"""Timing helpers shared by the benchmark scripts (imported as a sibling module: run them as
``python benchmarks/NAME.py``).

Every figure is both wall time and process CPU time (all threads of this process): on a machine shared with
other jobs, preemption inflates wall time, while CPU time is the steadier figure. CUDA work is synchronised
before and after, so wall time covers the kernels, not just their launch.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch


def sync(device: torch.device | None) -> None:
    """Wait for queued CUDA work on ``device`` (a no-op elsewhere)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device | None = None) -> tuple[Any, float, float]:
    """``(fn(), wall seconds, process CPU seconds)``."""
    sync(device)
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return out, time.perf_counter() - w, time.process_time() - c


def median_timed(fn: Callable[[], Any], repeats: int, device: torch.device | None = None) -> tuple[float, float, Any]:
    """Run ``fn`` ``repeats`` times: ``(median wall s, median CPU s, the last output)``."""
    runs = [timed(fn, device) for _ in range(repeats)]
    return float(np.median([r[1] for r in runs])), float(np.median([r[2] for r in runs])), runs[-1][0]
