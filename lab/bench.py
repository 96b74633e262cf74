"""`python -m lab bench`: the speed goals, measured in one process with warm-up and medians over repeats,
each printed as a ratio with its spread (the lowest and highest of the per-repeat ratios).

P1  on-device batched loader images/s / best DataLoader images/s (same augmentations)     goal >= 10
P2  instrumented train_one_epoch time / a bare loop with no timers (same steps)          goal <= 1.02
P3  fastest C8 setting step time / eager fp32 step time                                   goal <= 0.85
"""
from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

from . import data
from .config import Config
from .experiments import acceleration_settings, save_json
from .results import provenance
from .tensor_loader import TensorLoader
from .train import Setup, _seed_epoch, train_one_epoch

GOALS = {"P1": (">=", 10.0), "P2": ("<=", 1.02), "P3": ("<=", 0.85)}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def images_per_second(loader, batches: int) -> float:
    start, images = time.perf_counter(), 0
    for index, (x, _) in enumerate(loader):
        images += x.shape[0]
        if index + 1 == batches:
            break
    return images / (time.perf_counter() - start)


def ratio_summary(name: str, ratios: list[float], detail: dict) -> dict:
    op, goal = GOALS[name]
    median = statistics.median(ratios)
    met = median >= goal if op == ">=" else median <= goal
    return {"name": name, "ratio": median, "min": min(ratios), "max": max(ratios), "repeats": len(ratios),
            "goal": f"{op} {goal}", "met": met, **detail}


def p1_loader(config: Config, batches: int, repeats: int, workers=(0, 1, 2)) -> dict:
    """Loader-only throughput: iterate `batches` batches of the training set with the lab's augmentation."""
    device = torch.device("cpu")
    dataset = data.load_dataset(config, train=True, log=log)
    loaders = {f"DataLoader workers={w}": data.make_loader(dataset, config.replace(workers=w), device)
               for w in workers}
    loaders["on-device batched"] = TensorLoader.from_dataset(dataset, config.batch_size, device)
    for loader in loaders.values():  # warm-up: page cache, worker fork, first allocations
        images_per_second(loader, 3)
    rates = {name: [] for name in loaders}
    for _ in range(repeats):
        for name, loader in loaders.items():
            rates[name].append(images_per_second(loader, batches))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    best = max((n for n in medians if n.startswith("DataLoader")), key=medians.get)
    ratios = [t / b for t, b in zip(rates["on-device batched"], rates[best])]
    return ratio_summary("P1", ratios, {"best_dataloader": best, "images_per_s": medians})


def bare_epoch(model, loader, optimizer, device, max_batches: int) -> float:
    """The kuangliu-style loop with no timers: the reference for the timers' overhead."""
    criterion = nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    train_loss = correct = 0
    for index, (x, y) in enumerate(loader):
        if index == max_batches:
            break
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        loss = criterion(out, y)
        loss.backward()
        optimizer.step()
        train_loss += loss.item()
        correct += (out.argmax(1) == y).sum().item()
    return time.perf_counter() - start


def p2_overhead(config: Config, batches: int, repeats: int) -> dict:
    """The same model, loader and steps, alternating the instrumented epoch and the bare loop."""
    setup = Setup(config.replace(max_batches=batches, checkpoint=None), log=log)
    args = (setup.model, setup.train_loader, setup.optimizer, setup.device)
    train_one_epoch(*args, max_batches=2)  # warm-up
    ratios, timed, bare = [], [], []
    for repeat in range(repeats):
        _seed_epoch(config, repeat, setup.train_loader)
        t0 = time.perf_counter()
        train_one_epoch(*args, max_batches=batches)
        timed.append(time.perf_counter() - t0)
        _seed_epoch(config, repeat, setup.train_loader)
        bare.append(bare_epoch(*args, max_batches=batches))
        ratios.append(timed[-1] / bare[-1])
    return ratio_summary("P2", ratios, {"instrumented_s": statistics.median(timed), "bare_s": statistics.median(bare),
                                       "batches": batches})


def p3_acceleration(config: Config, batches: int, repeats: int) -> dict:
    """Median step time per C8 setting after a warm-up epoch (which pays for compilation)."""
    step_s = {}
    per_repeat = {}
    for setting in acceleration_settings("cpu"):
        tag = setting.pop("tag")
        log(f"P3: {tag}")
        setup = Setup(config.replace(max_batches=batches, checkpoint=None, **setting), log=log)
        setup.train_epoch(1, max_batches=3)  # warm-up / compile
        times = [setup.train_epoch(2 + r)["train_s"] / batches for r in range(repeats)]
        per_repeat[tag] = times
        step_s[tag] = statistics.median(times)
    fastest = min((t for t in step_s if t != "eager fp32"), key=step_s.get)
    ratios = [f / e for f, e in zip(per_repeat[fastest], per_repeat["eager fp32"])]
    return ratio_summary("P3", ratios, {"fastest": fastest, "step_s": step_s, "batches": batches})


def run_bench(config: Config, out=None, quick: bool = False) -> dict:
    scale = 1 if not quick else 0
    started = time.perf_counter()
    results = {
        "P1": p1_loader(config, batches=40 if scale else 10, repeats=5 if scale else 2),
        "P2": p2_overhead(config.replace(batch_size=32), batches=10 if scale else 3, repeats=5 if scale else 2),
        "P3": p3_acceleration(config, batches=4 if scale else 2, repeats=3 if scale else 1),
    }
    report = {"time": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "quick": quick,
              "seconds": time.perf_counter() - started, "config": config.to_dict(),
              "provenance": provenance(config, torch.device("cpu")), "results": results}
    out = Path(out or Path("results") / f"bench-{dt.datetime.now():%Y%m%d-%H%M%S}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_json(out, report)
    report["path"] = str(out)
    return report


def format_bench(report: dict) -> str:
    names = {"P1": "on-device loader / best DataLoader (images/s)", "P2": "instrumented / bare epoch (time)",
             "P3": "fastest C8 setting / eager fp32 (step time)"}
    lines = [f"{'':3} {'what':47} {'ratio':>7}  {'spread (min..max)':>17}  goal     met"]
    for name, r in report["results"].items():
        lines.append(f"{name:3} {names[name]:47} {r['ratio']:7.3f}  {r['min']:7.3f}..{r['max']:<7.3f}  "
                     f"{r['goal']:8} {'yes' if r['met'] else 'NO'}")
    p1, p2, p3 = (report["results"][k] for k in ("P1", "P2", "P3"))
    lines.append("")
    lines.append("P1 images/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in p1["images_per_s"].items()))
    lines.append(f"P2 median epoch of {p2['batches']} batches: instrumented {p2['instrumented_s']:.3f} s, "
                 f"bare {p2['bare_s']:.3f} s")
    lines.append("P3 step s: " + ", ".join(f"{k} {v:.3f}" for k, v in p3["step_s"].items()) + f" (fastest: {p3['fastest']})")
    lines.append(f"written to {report['path']} ({report['seconds']:.0f} s)")
    return "\n".join(lines)
