"""--fast: the fastest honest step on this device. On CUDA a fixed recipe (on-device loader, channels_last,
bf16 autocast, CUDA graphs through torch.compile reduce-overhead); on a CPU the combination measured fastest
on this machine, cached per CPU (cpu_fast_probe)."""
from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from pathlib import Path

import torch

from ..core import files
from ..core.config import Config
from .loop import AMP_DTYPES, Precision, Step
from .model import resnet18
from .records import cpu_name


def c_compiler() -> str | None:
    """torch.compile's inductor backend builds C++ (CPU) or Triton (CUDA) kernels with the host compiler."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        path = name and shutil.which(name)
        if path:
            return path
    return None


CUDA_FAST = {"loader": "tensor", "channels_last": True, "amp": "bf16", "compile": "reduce-overhead"}
CPU_CANDIDATES = [{"channels_last": cl, "amp": amp} for cl in (False, True) for amp in ("off", "bf16")]


def resolve_fast(config: Config, device: torch.device, log=print, measure: bool = True) -> Config:
    """The concrete configuration of a run: `timers` auto becomes epoch under --fast and phase otherwise;
    --fast becomes the on-device loader, channels_last, bf16 autocast and CUDA graphs (torch.compile
    reduce-overhead) on CUDA, and on a CPU the combination that measured fastest on this machine
    (cpu_fast_probe; `measure` False: the cached choice, or eager where none is cached, as a plan assumes).
    Idempotent: a resolved configuration comes back unchanged."""
    timers = config.timers if config.timers != "auto" else ("epoch" if config.fast else "phase")
    if not config.fast:
        return config.replace(timers=timers)
    if device.type == "cuda":
        return config.replace(timers=timers, **CUDA_FAST)
    probe = cpu_fast_probe(config, log, measure=measure)
    return config.replace(timers=timers, loader="tensor", **(probe["choice"] if probe else {}))


def _cache_file() -> Path:
    return files.cache_dir() / "fast-choice.json"


def fast_cache_key(probe_batch: int, threads: int | None = None) -> str:
    threads = threads or torch.get_num_threads()
    return f"{cpu_name()} | torch {torch.__version__} | {threads} threads | batch {probe_batch}"


def time_steps(setting: dict, batch_size: int, steps: int = 3, warmup: int = 1) -> float:
    """Median seconds of a ResNet-18 training step on the CPU for one setting, on random images."""
    model = resnet18().train()
    fmt = torch.channels_last if setting.get("channels_last") else torch.contiguous_format
    model = model.to(memory_format=fmt)
    step_model = model if setting.get("compile", "off") == "off" else torch.compile(model, dynamic=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = Step(step_model, optimizer, torch.device("cpu"),
                Precision(setting.get("channels_last", False), AMP_DTYPES[setting.get("amp", "off")]))
    x, y = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times[warmup:])


def cpu_fast_probe(config: Config, log=print, measure: bool = True) -> dict | None:
    """The measurement behind --fast on a CPU: eager steps with and without channels_last and bf16 autocast, then the
    fastest of those under torch.compile (where a C compiler exists), and keep the fastest. The choice
    depends on the CPU (bf16 halves the step on a CPU with AMX and doubles it on one without), so it is
    measured, once per CPU, torch version, thread count and probe batch, and cached in
    $LAB_CACHE/fast-choice.json (default ~/.cache/resnet-perf-lab). measure=False: the cached result or None."""
    probe_batch = min(config.batch_size, 32)
    key = fast_cache_key(probe_batch)
    cache = _cache_file()
    try:
        cached = json.loads(cache.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached or not measure:
        return cached.get(key)
    log(f"--fast on this CPU: measuring which settings make the step fastest (batch {probe_batch}, once; "
        f"cached in {cache})")
    step_s = {json.dumps(c): time_steps(c, probe_batch) for c in CPU_CANDIDATES}
    best = min(CPU_CANDIDATES, key=lambda c: step_s[json.dumps(c)])
    choice = {**best, "compile": "off"}
    if c_compiler() is not None:
        compiled = {**best, "compile": "default"}
        step_s[json.dumps(compiled)] = time_steps(compiled, probe_batch, warmup=2)
        if step_s[json.dumps(compiled)] < step_s[json.dumps(best)]:
            choice = compiled
    log("--fast on this CPU: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in step_s.items())
        + f" -> {json.dumps(choice)}")
    cached[key] = {"choice": choice, "step_s": step_s}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with files.atomic_write(cache) as f:
            f.write(json.dumps(cached, indent=1))
    except OSError as exc:  # a read-only home only costs the measurement next time
        log(f"could not cache the --fast choice in {cache}: {exc}")
    return cached[key]

