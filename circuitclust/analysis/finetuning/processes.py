"""The processes of a (possibly distributed) run and their random-number state.

Under ``torchrun`` / ``accelerate launch`` each process trains on its own slice of every global batch; a
:class:`Dist` says which slice and all-reduces the sums that every process contributes to (losses, perplexities).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Dist:
    """This process's ``rank`` among ``world`` processes and its ``device``; one process on the CPU by default."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def on(self) -> bool:
        return self.world > 1

    def sum(self, values: list[float]) -> list[float]:
        """``values`` summed over every process (returned as they are with one process)."""
        if not self.on:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.on:
            dist.barrier()


def setup_dist(device: str | None) -> Dist:
    """Join the process group that ``torchrun`` / ``accelerate launch`` set up in the environment (NCCL on
    CUDA, gloo on the CPU), or describe the single process; ``device`` None: this process's GPU if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu") if device is None \
        else torch.device(device)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), dev)
    return Dist(0, 1, dev)


def rng_state() -> dict[str, Any]:
    """Every random-number state this process draws from (torch, CUDA, Python, NumPy), for a checkpoint."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved, so a resumed run draws the numbers the uninterrupted one would."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
