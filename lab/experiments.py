"""The lab's C-parts as recipes: each runs `lab.train.run` over a list of configurations and returns
tidy records (one per epoch, in the schema of lab.results). Notebooks call these; they hold no logic."""
from __future__ import annotations

import json
import math
import sys
import uuid
from pathlib import Path

import pandas as pd
import torch

from . import files, parts, progress, results, stats
from .config import OPTIMIZERS, Config, LabError
from .train import c_compiler, cpu_fast_probe, resolve_device, resolve_fast, run


def planned_steps(config: Config, world_size: int = 1, test: bool = False) -> int:
    """Training steps a run of `config` will take (per process): epochs x batches per epoch; `test`: the
    test batches its evaluations take (evaluate() caps them at max_batches too)."""
    if test:
        images = config.synthetic_test if config.dataset == "synthetic" else 10_000
    else:
        images = config.synthetic_train if config.dataset == "synthetic" else 50_000
    batches = math.ceil(math.ceil(images / world_size) / config.batch_size)
    return config.epochs * (batches if config.max_batches is None else min(batches, config.max_batches))


def single_run(config: Config, out) -> list[dict]:
    """One run's records (a part that compares nothing: C2)."""
    with progress.bar(config.experiment, planned_steps(config)):
        return list(run(config, results_dir=out))


def interleave(configs: list[Config], out) -> list[dict]:
    """Train several settings round-robin by epoch: epoch 1 of each, then epoch 2 of each in the reverse
    order, and so on, so slow drift (clocks, temperature, other load) hits every setting alike instead of
    favouring the ones that ran first. A setting that diverges drops out; the others go on. Every record
    carries the block's id (extra["block"]): a later part may reuse runs of one block (see `reuse`)."""
    block = uuid.uuid4().hex[:12]
    configs = [c.replace(extra={**c.extra, "block": block}) for c in configs]
    with progress.bar(configs[0].experiment if configs else "", sum(map(planned_steps, configs))):
        runs = [run(c, results_dir=out) for c in configs]
        records, active, forward = [], list(range(len(runs))), True
        while active:
            for i in (active if forward else active[::-1]):
                try:
                    records.append(next(runs[i]))
                except StopIteration:
                    active = [j for j in active if j != i]
            forward = not forward
    return records


# Fields two runs may differ in and still be the same measurement
NOT_THE_SETTING = ("experiment", "tag", "extra", "checkpoint", "resume", "device")  # device: compared resolved


def reuse(results_dir, source: str, wanted: dict[str, Config], out) -> list[dict] | None:
    """Runs that part `source` already made in this report, for a part that would make the same runs and
    compares them only with each other: `wanted` maps each source tag to the Config this part would run.
    Only when every wanted run is there, from one interleaved block, complete (all epochs, status ok) and
    with the same settings field for field; else None and the part runs them itself. The copies carry this
    part's experiment and tag and `reused_from`, and are written to `out` like the part's own records."""
    src = Path(results_dir) / source
    records = [r for r in files.read_jsonl(src / "records.jsonl") if r.get("tag") in wanted]
    runs = {}
    for tag, config in wanted.items():
        mine = [r for r in records if r["tag"] == tag]
        device = resolve_device(config.device)
        setting = {k: v for k, v in resolve_fast(config, device, log=lambda msg: None).to_dict().items()
                   if k not in NOT_THE_SETTING}  # as a run records it: resolved
        setting.update(device_type=device.type, threads=config.threads or torch.get_num_threads())
        if (len(mine) != config.epochs or any(r.get("status") != "ok" for r in mine)
                or any(r.get(k) != v for r in mine for k, v in setting.items())):
            return None
        runs[tag] = mine
    if len({r.get("extra", {}).get("block") for rs in runs.values() for r in rs}) != 1:
        return None
    batches = files.read_jsonl(src / "batches.jsonl")
    copies, batch_copies = [], []
    for tag, config in wanted.items():
        ids = {r["run_id"] for r in runs[tag]}
        new_id = f"{next(iter(ids))}@{config.experiment}"
        for r in runs[tag]:
            copies.append({**r, "run_id": new_id, "experiment": config.experiment, "tag": config.tag,
                           "reused_from": f"{source} ({tag})"})
        batch_copies += [{**b, "run_id": new_id, "experiment": config.experiment, "tag": config.tag}
                         for b in batches if b.get("run_id") in ids]
    files.append_jsonl(Path(out) / "batches.jsonl", batch_copies)
    files.append_jsonl(Path(out) / "records.jsonl", copies)
    print(f"{wanted[next(iter(wanted))].experiment}: reusing {', '.join(wanted)} from {source}'s interleaved block "
          "(same settings; nothing here compares them with a later run)", file=sys.stderr)
    return copies


def steady_values(records: list[dict], key: str) -> list[float]:
    """`key` over the steady epochs of a run's records (lab.stats.steady)."""
    df = pd.DataFrame(records)
    return stats.samples(stats.steady(df)[key]) if len(df) else []


# --- C3: DataLoader workers ---------------------------------------------------------------------

def worker_counts(step: int = 4, cap: int = 16) -> list[int]:
    """0, step, 2*step, ... up to cap: the lab's sweep."""
    return list(range(0, cap + 1, step))


def batch_waits(records: list[dict]) -> list[float]:
    """Per steady epoch, the wait on the loader's batches: load_s without worker start-up (iter())."""
    df = stats.steady(pd.DataFrame(records))
    return stats.samples(df["load_s"] - df["loader_start_s"]) if len(df) else []


C4_BASELINE = 1  # C4 compares 1 worker with the best count: C3 measures it in its block so C4 can reuse both


def sweep_configs(config: Config, counts, on_device: bool = True) -> list[Config]:
    """C3's runs: every count of the sweep, 1 worker (C4's baseline) and the on-device loader."""
    extra = [] if C4_BASELINE in counts else [C4_BASELINE]
    configs = [config.replace(workers=w, tag=f"{w} workers") for w in sorted([*counts, *extra])]
    return configs + ([config.replace(loader="tensor", tag="on-device batched")] if on_device else [])


def sweep_workers(config: Config, counts, out, on_device: bool = True) -> dict:
    """Measure every worker count (and 1 worker for C4, and the on-device loader) interleaved by epoch,
    then apply the lab's rule to the lab's counts, noise-aware (lab.stats.worker_sweep_rule): the sweep
    stops at the first count whose per-batch waits are not measurably below the previous count's, and the
    best count is the smallest one within noise of the lowest wait. The result is saved once
    (best_workers.json) and read by the table, the plot and C4-C9."""
    configs = sweep_configs(config, counts, on_device)
    records = interleave(configs, out)
    by_tag = {c.tag: [r for r in records if r["tag"] == c.tag] for c in configs}
    waits = {w: batch_waits(by_tag[f"{w} workers"]) for w in counts}
    for w in counts:
        print(f"workers={w}: per-batch wait {stats.spread(waits[w])} s/epoch", file=sys.stderr)
    rule = stats.worker_sweep_rule(waits)
    if rule["best"] is None:
        raise LabError("every run of the worker sweep diverged: no best worker count (lower the lr?)")
    summary = {"best_workers": rule["best"], "stop_at": rule["stop"], "stop_reason": rule["reason"],
               "batch_wait_s": {str(k): v for k, v in waits.items()},
               "loader_start_s": {str(w): steady_values(by_tag[f"{w} workers"], "loader_start_s") for w in counts}}
    files.save_json(Path(out) / "best_workers.json", summary)
    return {"records": records, **summary}


# --- C4: 1 worker vs the best count ---------------------------------------------------------------

def compare_workers(config: Config, results_dir, out) -> list[dict]:
    """C4: 1 worker against the best count (config.workers), interleaved; C3's runs of both when C3 made
    them in this report with the same settings (its sweep measures 1 worker for this), else run here. When
    the best count is 1, the same setting is run twice, so the difference between the rows is the noise."""
    best = config.workers
    one = config.replace(workers=C4_BASELINE, tag=f"{C4_BASELINE} worker")
    best_config = config.replace(tag=f"{best} workers (best)")
    if best == C4_BASELINE:
        return interleave([one, best_config], out)
    return (reuse(results_dir, parts.SWEEP, {f"{C4_BASELINE} workers": one, f"{best} workers": best_config}, out)
            or interleave([one, best_config], out))



# --- C5: devices ----------------------------------------------------------------------------------

def device_available(name: str) -> bool:
    return name == "cpu" or (name == "cuda" and torch.cuda.is_available())


def device_configs(config: Config, devices, cpu_max_batches=None) -> list[Config]:
    return [config.replace(device=d, max_batches=cpu_max_batches if d == "cpu" and cpu_max_batches
                           else config.max_batches, tag=d) for d in devices if device_available(d)]


def compare_devices(config: Config, devices, out, cpu_max_batches=None, results_dir=None) -> list[dict]:
    """Train on each device, interleaved by epoch; a device that is not there gets a record with status
    'unavailable' so the report shows it instead of dropping it. `cpu_max_batches` caps the CPU run where
    a full CPU epoch would take too long (the comparison is then per batch). When the CPU is the only
    device here, nothing is compared: C3's run of the same settings is reused where it exists."""
    records = []
    for device in (d for d in devices if not device_available(d)):
        config_d = config.replace(device="cpu", tag=device)
        prov = results.provenance(config_d, torch.device("cpu"))
        prov.update(device_type=device, device_name="not available")
        record = results.make_record(config_d, {"status": "unavailable"}, prov, results.new_run_id(config_d))
        files.append_jsonl(Path(out) / "records.jsonl", [record])
        records.append(record)
    configs = device_configs(config, devices, cpu_max_batches)
    if len(configs) == 1 and results_dir is not None:
        c = configs[0]
        reused = reuse(results_dir, parts.SWEEP, {f"{c.workers} workers": c}, out)
        if reused:
            return records + reused
    return records + interleave(configs, out)


# --- C6, C7: optimizers, batch norm --------------------------------------------------------------

BN_OFF = "sgd, BN off"  # C7's other run, measured in C6's block so that C7 can reuse both of its runs


def optimizer_configs(config: Config, optimizers=OPTIMIZERS, with_bn_off: bool = True) -> list[Config]:
    """C6's runs: every optimizer, and SGD without batch norm for C7 (left out of C6's tables)."""
    configs = [config.replace(optimizer=name, tag=name) for name in optimizers]
    return configs + ([config.replace(optimizer="sgd", batch_norm=False, tag=BN_OFF)] if with_bn_off else [])


def compare_optimizers(config: Config, out, optimizers=OPTIMIZERS) -> list[dict]:
    return interleave(optimizer_configs(config, optimizers, with_bn_off="sgd" in optimizers), out)


def compare_batch_norm(config: Config, out, results_dir=None) -> list[dict]:
    """C7: SGD with and without batch norm, interleaved; C6's runs of both where C6 made them in this
    report with the same settings (its block has SGD without batch norm for this)."""
    on, off = config.replace(batch_norm=True, tag="BN on"), config.replace(batch_norm=False, tag="BN off")
    return ((reuse(results_dir, "C6_optimizers", {"sgd": on, BN_OFF: off}, out) if results_dir else None)
            or interleave([on, off], out))


# --- C8: acceleration -------------------------------------------------------------------------------

SLOW = 3.0  # on a CPU, bf16 autocast measured this many times slower than fp32 is left out of C8's runs


def bf16_emulated(probe: dict | None) -> str | None:
    """Why autocast bf16 is left out on this CPU, or None: the --fast probe's measurement where there is one,
    else oneDNN's report of the CPU's bf16 instructions (without them, bf16 is emulated and slower)."""
    step_s = (probe or {}).get("step_s", {})
    fp32, bf16 = (step_s.get(json.dumps({"channels_last": False, "amp": a})) for a in ("off", "bf16"))
    if fp32 and bf16:
        return (f"the --fast probe measured its step at {bf16 / fp32:.1f}x eager fp32's on this CPU (no bf16 matrix "
                "units: bf16 is emulated), so it is left out of the runs") if bf16 > SLOW * fp32 else None
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "oneDNN reports no bf16 instructions on this CPU: bf16 would be emulated, several times slower than fp32"
    return None


def acceleration_settings(device_type: str, max_autotune: bool = False, probe: dict | None = None,
                          compiled: bool = True) -> tuple[list[dict], dict]:
    """C8's settings, all on the on-device loader so that only the step changes: eager fp32 first (the
    baseline), then one change at a time, then `fast` with per-phase timers and `fast` itself (epoch
    timers, no host sync per step). Left out, each with its reason: bf16 on a CPU that emulates it
    (bf16_emulated), the per-phase-timer row on a CPU (no device to synchronize with: the two timers do the
    same work there), the compiled settings when `compiled` is False (a profile's choice: compiling costs a
    minute or more) or there is no C compiler, and `fast` where it would compile then.
    Returns (settings, skipped: tag -> reason)."""
    settings = [{"tag": "eager fp32"}, {"tag": "channels_last", "channels_last": True}]
    if device_type == "cuda":
        settings += [{"tag": "autocast fp16", "amp": "fp16"}, {"tag": "autocast bf16", "amp": "bf16"}]
        modes = ["default", "reduce-overhead"] + (["max-autotune"] if max_autotune else [])
    else:
        settings += [{"tag": "autocast bf16", "amp": "bf16"}]
        modes = ["default"]
    skipped = {}
    emulated = bf16_emulated(probe) if device_type == "cpu" else None
    if emulated:
        settings = [s for s in settings if s.get("amp") != "bf16"]
        skipped["autocast bf16"] = emulated
    if device_type == "cuda" and not max_autotune:
        skipped["compile max-autotune"] = ("opt-in (parameter max_autotune): its autotuning takes minutes and "
                                           "floods the log")
    no_compile = (None if compiled and c_compiler() else
                  "no C compiler found (install g++): torch.compile cannot build kernels" if compiled else
                  "left out by this profile (compile_settings: false): compiling the training step takes a minute "
                  "or more, longer than the rest of this part; the full profile measures it")
    if no_compile:
        for mode in modes:
            skipped[f"compile {mode}"] = no_compile
    else:
        settings += [{"tag": f"compile {mode}", "compile": mode} for mode in modes]
    fast_compiles = device_type == "cuda" or (probe or {}).get("choice", {}).get("compile", "default") != "off"
    if no_compile and fast_compiles:
        skipped["fast"] = f"it compiles the step on this device: {no_compile}"
    elif device_type == "cpu":
        skipped["fast (per-phase timers)"] = ("on a CPU the per-phase timers have no device to synchronize with, so "
                                              "they do the same work as epoch timers; the row is measured on CUDA")
        settings += [{"tag": "fast", "fast": True}]
    else:
        settings += [{"tag": "fast (per-phase timers)", "fast": True, "timers": "phase"}, {"tag": "fast", "fast": True}]
    return [{"loader": "tensor", **s} for s in settings], skipped


def acceleration_plan(config: Config, max_autotune: bool = False, compiled: bool = True) -> tuple[list[Config], dict]:
    """C8's configurations and the left-out settings with their reasons. On a CPU, the --fast probe is
    measured (once per CPU, cached) only where compiled settings run; else its cached result is used."""
    device_type = resolve_device(config.device).type
    probe = cpu_fast_probe(config, measure=compiled) if device_type == "cpu" else None
    settings, skipped = acceleration_settings(device_type, max_autotune, probe, compiled)
    return [config.replace(**s) for s in settings], skipped


def compare_acceleration(config: Config, out, max_autotune: bool = False, profile_steps: int = 3,
                         compiled: bool = True) -> list[dict]:
    """Every C8 setting, interleaved by epoch; the plan (settings and the ones left out, with reasons) is
    saved beside the records so the report can say what was not measured."""
    configs, skipped = acceleration_plan(config, max_autotune, compiled)
    for tag, reason in skipped.items():
        print(f"C8: {tag} left out: {reason}", file=sys.stderr)
    files.save_json(Path(out) / "plan.json", {"settings": [c.tag for c in configs], "skipped": skipped})
    records = interleave(configs, out)
    from .profiling import step_profile  # the eager step under torch.profiler: launch- or compute-bound

    progress.note(config.experiment, "profiling the eager step")
    step_profile(config.replace(loader="tensor", tag="eager fp32"), out, "eager_fp32", steps=profile_steps)
    return records


# --- C9: scaling out ---------------------------------------------------------------------------------

def processes_available(device_type: str) -> int:
    """How many data-parallel processes this node can run: one per GPU with nccl, one per core with gloo."""
    import os

    return torch.cuda.device_count() if device_type == "cuda" else (os.cpu_count() or 1)


def train_args(config: Config) -> list[str]:
    """The `python -m lab train` flags that make `config` (what a launched process is given)."""
    args = ["--lr", str(config.lr), "--workers", str(config.workers), "--epoch", str(config.epochs),
            "--data", config.data, "--device", config.device, "--optimizer", config.optimizer,
            "--dataset", config.dataset, "--synthetic-train", str(config.synthetic_train),
            "--synthetic-test", str(config.synthetic_test), "--loader", config.loader,
            "--batch-size", str(config.batch_size), "--seed", str(config.seed), "--checkpoint", config.checkpoint or "",
            "--experiment", config.experiment, "--tag", config.tag, "--no-progress"]
    args += ["--max-batches", str(config.max_batches)] if config.max_batches else []
    args += ["--threads", str(config.threads)] if config.threads else []
    args += [] if config.batch_norm else ["--disable_batch_norm"]
    return args


def scaling_launches(config: Config, counts, modes=("strong", "weak")) -> list[tuple[int, Config, str | None]]:
    """C9's launches in order: (processes, the Config each process runs, why it cannot run here or None).
    strong: the global batch stays `config.batch_size` (each of N processes takes batch_size / N); weak:
    each process keeps `config.batch_size` (global batch N x batch_size). 1 process is the baseline of both."""
    device_type = resolve_device(config.device).type
    have = processes_available(device_type)
    launches = []
    for n in counts:
        for mode in (("strong",) if n == 1 else [m for m in ("strong", "weak") if m in modes]):
            tag = "1 process" if n == 1 else f"{n} processes ({mode})"
            batch = config.batch_size // n if mode == "strong" else config.batch_size
            c = config.replace(batch_size=max(batch, 1), tag=tag, checkpoint=None)
            why = (f"{n} processes need {n} {'GPUs' if device_type == 'cuda' else 'cores'}, this node has {have}"
                   if n > have else f"batch {config.batch_size} does not split into {n} equal parts"
                   if mode == "strong" and config.batch_size % n else None)
            launches.append((n, c, why))
    return launches


def scaling(config: Config, counts, out, modes=("strong", "weak")) -> list[dict]:
    """Data-parallel runs on 1, 2, ... processes of this node (scaling_launches), each its own torchrun
    launch (through `python -m lab train --nproc-per-node N`), one after another. A count this node
    cannot run is recorded as 'unavailable', as C5 does for a missing device."""
    import subprocess

    device_type = resolve_device(config.device).type
    records = []
    for n, c, why in scaling_launches(config, counts, modes):
        tag = c.tag
        if why:
            record = results.make_record(c, {"status": "unavailable", "world_size": n},
                                         results.provenance(c, torch.device(device_type)), results.new_run_id(c))
            record["unavailable_reason"] = why
            files.append_jsonl(Path(out) / "records.jsonl", [record])
            records.append(record)
            print(f"C9: {tag}: not measured: {why}", file=sys.stderr)
            continue
        print(f"C9: {tag}, batch {c.batch_size} per process", file=sys.stderr)
        progress.note(config.experiment, f"launching {tag}")
        cmd = [sys.executable, "-m", "lab", "train", "--nproc-per-node", str(n), *train_args(c), "--results", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise LabError(f"C9: the {tag} run failed: {last}")
        records += [r for r in files.read_jsonl(Path(out) / "records.jsonl") if r.get("tag") == tag]
    return records


# --- the plan: what each part will run, for the report's estimate ---------------------------------------

def plan(notebook: str, params: dict, report: tuple = ()) -> progress.Work:
    """The work a part's notebook will do with `params` (its resolved parameters), counted as the notebook
    does it: runs and their steps, test batches, compilations, launches, profiled steps. `report`: the parts
    of this report, so that a part that reuses another's runs (C4, and C5 on a CPU-only node) counts none."""
    work = progress.Work()
    if notebook == "Q_model":
        return work
    config = parts.config_for(notebook, {**params, "workers": params.get("workers") or 0})
    runs: list[Config] = []
    if notebook == "C2_timing":
        runs = [config]
    elif notebook == parts.SWEEP:
        runs = sweep_configs(config, params.get("worker_counts") or worker_counts(params["worker_step"],
                                                                                  params["worker_cap"]))
    elif notebook == "C4_workers_profile":
        runs = [] if parts.SWEEP in report else [config, config]
        work += progress.Work(steps=2 * (2 + params["profile_steps"]), runs=2)
    elif notebook == "C5_devices":
        runs = device_configs(config, params["devices"], params.get("cpu_max_batches"))
        runs = [] if len(runs) == 1 and parts.SWEEP in report else runs
    elif notebook == "C6_optimizers":
        runs = optimizer_configs(config, params["optimizers"], "sgd" in params["optimizers"])
    elif notebook == "C7_batchnorm":
        runs = [] if "C6_optimizers" in report else [config, config.replace(batch_norm=False)]
    elif notebook == "C8_acceleration":
        runs = acceleration_plan(config, params["max_autotune"], params.get("compile_settings", True))[0]
        work += progress.Work(steps=2 + params["profile_steps"], runs=1)
    elif notebook == "C9_scaling":
        cpu = resolve_device(config.device).type == "cpu"
        for n, c, why in scaling_launches(config, params["process_counts"], params["modes"]):
            if not why:
                share = c.batch_size * (n if cpu else 1) / config.batch_size  # a CPU node's cores are shared
                work += progress.Work(steps=planned_steps(c, n) * share, runs=1, launches=1,
                                      evals=0)
    for c in runs:
        evals = planned_steps(c, test=True) if c.evaluate else 0
        work += progress.Work(steps=planned_steps(c) * (c.batch_size / config.batch_size), evals=evals, runs=1,
                              compiles=int(c.compile != "off" or (c.fast and resolve_device(c.device).type == "cuda")))
    return work
