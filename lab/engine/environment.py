"""The machine a report or a bench ran on, captured once: torch.utils.collect_env (CUDA, cuDNN, the driver, the
GPU models, Python, the OS, the libraries) and the CPU with the flags that decide what `--fast` picks on it
(AVX2, AVX-512, its bf16 instructions, AMX). Epoch records carry the short form (lab.engine.records)."""
from __future__ import annotations

import datetime as dt
import os
import platform

import psutil
import torch

from .records import cpu_flags, cpu_name, cpus_available, git_commit

# The CPU features that change the step's speed: vector width, bf16 dot products and AMX's matrix tiles.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
# collect_env's fields shown in a report's header, with the names the header gives them
SHOWN = {"nvidia_gpu_models": "GPUs", "nvidia_driver_version": "NVIDIA driver", "cuda_runtime_version": "CUDA runtime",
         "cudnn_version": "cuDNN", "python_version": "Python", "os": "OS"}


def collect() -> dict:
    """This machine, as torch.utils.collect_env and /proc/cpuinfo describe it (collect_env runs a few commands:
    about a second; its failure leaves `collect_env` holding the reason, never stops a report)."""
    try:
        from torch.utils import collect_env
        env = {k: v for k, v in collect_env.get_env_info()._asdict().items() if k != "cpu_info"}
    except Exception as error:  # collect_env shells out (nvidia-smi, pip): a broken tool must not stop a run
        env = {"error": f"{type(error).__name__}: {error}"}
    flags = cpu_flags()
    return {"captured": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "hostname": platform.node(), "cpu_model": cpu_name(), "cpu_flags": [f for f in CPU_FLAGS if f in flags],
            "host_cpus": os.cpu_count(), "cpus_available": cpus_available(), "memory_bytes": memory_bytes(),
            "torch": torch.__version__,
            "cuda_available": torch.cuda.is_available(), "git_commit": git_commit(), "collect_env": env}


def memory_bytes() -> int:
    """The machine's physical memory."""
    return psutil.virtual_memory().total


def machine(device="cpu") -> str:
    """This machine as its environment (collect) identifies it, for the caches of what was measured on it (peaks, the
    --fast choice): the CPU model with the flags that change the step's speed (a cloud's generic "Intel(R) Xeon(R)
    Processor" names many CPUs), the cores this process may use, the memory, torch, and a CUDA device's model."""
    cpu = (f"{cpu_name()} [{','.join(f for f in CPU_FLAGS if f in cpu_flags()) or 'none of its flags'}] | "
           f"{cpus_available()} of {os.cpu_count()} cores | {memory_bytes() / 2**30:.0f} GiB | "
           f"torch {torch.__version__}")
    device = torch.device(device)
    return f"{torch.cuda.get_device_name(device)} | {cpu}" if device.type == "cuda" else cpu


def summary(env: dict | None) -> dict:
    """The lines a header shows for an environment: the CPU and its flags, then collect_env's main fields
    ("—" where it found nothing: no GPU, no driver)."""
    if not env:
        return {"environment": "not captured (a report made before the environment was recorded)"}
    found = env.get("collect_env", {})
    flags = ", ".join(env.get("cpu_flags") or []) or "none of " + ", ".join(CPU_FLAGS)
    return {"CPU": f"{env.get('cpu_model', '?')} ({env.get('cpus_available', '?')} of {env.get('host_cpus', '?')} "
                   f"cores; {flags})",
            **{label: str(found.get(key) or "—").replace("\n", "; ") for key, label in SHOWN.items()}}
