"""Data-parallel training on torch.distributed: torchrun (or `python -m lab train --nproc-per-node N`) starts
one process per rank with RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE in its environment; `init` joins
the process group from them (nccl on CUDA, gloo on CPU). Without them nothing here does anything."""
from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import get_args_parser
from torch.distributed.run import run as torchrun

from ..core.errors import LabError

# a collective that waits longer ends the job instead of hanging (a rank that died mid-step)
TIMEOUT = dt.timedelta(seconds=int(os.environ.get("LAB_DIST_TIMEOUT", "300")))


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = ""          # "" when not distributed

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return bool(self.backend)


_context = Context()


def launched() -> bool:
    """True inside a process that torchrun started."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def current() -> Context:
    return _context


def init(device_type: str) -> Context:
    """Join the process group torchrun described (once; a plain process gets the one-process Context). On CUDA
    each rank takes the GPU of its local rank."""
    global _context
    if _context.distributed or not launched():
        return _context
    env = {k: int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"]))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        gpus = torch.cuda.device_count()
        if env["LOCAL_RANK"] >= gpus:
            raise LabError(f"{local_world} processes on this node but only {gpus} GPU(s): NCCL needs one GPU per "
                           f"process; use --nproc-per-node {gpus} or fewer")
        torch.cuda.set_device(env["LOCAL_RANK"])
    dist.init_process_group(backend, timeout=TIMEOUT)
    _context = Context(env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], local_world, backend)
    return _context


def shutdown() -> None:
    global _context
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _context = Context()


def gather(obj) -> list:
    """Every rank's `obj`, in rank order, on every rank (just [obj] in one process)."""
    if not _context.distributed:
        return [obj]
    out = [None] * _context.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj):
    """Rank 0's `obj` on every rank."""
    if not _context.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def threads_per_rank(requested: int | None) -> int:
    """Threads for this process: the requested count, else the host's cores shared among the processes
    on this node (torchrun's own default, OMP_NUM_THREADS=1, leaves cores idle on a CPU run)."""
    if requested:
        return requested
    if not _context.distributed:
        return torch.get_num_threads()
    return max(1, (os.cpu_count() or 1) // _context.local_world_size)


def launch(nproc: int, argv: list[str]) -> int:
    """`python -m lab train --nproc-per-node N ...`: the same command (less that flag) through torchrun's launcher
    on this node. A rank that fails ends the job: one line names the first failed rank."""
    for name in ("torch.distributed.elastic", "torch.distributed.run"):  # we set and record threads ourselves
        logging.getLogger(name).setLevel(logging.ERROR)
    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0",
                                         "--module", "lab", *argv])
    try:
        torchrun(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        how = (f"was killed by signal {-failure.exitcode}" if failure.exitcode < 0
               else f"exited with code {failure.exitcode}")
        raise LabError(f"distributed training failed: rank {rank} (of {nproc}) {how}; the launcher stopped "
                       "the other ranks (the rank's own message, if any, is above)") from None
    return 0
