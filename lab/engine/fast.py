"""--fast: the fastest honest step on this device. On CUDA a fixed recipe (on-device loader, channels_last,
bf16 autocast, CUDA graphs through torch.compile reduce-overhead); on a CPU the combination measured fastest
on this machine, cached per CPU (cpu_fast_probe)."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch

from ..core import files, stats
from ..core.config import Config
from .environment import machine
from .interleave import abba
from .loop import AMP_DTYPES, Precision, Step
from .model import resnet18


def c_compiler() -> str | None:
    """torch.compile's inductor backend builds C++ (CPU) or Triton (CUDA) kernels with the host compiler."""
    found = (shutil.which(name) for name in (os.environ.get("CXX"), "c++", "g++", "clang++") if name)
    return next(filter(None, found), None)


CUDA_FAST = {"loader": "tensor", "channels_last": True, "amp": "bf16", "compile": "reduce-overhead"}
CPU_CANDIDATES = [{"channels_last": cl, "amp": amp} for cl in (False, True) for amp in ("off", "bf16")]  # eager first


def resolve_fast(config: Config, device: torch.device, log=print, measure: bool = True) -> Config:
    """The concrete configuration of a run (idempotent): `timers` auto becomes epoch under --fast, else phase; --fast
    becomes CUDA_FAST, or on a CPU cpu_fast_probe's choice (`measure` False: the cached one, else eager)."""
    timers = config.timers if config.timers != "auto" else ("epoch" if config.fast else "phase")
    if not config.fast:
        return config.replace(timers=timers)
    if device.type == "cuda":
        return config.replace(timers=timers, **CUDA_FAST)
    probe = cpu_fast_probe(config, log, measure=measure)
    return config.replace(timers=timers, loader="tensor", **(probe["choice"] if probe else {}))


def others_load(seconds: float = 0.5) -> float:
    """The share of all cores (0 to 1) that other processes kept busy over `seconds` while this one waited, from
    /proc/stat's busy times (0 where it cannot be read)."""
    def busy() -> float:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    try:
        start = busy()
        time.sleep(seconds)
        return max(0.0, min(1.0, (busy() - start) / (seconds * (os.cpu_count() or 1))))
    except (OSError, ValueError):
        return 0.0


def load_class(load: float | None = None) -> str:
    """'busy' where other processes keep half the cores busy or more, else 'idle' (a busy machine ranks otherwise)."""
    return "busy" if (others_load() if load is None else load) >= 0.5 else "idle"


def load_held(loads: list[float]) -> bool:
    """Whether the load others put on the machine kept its class over a probe (`loads`: sampled before, between its
    stages and after): a result measured while load came or went serves that run but is not cached."""
    return len({load_class(load) for load in loads}) <= 1


def fast_cache_key(batch: int, threads: int | None = None, load: str | None = None) -> str:
    """The conditions a probe's result holds for: the machine (environment.machine: the CPU, its flags, cores,
    memory, torch), the threads, the batch size and the load."""
    threads = threads or torch.get_num_threads()
    return f"{machine()} | {threads} threads | batch {batch} | {load or load_class()}"


def fast_entry(path, key: str, entry) -> dict:
    """A fast-choice.json entry, checked (files.BadFile naming the field otherwise): a choice of known settings,
    finite positive step times. A bad entry is measured again, never trusted."""
    field, again = f"[{key!r}]", "measured again"
    if not isinstance(entry, dict) or not isinstance(entry.get("choice"), dict):
        raise files.BadFile(path, "is not an object with a 'choice'", field, again)
    choice = entry["choice"]
    amp, compiled = choice.get("amp", "off"), choice.get("compile", "off")
    if not (isinstance(choice.get("channels_last", False), bool) and isinstance(amp, str) and amp in AMP_DTYPES
            and isinstance(compiled, str) and compiled in ("off", "default")):
        raise files.BadFile(path, f"is {json.dumps(choice)[:80]}, not a known setting", f"{field}.choice", again)
    step_s = entry.get("step_s", {})
    if not isinstance(step_s, dict):
        raise files.BadFile(path, "is not an object", f"{field}.step_s", again)
    for setting, seconds in step_s.items():
        files.number(path, f"{field}.step_s[{setting!r}]", seconds, high=3600, positive=True, way_out=again)
    return entry


def cached_fast(path, keys, log=None) -> dict | None:
    """The first of `keys` with a sound entry in fast-choice.json; a bad entry (or file) counts as absent (`log`
    says which entry was ignored and why)."""
    cached = files.read_json(path, {})
    for key in keys:
        if key in cached:
            try:
                return fast_entry(path, key, cached[key])
            except files.BadFile as bad:
                if log:
                    log(f"--fast on this CPU: the cached choice is ignored: {bad}")
    return None


def setting_name(setting: dict) -> str:
    parts = (["channels_last"] if setting.get("channels_last") else []) + (
        [f"{setting['amp']} autocast"] if setting.get("amp", "off") != "off" else []) + (
        [f"compile {setting['compile']}"] if setting.get("compile", "off") != "off" else [])
    return " + ".join(parts) or "eager fp32"


def cpu_step(setting: dict) -> Step:
    """One setting's ResNet-18 training step on the CPU."""
    channels_last, compiled = setting.get("channels_last", False), setting.get("compile", "off") != "off"
    model = resnet18().train().to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return Step(torch.compile(model, dynamic=False) if compiled else model, optimizer, torch.device("cpu"),
                Precision(channels_last, AMP_DTYPES[setting.get("amp", "off")]))


def interleaved_samples(settings: list[dict], batch_size: int, rounds: int = 4, warmup: int = 1) -> dict:
    """Per setting (by its JSON), `rounds` timed steps on a fixed random batch in ABBA order, after `warmup` steps of
    each (compilation's too)."""
    x, y = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    steps = {json.dumps(s): cpu_step(s) for s in settings}
    for step in steps.values():
        for _ in range(warmup):
            step(x, y)
    samples = {key: [] for key in steps}
    for order in abba(steps, rounds):
        for key in order:
            start = time.perf_counter()
            steps[key](x, y)
            samples[key].append(time.perf_counter() - start)
    return samples


def decide(samples: dict, baseline: str) -> tuple[str, str]:
    """The setting to take and why: the fastest the rule finds decidedly faster than the baseline, else the baseline."""
    name = {key: setting_name(json.loads(key)) for key in samples}
    key_of = {n: key for key, n in name.items()}
    claims = [(name[key], name[baseline], "step") for key in samples if key != baseline]
    result = stats.family({name[k]: [{"step": v} for v in vs] for k, vs in samples.items()}, claims, sample="step",
                          scope="the probe's claims together")
    faster = [c for c, comparison in result.items() if comparison.verdict == "faster"]
    if not faster:
        reasons = "; ".join(result[c].sentence() for c in claims)
        return baseline, f"no setting is decidedly faster than {name[baseline]} ({reasons})"
    best = min(faster, key=lambda c: stats.mean(samples[key_of[c[0]]]))
    return key_of[best[0]], result[best].sentence("step")


EAGER_ONLY = " | eager candidates"  # the cache key's suffix for a probe without its compiled stage


def cpu_fast_probe(config: Config, log=print, measure: bool = True, compiled: bool = True) -> dict | None:
    """--fast on a CPU (docs/cli.md): CPU_CANDIDATES interleaved, the one decidedly faster than eager fp32 taken, then
    that against its compiled form (`compiled` False: not, cached apart); cached per fast_cache_key in
    $LAB_CACHE/fast-choice.json. measure=False: the cached result or None."""
    cache = files.cache_dir() / "fast-choice.json"
    compiled = compiled and c_compiler() is not None
    suffix = "" if compiled else EAGER_ONLY
    if not measure:  # a plan or an account: the idle machine's result where there is one, measuring nothing
        return cached_fast(cache, [fast_cache_key(config.batch_size, load=c) + suffix for c in ("idle", "busy")])
    load = others_load()
    key = fast_cache_key(config.batch_size, load=load_class(load)) + suffix
    found = cached_fast(cache, [key], log)
    if found:
        return found
    log(f"--fast on this CPU: measuring which settings make the step fastest (batch {config.batch_size}, "
        f"{torch.get_num_threads()} threads, other processes keeping {load:.0%} of the cores busy; once, cached "
        f"in {cache})")
    baseline = json.dumps(CPU_CANDIDATES[0])
    samples = interleaved_samples(CPU_CANDIDATES, config.batch_size)
    loads = [load, others_load()]  # between the stages too: load that came mid-probe shows
    best, reason = decide(samples, baseline)
    choice = {**json.loads(best), "compile": "off"}
    if compiled:
        compiled = {**json.loads(best), "compile": "default"}
        more = interleaved_samples([json.loads(best), compiled], config.batch_size, warmup=2)
        samples.update({k: v for k, v in more.items() if k != best})
        won, why = decide(more, best)
        if won != best:
            choice, reason = compiled, why
        loads.append(others_load())
    entry = {"choice": choice, "step_s": {k: stats.mean(v) for k, v in samples.items()}, "samples": samples,
             "reason": reason, "measured": time.strftime("%Y-%m-%d %H:%M"), "others_load_before": round(load, 3),
             "others_load_after": round(loads[-1], 3), "others_load": [round(x, 3) for x in loads]}
    log(f"--fast on this CPU: {setting_name(choice)}: {reason}")
    if not load_held(loads):
        log(f"--fast on this CPU: not cached: the load of other processes changed during the probe "
            f"({', '.join(f'{x:.0%}' for x in loads)} of the cores busy)")
        return entry
    try:
        files.update_json(cache, lambda cached: {**cached, key: entry})
    except OSError as exc:  # a read-only home only costs the measurement next time
        log(f"could not cache the --fast choice in {cache}: {exc}")
    return entry


def fast_reason(config: Config) -> str | None:
    """What --fast took on this CPU and why, from the cache (None where nothing is cached)."""
    probe = cpu_fast_probe(config, measure=False)
    if not probe:
        return None
    return (f"--fast on this CPU: {setting_name(probe['choice'])} ({probe.get('reason', 'no reason recorded')}; "
            f"measured {probe.get('measured', 'earlier')} at batch {config.batch_size} with "
            f"{torch.get_num_threads()} threads)")
