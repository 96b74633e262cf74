"""A run resolved once: a Config becomes its device, `timers` and `--fast`'s concrete choices, its process group
and torch threads. Everything that runs or plans a run takes what `resolve` says: no two places decide it."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch

from ..core.config import Config
from ..core.errors import ConfigError, LabError
from . import dist
from .fast import resolve_fast


@dataclass(frozen=True)
class Resolved:
    config: Config          # resolved: the configuration every record carries
    device: torch.device
    dist: dist.Context
    threads: int            # torch threads this process trains with


def device_type(name: str) -> str:
    """cpu or cuda; `auto` is cuda where available; cuda without CUDA is an error, never a fallback."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise LabError(f"CUDA was requested (--gpu / --device cuda) but torch {torch.__version__} sees no "
                       "CUDA device; run with --device cpu (or --device auto)")
    return name


def check_distributed(config: Config, kind: str, ctx: dist.Context) -> None:
    if config.sync_bn and kind != "cuda":
        raise ConfigError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm runs only on CUDA devices")
    if ctx.world_size > 1 and config.fast:
        raise ConfigError("--fast with several processes is not supported: its CUDA graphs and on-device metrics "
                          "are built for one process; drop --fast or use --nproc-per-node 1")
    if kind == "cuda" and ctx.local_world_size > torch.cuda.device_count():
        gpus = torch.cuda.device_count()
        raise LabError(f"--nproc-per-node {ctx.local_world_size} with CUDA needs {ctx.local_world_size} GPUs "
                       f"(NCCL: one GPU per process) but this node has {gpus}; use --nproc-per-node {gpus} "
                       "or --device cpu (gloo)")


def resolve(config: Config, log=None, launch: int | None = None, measure: bool = True) -> Resolved:
    """`config` made concrete; under torchrun this joins the process group. `launch=N`: the launcher's view of
    the N processes it starts, for its checks only. `measure` False: --fast takes its cached choice (a plan)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    config = config.validate()
    kind = device_type(config.device)
    ctx = dist.Context(world_size=launch, local_world_size=launch) if launch else dist.init(kind)
    check_distributed(config, kind, ctx)
    device = torch.device("cuda", ctx.local_rank) if kind == "cuda" and ctx.distributed else torch.device(kind)
    if launch is None:
        config = resolve_fast(config, device, log, measure)
    if config.cudnn_benchmark and (kind != "cuda" or config.deterministic):
        # cuDNN does nothing on a CPU; with deterministic algorithms, autotuning could still pick different
        # (deterministic) algorithms in two processes, and their results would differ: the records say it is off
        config = config.replace(cudnn_benchmark=False)
    if (config.workers == 0 or config.loader != "torch") and (config.persistent_workers or config.prefetch_factor):
        # no worker processes: nothing persists or loads ahead (DataLoader refuses both): the records say so
        config = config.replace(persistent_workers=False, prefetch_factor=None)
    threads = dist.threads_per_rank(config.threads) if config.threads or ctx.distributed else torch.get_num_threads()
    return Resolved(config, device, ctx, threads)


WORKSPACE = ":4096:8"  # cuBLAS's fixed workspace, which deterministic algorithms need on CUDA


def apply_speed_settings(config: Config, device: torch.device) -> None:
    """Set torch's process-wide switches to this run's: cudnn.benchmark and deterministic algorithms (with
    cuBLAS's fixed workspace on CUDA). Called before each epoch: an interleaved block's runs share one process."""
    cuda = device.type == "cuda"
    if config.deterministic and cuda and "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = WORKSPACE
        if torch.cuda.is_initialized():  # torch reads it once, when the process first uses cuBLAS
            print("warning: CUBLAS_WORKSPACE_CONFIG was set after CUDA started in this process; cuBLAS may not use "
                  f"it. Start the process with CUBLAS_WORKSPACE_CONFIG={WORKSPACE} (python -m lab train "
                  "--deterministic does)", file=sys.stderr)
    torch.use_deterministic_algorithms(config.deterministic)
    torch.backends.cudnn.deterministic = config.deterministic
    torch.backends.cudnn.benchmark = config.cudnn_benchmark and cuda


def _precision(*levels) -> str:
    """The first set (not "none": inherit) fp32 precision of a backend's levels, from the leaf up; "ieee"
    where none is set (torch's default)."""
    return next((level.fp32_precision for level in levels if level.fp32_precision != "none"), "ieee")


def compute_precision(device, amp: str = "off") -> str:
    """The one answer to "what precision does this compute in": the autocast (or weights') dtype where there is
    one, else fp32, which is tf32 on CUDA where cuDNN's fp32 convolutions run as TF32 (PyTorch's default)."""
    if amp in ("bf16", "fp16"):  # anything else ("off", None, NaN from a table) computes in fp32
        return amp
    device = torch.device(device)
    return "tf32" if device.type == "cuda" and speed_settings(device)["fp32_precision_conv"] == "tf32" else "fp32"


def speed_settings(device: torch.device) -> dict:
    """The switches that change speed, as torch reports them now (the fp32 precision through torch's
    `fp32_precision` API; the legacy `allow_tf32` flags are not read: mixing the two raises)."""
    b = torch.backends
    if device.type == "cuda":
        matmul, conv = _precision(b.cuda.matmul, b), _precision(b.cudnn.conv, b.cudnn, b)
    else:
        matmul, conv = _precision(b.mkldnn.matmul, b.mkldnn, b), _precision(b.mkldnn.conv, b.mkldnn, b)
    return {"fp32_precision_matmul": matmul, "fp32_precision_conv": conv,
            "cudnn_benchmark_on": bool(b.cudnn.benchmark),
            "deterministic_on": torch.are_deterministic_algorithms_enabled()}
