"""The processes of a run: one by default, several when launched by ``torchrun``.

``WORLD_SIZE > 1`` in the environment makes each process join the process group (gloo on CPU,
NCCL on CUDA, one GPU per process by ``LOCAL_RANK``). :class:`Processes` answers who this process
is and does the few collective operations the loop needs; with one process they are local no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class Processes:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this run started the process group, so it ends it

    @property
    def main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def sum(self, values: list[float]) -> list[float]:
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        return bool(self.sum([float(flag)])[0] > 0) if self.active else flag

    def gather(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def release(self) -> None:
        """End the process group if this run started it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup_processes(device: str) -> Processes:
    """This process's rank and device (`device`: "auto", "cpu", "cuda" or "cuda:N")."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available")
    if want_cuda:
        dev = torch.device(device if ":" in device and world == 1 else f"cuda:{local_rank}")
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world == 1:
        return Processes(device=dev)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", init_method="env://")
        owns = True
    return Processes(rank=dist.get_rank(), world_size=dist.get_world_size(), device=dev, owns_group=owns)
