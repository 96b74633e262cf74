"""`python -m lab bench [--device auto|cpu|cuda]`: the speed goals P1, P2, P3 and P5 (docs/bench.md), measured in
one process on one device, warm-up first, medians over repeats; every clock read through lab.core.timing.now; and
P6, read from a report's C10 rows (the deployed model's batch-1 latency, measured there)."""
from __future__ import annotations

import copy
import datetime as dt
import functools
import gc
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

from .core import results as measurements
from .core.config import Config
from .core.errors import ConfigError, LabError
from .core.files import check_writable, save_json
from .core.stats import MET, MISSED, goal as judge, plural
from .core.timing import now
from .data import cifar10
from .data.tensor_loader import TensorLoader
from .engine import environment, flops
from .engine.acceleration import BASELINE, FAST, FAST_PHASE, acceleration_settings
from .engine.interleave import abba
from .engine.roofline import TINY_PROBE, bf16_native, machine_peaks
from .engine.loop import Step, train_one_epoch
from .engine.model import resnet18
from .engine.records import device_name, provenance
from .engine.resolve import resolve
from .engine.train import Trainer, seed_epoch

GOALS = {"P1": (">=", 10.0), "P2": ("<=", 1.02), "P3": ("<=", 0.85), "P5": ("<=", 1.2), "P6": ("<=", 0.4)}
P3_BF16 = ("<=", 0.40)  # a CPU with bf16 instructions (AMX or AVX512-BF16): channels_last + bf16 alone measured
#                         0.40 of eager fp32 at batch 128 with AMX, 0.41 on a Zen 4
SLOW = 3.0  # P3: an uncompiled setting this many times slower than eager fp32 after warm-up is left out
P5_GOAL_DEVICES = ("H100", "H200")  # the P5 goal is set for Hopper (one compute class); elsewhere: goal n/a
RESULTS = Path("results")  # P6: where the latest report is looked for
DEPLOY, EAGER = "C10_deploy", "eager fp32"  # P6: the part whose latency rows it reads, and their baseline setting
log = functools.partial(print, file=sys.stderr, flush=True)


def plan(device: torch.device, quick: bool = False, steps: int | None = None, repeats: int | None = None) -> dict:
    """How much each part measures. --steps sets P2's batches per loop and P3's steps per setting and
    repeat; --repeats sets P1's repeats, P2's pairs and P3's repeats. --quick is a smoke run."""
    for name, value in (("steps", steps), ("repeats", repeats)):
        if value is not None and value < 1:
            raise ConfigError(f"--{name} must be >= 1, got {value}")
    cuda = device.type == "cuda"
    p = {"p1_batches": 200 if cuda else 40, "p1_repeats": 5, "p2_steps": 100 if cuda else 10, "p2_pairs": 5,
         "p3_steps": 50 if cuda else 20, "p3_repeats": 5 if cuda else 3, "p3_warmup": 3 if cuda else 2,
         "p5_epochs": 5}
    if quick:
        p.update(p1_batches=10, p1_repeats=2, p2_steps=3, p2_pairs=2, p3_steps=3, p3_repeats=1, p5_epochs=3)
    if steps:
        p.update(p2_steps=steps, p3_steps=steps)
    if repeats:
        p.update(p1_repeats=repeats, p2_pairs=repeats, p3_repeats=repeats)
    return p


def summary(name: str, what: str, values: list[float], unit: str = "x", goal=None, **detail) -> dict:
    """One row: the median of `values`, their min..max, and the goal (None: none here) judged by lab.core.stats.goal;
    `met` is True or False only where it is decided."""
    median = statistics.median(values)
    met, verdict = None, "goal n/a"
    if goal is not None:
        decided, p, needed = judge(values, *goal)
        met = {MET: True, MISSED: False}.get(decided)
        verdict = (f"{decided} (p = {p:.3g})" if met is not None else
                   f"{decided}: the repeats straddle the goal" if needed is None else
                   f"{decided}: {len(values)} repeats, at least {needed} needed")
    return {"name": name, "what": what, "value": median, "min": min(values), "max": max(values),
            "repeats": len(values), "unit": unit, "goal": None if goal is None else f"{goal[0]} {goal[1]}",
            "met": met, "verdict": verdict, **detail}


# --- P1: loaders alone -----------------------------------------------------------------------------

def worker_counts(cores: int | None = None) -> list[int]:
    """0, 1, 2, 4, 8, 16 up to min(cores, 16), and that cap itself."""
    cap = min(cores or os.cpu_count() or 1, 16)
    return sorted({w for w in (0, 1, 2, 4, 8, 16) if w <= cap} | {cap})


def open_loader(dataset, config: Config, device: torch.device, workers: int | None):
    """workers=None: the on-device batched loader; else the lab's DataLoader (as lab.data.cifar10.make_loader) with
    persistent workers, which start once, on the first iter(), left out of the timed part."""
    if workers is None:
        return TensorLoader.from_dataset(dataset, config.batch_size, device, seed=config.seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, shuffle=True, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(config.seed))


def loader_warmup(workers: int | None) -> int:
    """Batches drawn before the clock starts: the first (worker start-up), then the 2 x workers prefetched meanwhile."""
    return 2 * (workers or 0) + 2


def loader_rate(loader, device: torch.device, warmup: int, batches: int) -> float:
    """Images per second over `batches` batches of one iterator, after `warmup` batches of it."""
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    images = 0
    start = now(device)  # on CUDA: after the warm-up's queued work
    for _ in range(batches):
        x, _ = next(it)
        images += x.shape[0]
    return images / (now(device) - start)  # on CUDA: after the batches are computed


def p1_loader(config: Config, device: torch.device, batches: int, repeats: int, workers=None) -> dict:
    """Loader-only throughput, the same batches timed for each; one loader alive at a time (docs/bench.md)."""
    workers = worker_counts() if workers is None else workers
    dataset = cifar10.load_dataset(config, train=True, log=log)
    candidates = {"on-device batched": None, **{f"DataLoader workers={w}": w for w in workers}}
    per_epoch = math.ceil(len(dataset) / config.batch_size)
    batches = min(batches, per_epoch - max(loader_warmup(w) for w in candidates.values()))
    if batches < 1:
        raise LabError(f"P1: {len(dataset)} images are too few to time loaders at batch {config.batch_size}")
    rates = {name: [] for name in candidates}
    for repeat, order in enumerate(abba(candidates, repeats)):
        for name in order:
            loader = open_loader(dataset, config, device, candidates[name])
            rates[name].append(loader_rate(loader, device, loader_warmup(candidates[name]), batches))
            del loader
            gc.collect()  # the workers are shut down before the next loader starts its own
        log(f"P1 repeat {repeat + 1}/{repeats}: " + ", ".join(f"{n} {r[-1]:,.0f}/s" for n, r in rates.items()))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    best = max(list(candidates)[1:], key=medians.get)
    ratios = [t / b for t, b in zip(rates["on-device batched"], rates[best])]
    return summary("P1", "on-device loader / best DataLoader (images/s)", ratios, goal=GOALS["P1"],
                   best_dataloader=best, images_per_s=medians, images_per_s_repeats=rates, batches=batches,
                   batch_size=config.batch_size)


# --- P2: the cost of the lab's timers ----------------------------------------------------------------

class Batches:
    """A fixed list of batches served like a loader: both loops of P2 get these tensors, neither pays for loading."""

    def __init__(self, batches):
        self.batches = list(batches)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def bare_epoch(model, loader, optimizer, device: torch.device) -> dict:
    """P2's reference: the kuangliu/pytorch-cifar loop, no timers, the lab loop's copy flags (non_blocking on CUDA)."""
    criterion = nn.CrossEntropyLoss()
    non_blocking = device.type == "cuda"
    model.train()
    train_loss = correct = total = 0
    for inputs, targets in loader:
        inputs = inputs.to(device, non_blocking=non_blocking)
        targets = targets.to(device, non_blocking=non_blocking)
        optimizer.zero_grad(set_to_none=True)
        outputs = model(inputs)
        loss = criterion(outputs, targets)
        loss.backward()
        optimizer.step()
        train_loss += loss.item() * targets.size(0)
        correct += (outputs.argmax(1) == targets).sum().item()
        total += targets.size(0)
    return {"loss": train_loss / max(total, 1), "top1": correct / max(total, 1), "images": total}


def p2_pairs(model, optimizer, device: torch.device, loader: Batches, pairs: int) -> dict:
    """The lab's loop and the bare loop on the same batches from the same state, `pairs` times in ABBA order."""
    loops = {"timed": lambda: train_one_epoch(Step(model, optimizer, device), loader, timers="phase"),
             "bare": lambda: bare_epoch(model, loader, optimizer, device)}
    for loop in loops.values():  # warm-up: allocator, cudnn, first calls; creates the momentum buffers
        loop()
    state = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    images = sum(len(y) for _, y in loader.batches)
    seconds, orders = {"timed": [], "bare": []}, []
    for order in abba(loops, pairs):
        for name in order:
            model.load_state_dict(state[0])
            optimizer.load_state_dict(copy.deepcopy(state[1]))  # it adopts the tensors it is given
            start = now(device)
            stats = loops[name]()
            seconds[name].append(now(device) - start)
            if stats["images"] != images:
                raise LabError(f"P2: the {name} loop stopped early (loss {stats['loss']}): no fair comparison")
        orders.append(order[0] + " first")
    ratios = [t / b for t, b in zip(seconds["timed"], seconds["bare"])]
    return {"ratios": ratios, "timed_s": seconds["timed"], "bare_s": seconds["bare"], "orders": orders}


def p2_overhead(config: Config, device: torch.device, steps: int, pairs: int) -> dict:
    """P2 with the lab's model, optimizer and loader; `steps` batches drawn once from the loader."""
    # On a CPU a batch of at most 32: the timers' cost per step is fixed, so a shorter step shows it larger.
    batch_size = config.batch_size if device.type == "cuda" else min(config.batch_size, 32)
    setup = Trainer(resolve(config.replace(batch_size=batch_size, loader="torch", fast=False, timers="phase",
                                           max_batches=None), log), log)
    seed_epoch(setup.config, 1, setup.train_loader)
    it = iter(setup.train_loader)
    batches = Batches(next(it) for _ in range(min(steps, len(setup.train_loader))))
    del it
    result = p2_pairs(setup.model, setup.optimizer, device, batches, pairs)
    return summary("P2", "lab loop, phase timers / bare loop (time)", result.pop("ratios"), goal=GOALS["P2"],
                   timed_median_s=statistics.median(result["timed_s"]),
                   bare_median_s=statistics.median(result["bare_s"]), batches=len(batches), batch_size=batch_size,
                   **result)


# --- P3: C8's settings, round-robin ------------------------------------------------------------------

def p3_acceleration(config: Config, device: torch.device, steps: int, repeats: int, warmup: int = 3,
                    compiled: bool = True):
    """C8's settings less `fast` with phase timers, `fast` last, warmed up, then ABBA repeats of `steps` steps
    (docs/bench.md); returns the rows and the warm `fast` Trainer."""
    dataset = cifar10.load_dataset(config, train=True, log=log)
    loader = TensorLoader.from_dataset(dataset, config.batch_size, device, seed=config.seed)
    c8, skipped = acceleration_settings(device.type, compiled=compiled)
    settings = {s.pop("tag"): s for s in c8 if s["tag"] != FAST_PHASE} | {FAST: {"loader": "tensor", "fast": True}}
    setups, warm_step = {}, {}
    for tag, setting in settings.items():
        log(f"P3: {tag}: building and warming up")
        setup = Trainer(resolve(config.replace(**{"loader": "tensor", "max_batches": None, **setting}), log), log)
        setup.train_loader = loader  # one copy of the data set on the device; every epoch re-seeds it
        warm_step[tag] = setup.train_epoch(0, max_batches=warmup)["batches"][-1]["train_s"]  # None: epoch timers
        setups[tag] = setup
        base = warm_step[BASELINE]
        slow = warm_step[tag] is not None and warm_step[tag] > SLOW * base
        if slow and tag not in (BASELINE, FAST) and setup.config.compile == "off":
            skipped[tag] = (f"{warm_step[tag]:.2f} s per warmed-up step, over {SLOW:g}x eager fp32's {base:.2f} s: "
                            "left out of the repeats")
            log(f"P3: {tag}: {skipped[tag]}")
            del setups[tag]
    step_s = {tag: [] for tag in setups}
    for repeat, order in enumerate(abba(setups, repeats)):
        for tag in order:
            stats = setups[tag].train_epoch(repeat + 1, max_batches=steps)
            step_s[tag].append(stats["total_s"] / len(stats["batches"]))
        log(f"P3 repeat {repeat + 1}/{repeats}: " + ", ".join(f"{t} {s[-1]:.3f} s" for t, s in step_s.items()))

    def ratios(tag):
        return [s / e for s, e in zip(step_s[tag], step_s[BASELINE])]

    best = min((t for t in step_s if t != BASELINE), key=lambda t: statistics.median(step_s[t]))
    fast = setups[FAST].config
    detail = {"steps": min(steps, len(loader)), "batch_size": config.batch_size,
              "step_s": {t: {"median": statistics.median(s), "min": min(s), "max": max(s)}
                         for t, s in step_s.items()},
              "fast_setting": {k: getattr(fast, k) for k in ("loader", "channels_last", "amp", "compile", "timers")},
              "left_out": skipped}
    bf16 = device.type == "cpu" and bf16_native()
    rows = [summary("P3", "fast / eager fp32 (step time)" + (" (a CPU with bf16)" if bf16 else ""), ratios(FAST),
                    goal=P3_BF16 if bf16 else GOALS["P3"], **detail),
            summary("P3 best", f"best: {best} / eager fp32 (step time)", ratios(best), best=best)]
    return rows, setups[FAST]


# --- P5: the fast setting's epoch vs the FLOP floor --------------------------------------------------

def flops_per_image(batch: int = 2) -> float:
    """FLOPs of one training step (forward + backward) of ResNet-18 per image, as torch counts them."""
    return flops.count(resnet18(), batch, train=True)["total"] / batch


def bf16_peak(device: torch.device, n: int = 8192, runs: int = 20, rounds: int = 5) -> float:
    """The device's dense bf16 matmul rate, FLOP/s: the best of `rounds` rounds of `runs` n^3 matmuls, warmed up."""
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    out = torch.empty_like(a)
    for _ in range(3):
        torch.mm(a, b, out=out)
    best = 0.0
    for _ in range(rounds):
        start = now(device)
        for _ in range(runs):
            torch.mm(a, b, out=out)
        best = max(best, 2 * n ** 3 * runs / (now(device) - start))
    return best


def p5_floor(setup, device: torch.device, epochs: int) -> list[dict]:
    """The fast setting's full epochs after a warm-up one, and the floor: FLOPs per epoch / the bf16 peak."""
    flop = flops_per_image()
    goal = GOALS["P5"] if any(d in device_name(device) for d in P5_GOAL_DEVICES) else None
    what = "fast setting, full epoch (s)"
    if device.type != "cuda":
        reason = "skipped: P5 is a GPU goal (needs --device cuda)"
        return [{"name": "P5", "what": what, "skipped": reason, "goal": None, "met": None, "flop_per_image": flop},
                {"name": "P5 floor", "what": "fast epoch / FLOP floor", "skipped": reason, "goal": None, "met": None}]
    log("P5: bf16 matmul probe")
    peak = bf16_peak(device)
    log("P5: fast setting, warm-up epoch")
    setup.train_epoch(100)
    runs = [setup.train_epoch(101 + e) for e in range(epochs)]
    seconds = [r["total_s"] for r in runs]
    images = runs[0]["images"]
    floor = flop * images / peak
    detail = {"images": images, "flop_per_image": flop, "flop_per_epoch": flop * images, "peak_flops": peak,
              "peak_source": "measured: bf16 8192^3 matmul probe in this run", "floor_s": floor}
    return [summary("P5", what, seconds, unit="s", goal=goal, **detail),
            summary("P5 floor", "fast epoch / FLOP floor", [s / floor for s in seconds])]


# --- P6: the fastest deployed setting against eager fp32, from a report -------------------------------

def latest_report(root: Path) -> Path | None:
    """The report `root`/latest points to, else the report folder under `root` whose report.json changed last."""
    if (root / "latest" / "report.json").exists():
        return (root / "latest").resolve()
    reports = list(root.glob("*/report.json")) if root.is_dir() else []
    return max(reports, key=lambda p: p.stat().st_mtime).parent if reports else None


def deploy_rows(report: Path | None, root: Path):
    """(a report's C10 rows of this CPU's in-process calls, '') or (None, why there are none)."""
    if report is None:
        return None, f"no report under {root}/ (python -m lab report makes one)"
    if not report.is_dir():
        return None, f"{report} is not a report folder"
    try:
        rows = measurements.read(report, part=DEPLOY)
    except ValueError as error:  # a results table of another schema
        return None, str(error)
    rows = rows[(rows["device"] == "cpu") & rows["side"].isna()]  # not C10.5's C++ and Python programs
    if not (rows["metric"] == "latency_block_median_s").any():
        return None, f"no C10 batch-1 latency blocks on a CPU in {report}"
    return rows, ""


def p6_deploy(report=None, root: Path | None = None) -> list[dict]:
    """Per thread count in a report's C10 rows (default: the latest report): the fastest deployed setting (lowest
    p50) against eager fp32 at batch 1, block by block over the interleaved blocks they share, judged on the goal;
    "P6" at the most threads, "P6 <n> thr" at fewer. One skipped row where there are no such rows."""
    root = RESULTS if root is None else Path(root)
    report = Path(report) if report is not None else latest_report(root)
    rows, why = deploy_rows(report, root)
    out = []
    blocks = rows[rows["metric"] == "latency_block_median_s"] if rows is not None else None
    for threads in sorted(blocks["threads"].dropna().unique(), reverse=True) if blocks is not None else []:
        mine = blocks[blocks["threads"] == threads]
        by = {name: g.set_index("sample")["value"] for name, g in mine.groupby("setting", sort=False)}
        p50 = rows[(rows["metric"] == "latency_p50_s") & (rows["threads"] == threads)].set_index("setting")["value"]
        others = [name for name in by if name != EAGER and name in p50]
        fastest = min(others, key=p50.get) if EAGER in by and EAGER in p50 and others else None
        shared = by[EAGER].index.intersection(by[fastest].index) if fastest else []  # the same interleaved blocks
        if not len(shared):
            why = f"no eager fp32 and deployed setting timed in the same blocks in {report}"
            continue
        t = int(threads)
        out.append(summary("P6" if not out else f"P6 {t} thr", f"fastest deployed / eager fp32, {plural(t, 'thread')}",
                           [float(by[fastest][i] / by[EAGER][i]) for i in shared], goal=GOALS["P6"],
                           setting=fastest, threads=t, p50_s=float(p50[fastest]), eager_p50_s=float(p50[EAGER]),
                           report=str(report), machine=measurements.value(rows, "device_name", default="?")))
    return out or [{"name": "P6", "what": "fastest deployed / eager fp32, batch 1", "skipped": f"skipped: {why}",
                    "goal": None, "met": None}]


# --- the whole bench -----------------------------------------------------------------------------------

def check_out(out: Path) -> None:
    """bench --out, checked before minutes of work: a new file in a folder that can be written (ConfigError, one
    line, otherwise)."""
    if out.is_dir():
        raise ConfigError(f"bench --out {out}: is a folder; give a file's path, e.g. {out / 'bench.json'}")
    if out.exists() or out.is_symlink():
        raise ConfigError(f"bench --out {out}: a file is already there and would be overwritten; delete it or give "
                          "another path")
    if out.parent.exists() and not out.parent.is_dir():
        raise ConfigError(f"bench --out {out}: {out.parent} is a file, not a folder; give another path")
    try:
        check_writable(out.parent)
    except LabError as exc:
        raise ConfigError(f"bench --out {out}: {exc}") from None


def run_bench(config: Config, out=None, quick: bool = False, steps: int | None = None,
              repeats: int | None = None, compiled: bool = True, p6_report=None) -> dict:
    """Every goal in turn; the JSON report is written after each, so a bench stopped midway keeps those finished.
    `p6_report`: the report folder P6 reads (default: the latest under results/)."""
    out = Path(out or Path("results") / f"bench-{dt.datetime.now():%Y%m%d-%H%M%S}.json")
    check_out(out)
    device = resolve(config, log).device
    p = plan(device, quick, steps, repeats)
    started = time.perf_counter()
    log(f"bench on {device.type}: {device_name(device)}")
    results = {}
    report = {"time": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "quick": quick,
              "device_type": device.type, "device_name": device_name(device), "seconds": 0.0, "plan": p,
              "config": config.to_dict(), "provenance": provenance(config, device),
              "environment": environment.collect(), "peaks": machine_peaks(device, **(TINY_PROBE if quick else {})),
              "results": results}

    def done(*rows: dict) -> None:
        results.update({r["name"]: r for r in rows})
        report["seconds"] = time.perf_counter() - started
        save_json(out, report)

    done(p1_loader(config, device, p["p1_batches"], p["p1_repeats"]))
    done(p2_overhead(config, device, p["p2_steps"], p["p2_pairs"]))
    p3_rows, fast_setup = p3_acceleration(config, device, p["p3_steps"], p["p3_repeats"], p["p3_warmup"], compiled)
    done(*p3_rows)
    done(*p5_floor(fast_setup, device, p["p5_epochs"]))
    done(*p6_deploy(p6_report))
    report["path"] = str(out)
    return report


def _row(r: dict) -> str:
    if "skipped" in r:
        return f"{r['name']:9} {r['what']:46} {r['skipped']}"
    value = f"{r['value']:.3f}" + (" s" if r["unit"] == "s" else "")
    spread = f"{r['min']:.3f}..{r['max']:.3f}"
    return f"{r['name']:9} {r['what']:46} {value:>9}  {spread:>13}  {r['goal'] or 'n/a':8} {r.get('verdict', '—')}"


def p6_line(r: dict) -> str:
    return (f"{r['name']} from {r['report']} ({r['machine']}), batch 1, {plural(r['threads'], 'thread')}: "
            f"{r['setting']} p50 {r['p50_s'] * 1e3:.2f} ms, eager fp32 {r['eager_p50_s'] * 1e3:.2f} ms; "
            f"ratio block by block over {plural(r['repeats'], 'interleaved block')}")


def format_bench(report: dict) -> str:
    res = report["results"]
    prov = report["provenance"]
    quick = " --quick (a smoke run, not a measurement)" if report["quick"] else ""
    lines = [f"bench on {report['device_type']}: {report['device_name']} ({prov['host_cpus']} CPUs, torch "
             f"{prov['torch_version']}, {report['config']['dataset']} data){quick}",
             f"{'':9} {'what':46} {'value':>9}  {'spread min..max':>13}  {'goal':8} verdict"]
    lines += [_row(r) for r in res.values()]
    peaks = report.get("peaks")
    if peaks:
        lines.append("this machine's measured peaks (lab.engine.roofline, the report's C11 uses the same): "
                     + ", ".join(f"{p} {peaks[p]:.3g}" for p in ("fp32", "tf32", "bf16", "fp16") if p in peaks)
                     + " TFLOP/s, " + (f"int8 {peaks['int8']:.3g} TOPS, " if "int8" in peaks else "") + "copy "
                     f"{peaks['copy_GBs']:.0f} GB/s, triad {peaks['triad_GBs']:.0f} GB/s")
    p1, p2, p3 = res["P1"], res["P2"], res["P3"]
    lines += ["",
              f"P1 images/s over {p1['batches']} batches of {p1['batch_size']} (median of {p1['repeats']}; worker "
              f"start-up excluded): " + ", ".join(f"{k} {v:,.0f}" for k, v in p1["images_per_s"].items())
              + f"; best DataLoader: {p1['best_dataloader']}",
              f"P2 {p2['repeats']} pairs of {p2['batches']} batches of {p2['batch_size']} (the same batches, order "
              f"alternated): lab loop {p2['timed_median_s']:.3f} s, bare loop {p2['bare_median_s']:.3f} s (medians)",
              f"P3 step s over {p3['steps']} steps of {p3['batch_size']} (median of {p3['repeats']}, round-robin): "
              + ", ".join(f"{k} {v['median']:.4f}" for k, v in p3["step_s"].items())
              + f"; fast = {p3['fast_setting']}; best: {res['P3 best']['best']}"
              + "".join(f"; left out: {k} ({v})" for k, v in p3["left_out"].items())]
    p5 = res["P5"]
    if "skipped" in p5:
        lines.append(f"P5 {p5['skipped']}; model FLOPs per image, forward + backward: "
                     f"{p5['flop_per_image'] / 1e9:.2f} G")
    else:
        lines.append(f"P5 {p5['repeats']} full epochs of {p5['images']:,} images: {p5['value']:.3f} s "
                     f"({p5['min']:.3f}..{p5['max']:.3f}); {p5['flop_per_epoch'] / 1e12:.1f} TFLOP per epoch "
                     f"({p5['flop_per_image'] / 1e9:.2f} GFLOP per image, forward + backward); bf16 peak "
                     f"{p5['peak_flops'] / 1e12:.0f} TFLOP/s ({p5['peak_source']}); floor {p5['floor_s']:.3f} s")
    lines += [p6_line(r) for r in res.values() if r["name"].startswith("P6") and "skipped" not in r]
    lines.append(f"written to {report['path']} ({report['seconds']:.0f} s)")
    return "\n".join(lines)
