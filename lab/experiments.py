"""The lab's C-parts as recipes: each runs `lab.train.run` over a list of configurations and returns
tidy records (one per epoch, in the schema of lab.results). Notebooks call these; they hold no logic."""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch

from . import results
from .config import OPTIMIZERS, Config, LabError
from .data import BATCH_DIR, CIFAR10_URL, DataError, download_cifar10
from .train import run


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


def steady_mean(records: list[dict], key: str) -> float:
    """Mean of `key` over the epochs, leaving out the warm-up epoch when there are others."""
    ok = [r for r in records if r.get("status") == "ok"]
    steady = [r for r in ok if not r["warmup"]] or ok
    return sum(r[key] for r in steady) / len(steady) if steady else float("nan")


# --- C3: DataLoader workers ---------------------------------------------------------------------

def worker_counts(step: int = 4, cap: int = 16) -> list[int]:
    """0, step, 2*step, ... up to cap: the lab's sweep."""
    return list(range(0, cap + 1, step))


def sweep_workers(config: Config, counts, out) -> dict:
    """Train with each worker count in turn and stop as soon as the data-loading time stops decreasing
    (a count whose steady load time is not below the previous one's). The best count is the one with
    the lowest load time."""
    records, loads, stop_reason = [], {}, f"reached the end of the list {list(counts)}"
    previous = None
    for workers in counts:
        recs = train(config.replace(workers=workers, tag=f"workers={workers}"), out)
        records += recs
        loads[workers] = steady_mean(recs, "load_s")
        print(f"workers={workers}: load {loads[workers]:.3f} s/epoch", file=sys.stderr)
        if not math.isfinite(loads[workers]):
            del loads[workers]
            stop_reason = f"the run with {workers} workers diverged: no load time to compare"
            break
        if previous is not None and loads[workers] >= loads[previous]:
            stop_reason = (f"load time stopped decreasing at {workers} workers "
                           f"({loads[workers]:.3f} s >= {loads[previous]:.3f} s at {previous})")
            break
        previous = workers
    if not loads:
        raise LabError("every run of the worker sweep diverged: no best worker count (lower the lr?)")
    best = min(loads, key=loads.get)
    summary = {"best_workers": best, "load_s": {str(k): v for k, v in loads.items()}, "stop_reason": stop_reason}
    save_json(Path(out) / "best_workers.json", summary)
    return {"records": records, **summary}


def best_workers(results_dir, default: int = 2) -> int:
    """C3's best worker count from a report folder, or `default` when C3 has not run there."""
    try:
        return int(json.loads((Path(results_dir) / "C3_workers" / "best_workers.json").read_text())["best_workers"])
    except (OSError, ValueError, KeyError):
        return default


# --- C5: devices ----------------------------------------------------------------------------------

def device_available(name: str) -> bool:
    return name == "cpu" or (name == "cuda" and torch.cuda.is_available())


def compare_devices(config: Config, devices, out, cpu_max_batches=None) -> list[dict]:
    """Train on each device; a device that is not there gets a record with status 'unavailable' so the
    report shows it instead of dropping it. `cpu_max_batches` caps the CPU run where a full CPU epoch
    would take too long (its per-batch time is what the comparison uses)."""
    records = []
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
        records += train(config.replace(device=device, max_batches=cap, tag=device), out)
    return records


# --- C6, C7: optimizers, batch norm --------------------------------------------------------------

def compare_optimizers(config: Config, out, optimizers=OPTIMIZERS) -> list[dict]:
    return [r for name in optimizers for r in train(config.replace(optimizer=name, tag=name), out)]


def compare_batch_norm(config: Config, out) -> list[dict]:
    return [r for bn in (True, False)
            for r in train(config.replace(batch_norm=bn, tag="BN on" if bn else "BN off"), out)]


def save_json(path, obj) -> None:
    with results.atomic_write(path) as f:
        f.write(json.dumps(obj, indent=1, default=str))


# --- C8: acceleration -------------------------------------------------------------------------------

def c_compiler() -> str | None:
    """torch.compile's inductor backend builds C++ (CPU) or Triton (CUDA) kernels with the host compiler."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        path = name and shutil.which(name)
        if path:
            return path
    return None


def acceleration_settings(device_type: str) -> list[dict]:
    """Eager fp32 first (the baseline), then one change at a time. torch.compile settings are left out,
    with the reason printed, where no C compiler exists."""
    settings = [{"tag": "eager fp32"}, {"tag": "channels_last", "channels_last": True}]
    if device_type == "cuda":
        settings += [{"tag": "autocast fp16", "amp": "fp16"}, {"tag": "autocast bf16", "amp": "bf16"}]
        modes = ["default", "reduce-overhead", "max-autotune"]
    else:
        settings += [{"tag": "autocast bf16", "amp": "bf16"}]
        modes = ["default"]
    if c_compiler() is None:
        print("torch.compile settings skipped: no C compiler found (install g++ to include them)", file=sys.stderr)
        return settings
    return settings + [{"tag": f"compile {mode}", "compile": mode} for mode in modes]


def compare_acceleration(config: Config, out, settings=None) -> list[dict]:
    from .train import resolve_device

    settings = settings or acceleration_settings(resolve_device(config.device).type)
    return [r for s in settings for r in train(config.replace(**s), out)]
