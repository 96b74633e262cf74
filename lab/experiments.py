"""The lab's C-parts as recipes: each runs `lab.train.run` over a list of configurations and returns
tidy records (one per epoch, in the schema of lab.results). Notebooks call these; they hold no logic."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import torch

from . import results, stats
from .results import save_json  # noqa: F401 - re-exported for callers of experiments.save_json
from .config import OPTIMIZERS, Config, LabError
from .data import BATCH_DIR, CIFAR10_URL, DataError, download_cifar10
from .train import c_compiler, cpu_fast_probe, resolve_device, run


def resolve_dataset(dataset: str, data: str, log=print) -> str:
    """'auto' -> 'cifar10' where it is on disk or can be downloaded, else 'synthetic' (said loudly)."""
    if dataset != "auto":
        return dataset
    if (Path(data) / BATCH_DIR).is_dir():
        return "cifar10"
    try:
        download_cifar10(Path(data), log)
        return "cifar10"
    except DataError:
        log(f"CIFAR-10 is not in {Path(data) / BATCH_DIR} and cannot be downloaded here: using SYNTHETIC "
            f"CIFAR-format data. Timings are real; accuracies are not CIFAR-10's. (Get {CIFAR10_URL})")
        return "synthetic"


def notebook_config(experiment: str, dataset: str = "auto", data: str = "../data", **fields) -> Config:
    """The Config of a notebook's run, from its papermill parameters (no checkpoints: reports re-run
    whole notebooks)."""
    fields.setdefault("checkpoint", None)
    return Config(experiment=experiment, dataset=resolve_dataset(dataset, data), data=data, **fields).validate()


def output_dir(results_dir, notebook: str) -> Path:
    """`results_dir/notebook/`, emptied of that notebook's earlier records so a re-run replaces them."""
    out = Path(results_dir) / notebook
    out.mkdir(parents=True, exist_ok=True)
    for name in ("records.jsonl", "batches.jsonl"):
        (out / name).unlink(missing_ok=True)
    return out


def train(config: Config, out, progress: bool = False) -> list[dict]:
    return list(run(config, results_dir=out, progress=progress))


def interleave(configs: list[Config], out, progress: bool = False) -> list[dict]:
    """Train several settings round-robin by epoch: epoch 1 of each, then epoch 2 of each in the reverse
    order, and so on, so slow drift (clocks, temperature, other load) hits every setting alike instead of
    favouring the ones that ran first. A setting that diverges drops out; the others go on."""
    runs = [run(c, results_dir=out, progress=progress) for c in configs]
    records, active, forward = [], list(range(len(runs))), True
    while active:
        for i in (active if forward else active[::-1]):
            try:
                records.append(next(runs[i]))
            except StopIteration:
                active = [j for j in active if j != i]
        forward = not forward
    return records


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


def sweep_workers(config: Config, counts, out, on_device: bool = True) -> dict:
    """Measure every worker count (and the on-device loader) interleaved by epoch, then apply the lab's
    rule, noise-aware (lab.stats.worker_sweep_rule): the sweep stops at the first count whose per-batch
    waits are not measurably below the previous count's, and the best count is the smallest one within
    noise of the lowest wait. The result is saved once (best_workers.json) and read by the table, the
    plot and C4-C8."""
    configs = [config.replace(workers=w, tag=f"{w} workers") for w in counts]
    if on_device:
        configs.append(config.replace(loader="tensor", tag="on-device batched"))
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
    results.save_json(Path(out) / "best_workers.json", summary)
    return {"records": records, **summary}


def read_sweep(results_dir) -> dict | None:
    """C3's saved sweep result (best_workers.json) of a report folder, or None."""
    try:
        return json.loads((Path(results_dir) / "C3_workers" / "best_workers.json").read_text())
    except (OSError, ValueError):
        return None


def best_workers(results_dir, default: int = 2) -> int:
    """C3's best worker count from a report folder, or `default` when C3 has not run there."""
    sweep = read_sweep(results_dir)
    try:
        return int(sweep["best_workers"])
    except (TypeError, KeyError, ValueError):
        return default


# --- C5: devices ----------------------------------------------------------------------------------

def device_available(name: str) -> bool:
    return name == "cpu" or (name == "cuda" and torch.cuda.is_available())


def compare_devices(config: Config, devices, out, cpu_max_batches=None) -> list[dict]:
    """Train on each device, interleaved by epoch; a device that is not there gets a record with status
    'unavailable' so the report shows it instead of dropping it. `cpu_max_batches` caps the CPU run where
    a full CPU epoch would take too long (the comparison is then per batch)."""
    records, configs = [], []
    for device in devices:
        if not device_available(device):
            config_d = config.replace(device="cpu", tag=device)
            prov = results.provenance(config_d, torch.device("cpu"))
            prov.update(device_type=device, device_name="not available")
            record = results.make_record(config_d, {"status": "unavailable"}, prov,
                                         results.new_run_id(config_d))
            results.append_jsonl(Path(out) / "records.jsonl", [record])
            records.append(record)
            continue
        cap = cpu_max_batches if device == "cpu" and cpu_max_batches else config.max_batches
        configs.append(config.replace(device=device, max_batches=cap, tag=device))
    return records + interleave(configs, out)


# --- C6, C7: optimizers, batch norm --------------------------------------------------------------

def compare_optimizers(config: Config, out, optimizers=OPTIMIZERS) -> list[dict]:
    return interleave([config.replace(optimizer=name, tag=name) for name in optimizers], out)


def compare_batch_norm(config: Config, out) -> list[dict]:
    return interleave([config.replace(batch_norm=bn, tag="BN on" if bn else "BN off") for bn in (True, False)], out)


# --- C8: acceleration -------------------------------------------------------------------------------

SLOW = 3.0  # on a CPU, bf16 autocast measured this many times slower than fp32 is left out of C8's runs


def acceleration_settings(device_type: str, max_autotune: bool = False, probe: dict | None = None
                          ) -> tuple[list[dict], dict]:
    """C8's settings, all on the on-device loader so that only the step changes: eager fp32 first (the
    baseline), then one change at a time, then `fast` with per-phase timers and `fast` itself (epoch
    timers, no host sync per step). On a CPU where the --fast probe (`probe`, lab.train.cpu_fast_probe)
    measured bf16 autocast more than SLOW times slower than fp32 (no bf16 matrix units: it is emulated),
    bf16 is left out with that measurement as the reason. Returns (settings, skipped: tag -> reason)."""
    settings = [{"tag": "eager fp32"}, {"tag": "channels_last", "channels_last": True}]
    if device_type == "cuda":
        settings += [{"tag": "autocast fp16", "amp": "fp16"}, {"tag": "autocast bf16", "amp": "bf16"}]
        modes = ["default", "reduce-overhead"] + (["max-autotune"] if max_autotune else [])
    else:
        settings += [{"tag": "autocast bf16", "amp": "bf16"}]
        modes = ["default"]
    skipped = {}
    step_s = (probe or {}).get("step_s", {})
    fp32, bf16 = (step_s.get(json.dumps({"channels_last": False, "amp": a})) for a in ("off", "bf16"))
    if device_type == "cpu" and fp32 and bf16 and bf16 > SLOW * fp32:
        settings = [s for s in settings if s.get("amp") != "bf16"]
        skipped["autocast bf16"] = (f"the --fast probe measured its step at {bf16 / fp32:.1f}x eager fp32's on this "
                                    "CPU (no bf16 matrix units: bf16 is emulated), so it is left out of the runs")
    if device_type == "cuda" and not max_autotune:
        skipped["compile max-autotune"] = ("opt-in (parameter max_autotune): its autotuning takes minutes and "
                                           "floods the log")
    if c_compiler() is None:
        for mode in modes:
            skipped[f"compile {mode}"] = "no C compiler found (install g++): torch.compile cannot build kernels"
    else:
        settings += [{"tag": f"compile {mode}", "compile": mode} for mode in modes]
    settings += [{"tag": "fast (per-phase timers)", "fast": True, "timers": "phase"}, {"tag": "fast", "fast": True}]
    for tag, reason in skipped.items():
        print(f"C8: {tag} left out: {reason}", file=sys.stderr)
    return [{"loader": "tensor", **s} for s in settings], skipped


def compare_acceleration(config: Config, out, max_autotune: bool = False, profile_steps: int = 3) -> list[dict]:
    """Every C8 setting, interleaved by epoch; the plan (settings and the ones left out, with reasons) is
    saved beside the records so the report can say what was not measured."""
    device_type = resolve_device(config.device).type
    probe = cpu_fast_probe(config) if device_type == "cpu" else None
    settings, skipped = acceleration_settings(device_type, max_autotune, probe)
    results.save_json(Path(out) / "plan.json", {"settings": [s["tag"] for s in settings], "skipped": skipped})
    records = interleave([config.replace(**s) for s in settings], out)
    from .profiling import step_profile  # the eager step under torch.profiler: launch- or compute-bound

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


def scaling(config: Config, counts, out, modes=("strong", "weak")) -> list[dict]:
    """Data-parallel runs on 1, 2, ... processes of this node, each its own torchrun launch (through
    `python -m lab train --nproc-per-node N`), one after another. strong: the global batch stays
    `config.batch_size` (each of N processes takes batch_size / N); weak: each process keeps
    `config.batch_size` (global batch N x batch_size). A count this node cannot run is recorded as
    'unavailable', as C5 does for a missing device."""
    import subprocess

    device_type = resolve_device(config.device).type
    have = processes_available(device_type)
    records = []
    for n in counts:
        for mode in (("strong", "weak") if n > 1 else ("strong",)):
            if mode not in modes and n > 1:
                continue
            tag = "1 process" if n == 1 else f"{n} processes ({mode})"
            batch = config.batch_size // n if mode == "strong" else config.batch_size
            c = config.replace(batch_size=max(batch, 1), tag=tag, checkpoint=None)
            if n > have or (mode == "strong" and config.batch_size % n):
                why = (f"{n} processes need {n} {'GPUs' if device_type == 'cuda' else 'cores'}, this node has {have}"
                       if n > have else f"batch {config.batch_size} does not split into {n} equal parts")
                record = results.make_record(c, {"status": "unavailable", "world_size": n},
                                             results.provenance(c, torch.device(device_type)), results.new_run_id(c))
                record["unavailable_reason"] = why
                results.append_jsonl(Path(out) / "records.jsonl", [record])
                records.append(record)
                print(f"C9: {tag}: not measured: {why}", file=sys.stderr)
                continue
            print(f"C9: {tag}, batch {c.batch_size} per process", file=sys.stderr)
            cmd = [sys.executable, "-m", "lab", "train", "--nproc-per-node", str(n), *train_args(c),
                   "--results", str(out)]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise LabError(f"C9: the {tag} run failed: {last}")
            records += [r for r in results.read_jsonl(Path(out) / "records.jsonl") if r.get("tag") == tag]
    return records
