"""The GPU check in one call: `scripts/gpu-check.sh [--budget-s 300] [--out DIR] [--dry-run]`.

GPU time is short, so what must run on a GPU is one prepared command. Its stages, in order:

  env    the GPU, the driver, torch and CUDA
  data   the synthetic CIFAR-format data set, 50,000 + 10,000 images (a GPU machine starts bare)
  tests  `pytest -m cuda`: every test that exercises a CUDA path (those that need a device skip on a CPU)
  bench  `python -m lab bench --device cuda`: P1, P2, P3 and P5, its JSON saved after each goal
  c8     C8 at the full sizes (every setting 3 epochs of 391 batches at batch 128, interleaved), with progress lines
  c10    C10's conversions, accuracy, batch-1 latency and throughput; c11: the peaks and the step against them

Each stage is a child process in its own process group, bounded by its share of what is left of the budget
(`WEIGHTS`) and killed whole when it runs over. As soon as a stage ends, its rows are appended to OUT/rows.jsonl
and OUT/gpu-check.md (the markdown table) is written again, so a run cut off at any point returns what finished;
OUT/gpu-check.log holds every stage's output. `--dry-run`: the same stages on the CPU at tiny sizes (`make test`
runs it, so the script cannot rot); what needs CUDA is skipped and its row says why.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from .core import results, stats
from .core.config import Config
from .core.files import read_json, read_jsonl
from .data.cifar10 import ensure_synthetic
from .engine.records import device_name, git_commit
from .engine import acceleration, deploy, roofline
from .parts import c8_acceleration, c10_deploy, c11_limits
from .core.fields import FIELDS
from .parts.tables import peak_share, save_peaks
from .parts.base import Report

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = {"env": 0.5, "data": 1.0, "tests": 2.0, "bench": 4.0, "c8": 5.0, "c10": 2.0, "c11": 1.0}  # budget shares
STAGES = tuple(WEIGHTS)
FINAL_S = 5.0          # kept back for the last table
MIN_STAGE_S = 5.0      # a stage that would get less is skipped, not started
MAX_BUDGET_S = 86_400.0  # a day: more is a typo (and inf or 1e308 overflow a timeout)


@dataclass
class Sizes:
    """What the stages run: the GPU's full sizes, or the CPU dry run's tiny ones."""

    device: str
    train_images: int
    test_images: int
    batch_size: int
    max_batches: int | None
    epochs: int
    compiled: bool
    bench_args: tuple
    profile_steps: int


FULL = Sizes("cuda", 50_000, 10_000, 128, None, 3, True, ("--repeats", "3"), 3)
TINY = Sizes("cpu", 256, 64, 8, 1, 2, False, ("--quick", "--no-compile", "--batch-size", "8", "--steps", "1",
                                              "--repeats", "1"), 1)


# --- the rows and the table -----------------------------------------------------------------------------

COLUMNS = ("stage", "check", "result", "spread", "goal", "status")


def row(stage: str, name: str, result: str = "", spread: str = "", goal: str = "", status: str = "ok") -> dict:
    return dict(zip(COLUMNS, (stage, name, result, spread, goal, status)))


def table(rows: list[dict], header: dict) -> str:
    """The markdown page: what ran where, then one row per result."""
    lines = [f"GPU check, {header['date']}: {header['machine']}, torch {header['torch']}, commit {header['commit']}, "
             f"budget {header['budget_s']:.0f} s, took {header['took_s']:.0f} s", "",
             f"Command: `{header['command']}`", "", "| " + " | ".join(COLUMNS) + " |", "|---" * len(COLUMNS) + "|"]
    lines += ["| " + " | ".join(str(r[k]).replace("|", "\\|").replace("\n", " ") for k in COLUMNS) + " |"
              for r in rows]
    return "\n".join(lines) + "\n"


# --- running a stage within its share of the budget -----------------------------------------------------

@dataclass
class Ran:
    code: int | None      # None: cut (killed at its limit)
    seconds: float
    output: str


def run_stage(cmd: list[str], limit_s: float, log_path: Path, env: dict | None = None) -> Ran:
    """Run `cmd` in its own process group for at most `limit_s` seconds (then kill the group: a stage's
    DataLoader workers and compile workers go with it); its output is appended to `log_path`."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=0.1 if math.isnan(limit_s) else min(max(limit_s, 0.1), MAX_BUDGET_S))
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        code = None
    except BaseException:  # Ctrl-C, or anything else: the stage's group goes too, never left running
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    seconds = time.perf_counter() - start
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n{output}\n[{'cut by the budget' if code is None else f'exit {code}'} after "
                  f"{seconds:.1f} s]\n\n")
    return Ran(code, seconds, output)


def stage_status(ran: Ran) -> str:
    if ran.code is None:
        return f"cut by the budget after {ran.seconds:.0f} s"
    return "ok" if ran.code == 0 else f"failed (exit {ran.code}): {last_line(ran.output)}"


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


# --- the stages' rows -----------------------------------------------------------------------------------

def run_env(work: Path, sizes: Sizes) -> None:
    """The env stage's own process: its rows, as JSON lines."""
    device, cuda = sizes.device, torch.cuda.is_available()
    rows = [row("env", "torch", f"{torch.__version__} (CUDA {torch.version.cuda or 'none'}, cuDNN "
                f"{torch.backends.cudnn.version() if cuda else 'none'})"),
            row("env", "commit", git_commit())]
    if device == "cuda":
        smi = shutil.which("nvidia-smi")
        driver = "—"
        if smi:
            done = subprocess.run([smi, "--query-gpu=driver_version,memory.total", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=30)
            driver = done.stdout.strip() or last_line(done.stderr)
        rows.append(row("env", "GPU", f"{device_name(torch.device('cuda')) if cuda else 'none'}; driver, memory: "
                        f"{driver}", status="ok" if cuda else "failed: torch sees no CUDA device"))
    else:
        rows.append(row("env", "device", f"{device_name(torch.device('cpu'))} (dry run: no GPU)",
                        status="skipped: CUDA parts (dry run on the CPU)"))
    print("\n".join(json.dumps(r) for r in rows))


SUMMARY = re.compile(r"^=*\s*(?P<counts>(\d+ \w+(, )?)+) in [\d.]+s", re.M)


def test_rows(ran: Ran) -> list[dict]:
    """pytest's closing line as a row; the skip reasons (-rs) as the status where tests were skipped."""
    found = SUMMARY.findall(ran.output)
    counts = found[-1][0] if found else "no summary line"
    reasons = sorted({m.group(1) for m in re.finditer(r"^SKIPPED \[\d+\] [^:]+:\d+: (.+)$", ran.output, re.M)})
    status = stage_status(ran)
    if status == "ok" and reasons:
        status = "ok; skipped: " + "; ".join(reasons)
    return [row("tests", "pytest -m cuda", counts, status=status)]


def bench_rows(path: Path, ran: Ran) -> list[dict]:
    report = read_json(path)
    if report is None:
        return [row("bench", "bench", status=stage_status(ran))]
    rows = []
    for r in report["results"].values():
        if "skipped" in r:
            rows.append(row("bench", r["name"], r["what"], status=r["skipped"]))
            continue
        unit = " s" if r["unit"] == "s" else ""
        met = r.get("verdict", "goal n/a")
        met = f"smoke run, not a measurement ({met})" if report["quick"] else met
        rows.append(row("bench", r["name"], f"{r['what']}: {r['value']:.3f}{unit}",
                        f"{r['min']:.3f}..{r['max']:.3f} ({r['repeats']} repeats)", r["goal"] or "n/a", met))
    if ran.code != 0:
        rows.append(row("bench", "bench", status=stage_status(ran) + " (the rows above finished before)"))
    return rows


def c8_rows(work: Path, progress_file: Path, ran: Ran) -> list[dict]:
    """One row per C8 setting from its records (a cut run: the epochs that finished), and the progress lines
    its runs wrote."""
    records = read_jsonl(work / c8_acceleration.ID / "records.jsonl")
    measured = results.read(work, part=c8_acceleration.ID)
    rows = []
    if records:
        t = c8_acceleration.acceleration_table(pd.DataFrame(records), measured)
        for tag, r in t.iterrows():
            if r["status"] != "ok":
                rows.append(row("c8", str(tag), status=str(r["status"])))
                continue
            steady = "—" if pd.isna(r["steady_epoch_s"]) else f"steady epoch {r['steady_epoch_s']:.3f} s" + (
                "" if pd.isna(r["steady_train_s"]) else f", step {r['steady_train_s']:.3f} s")
            memory = "; ".join(f"{FIELDS[name].label} {r[name] * FIELDS[name].scale:.0f}"
                               for name in ("cuda_peak_above_start_bytes", "host_peak_rss_bytes")
                               if name in r and not pd.isna(r[name]))
            rows.append(row("c8", str(tag), f"first epoch {r['first_epoch_s']:.2f} s; {steady}; "
                            f"{'?' if pd.isna(r['batches']) else int(r['batches'])} batches; "
                            f"final loss {r['final loss']:.3f}" + (f"; {memory}" if memory else ""),
                            f"epoch {r['epoch_speed_up']}, step {r['step_speed_up']} vs eager fp32",
                            status=f"ok ({int(r['epochs'])} epochs; loader {r['loader']})"))
    account = acceleration.read_account(measured)
    if "step_s" in account:
        verdict = acceleration.compile_verdict(account)
        before, after = account["before"], account["after"]
        rows.append(row("c8", "Q5 compiled step", f"{stats.plural(int(account['graphs']), 'graph')}, "
                        f"{stats.plural(int(account['graph_breaks']), 'break')}; "
                        f"aten ops per step {before['aten_ops']:.0f} -> {after['aten_ops']:.0f}; "
                        f"launches {before['launches']:.0f} -> {after['launches']:.0f}; "
                        f"compilation {account['compile_s']:.1f} s", stats.verdict_line(verdict)))
    lines = read_jsonl(progress_file)
    ends = sum(1 for e in lines if e.get("batch") is not None and e.get("batch") == e.get("batches"))
    runs = len({e["run"] for e in lines if e.get("run")})
    rows.append(row("c8", "progress lines", f"{len(lines)} lines, {ends} epoch ends, from {runs} runs",
                    status=stage_status(ran)))
    return rows


def run_part(part, work: Path, sizes: Sizes, params: dict, **config) -> None:
    """A stage's own process: `part`'s run (what its notebook calls) on the check's data, into WORK/<its id>."""
    out = work / part.ID
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    config.setdefault("batch_size", sizes.batch_size)
    config = Config(**config, dataset="synthetic", data=str(work / "data"), device=sizes.device,
                    synthetic_train=sizes.train_images, synthetic_test=sizes.test_images, checkpoint=None,
                    experiment=part.ID)
    part.PART.make(config, params, out, Report(work))


def run_c8(work: Path, sizes: Sizes) -> None:
    run_part(c8_acceleration, work, sizes, {"max_autotune": False, "compile_settings": sizes.compiled,
                                            "profile_steps": sizes.profile_steps,
                                            "explain_compile": sizes.compiled},  # Q5: on the GPU, not the dry run
             epochs=sizes.epochs, max_batches=sizes.max_batches, workers=0, evaluate=False)


def run_c10(work: Path, sizes: Sizes) -> None:
    """C10 on this node's devices, with 1,000 batch-1 calls per setting on the GPU (20 blocks of 50)."""
    gpu = sizes.device == "cuda"
    run_part(c10_deploy, work, sizes, {"compile_settings": sizes.compiled, "inductor_settings": sizes.compiled,
                                       "test_images": 1000 if gpu else 16,
                                       "latency_blocks": 20 if gpu else 2, "latency_calls": 50 if gpu else 2,
                                       "throughput_batches": [1, 32, 128, 256] if gpu else [1]})


def c10_rows(work: Path, ran: Ran) -> list[dict]:
    """Per device and setting: batch-1 p50 / p99 at the most threads, the verdict against eager, throughput."""
    by_device = deploy.by_device(results.read(work, part=c10_deploy.ID))
    if not by_device:
        return [row("c10", "deploy", status=stage_status(ran))]
    rows = []
    for device, dev in by_device.items():
        lat = deploy.latency_of(dev)
        lat = lat[lat.index.get_level_values("threads") == lat.index.get_level_values("threads").max()]
        throughput = results.wide(dev, ["setting", "batch"], ("images_per_s",))
        for name, c in deploy.settings_of(dev).iterrows():
            if c["status"] != "ok" or name not in lat.index.get_level_values("setting"):
                rows.append(row("c10", f"{device} {name}", status=c["reason"] if c["status"] != "ok"
                                else "outside its tolerance"))
                continue
            s = lat.xs(name, level="setting").iloc[0]
            best = throughput.loc[name, "images_per_s"].dropna() if name in throughput.index else pd.Series()
            rows.append(row("c10", f"{device} {name}", "batch 1: p50 " + (f"{1000 * s['p50']:.3f} ms" if pd.notna(
                s["p50"]) else "—") + (f", p99 {1000 * s['p99']:.3f} ms" if pd.notna(s["p99"]) else "") + (
                f"; {best.max():,.0f} images/s at batch {best.idxmax()}" if len(best) else ""),
                f"{s['calls']:.0f} calls", "baseline" if s["claim"] is None else stats.verdict_line(s["claim"]),
                status=stage_status(ran)))
    return rows


def run_c11(work: Path, sizes: Sizes) -> None:
    """The device's peaks (measured, cached) and the training step profiled per precision against them."""
    gpu = sizes.device == "cuda"
    if not gpu:  # the report's start measures them; here the dry run's tiny probe stands in
        save_peaks(results.Rows(work, "report").start(), "cpu", roofline.machine_peaks("cpu", **roofline.TINY_PROBE))
    run_part(c11_limits, work, sizes, {"profile_steps": sizes.profile_steps}, batch_size=sizes.batch_size if gpu else 4)


def c11_rows(work: Path, ran: Ran) -> list[dict]:
    """The measured peaks, and the step's share of its precision's peak with the roof that binds it."""
    result = c11_limits.read(work)
    if not result:
        return [row("c11", "limits", status=stage_status(ran))]
    peaks, train = result["peaks"], result["flops"]["train"]["total"]
    rows = [row("c11", "peaks", ", ".join(f"{p} {peaks[p]:.4g}" for p in ("fp32", "tf32", "bf16", "fp16") if p in peaks)
                + f" TFLOP/s; copy {peaks['copy_GBs']:.0f}, triad {peaks['triad_GBs']:.0f} GB/s",
                f"{peaks['conditions']['seconds']} s", status=stage_status(ran))]
    for profile in result["profiles"].values():
        roof, _ = roofline.binding_roof(profile, peaks)
        rows.append(row("c11", f"step {profile['precision']}",
                        peak_share(train, profile["step_s"], profile["precision"], peaks), roof,
                        status=stage_status(ran)))
        b = (profile.get("kernels") or {}).get("breakdown")
        if b and "idle_share" in b:  # HolisticTraceAnalysis over the profiled steps (carried in .whl/)
            rows.append(row("c11", f"GPU time {profile['precision']}", f"idle {b['idle_share']:.0%}, compute "
                            f"{b['compute_share']:.0%}, other {b['non_compute_share']:.0%}",
                            f"{b['launch_cpu_us']:.3g} µs CPU per launch" if "launch_cpu_us" in b else "",
                            status=stage_status(ran)))
    return rows


def make_data(work: Path, sizes: Sizes) -> None:
    ensure_synthetic(Config(dataset="synthetic", data=str(work / "data"), synthetic_train=sizes.train_images,
                            synthetic_test=sizes.test_images), log=print)


OWN = {"env": run_env, "data": make_data, "c8": run_c8, "c10": run_c10, "c11": run_c11}  # stages run as `--stage`


# --- the whole check ------------------------------------------------------------------------------------

def check(out: Path, budget_s: float, dry_run: bool = False, stages=STAGES, work: Path | None = None) -> list[dict]:
    """The stages in `work` (default: a temporary folder, removed at the end: data and C8's files are not what comes
    back); the rows, the table and the log in `out`."""
    if work is not None:
        return _check(out, budget_s, dry_run, stages, work)
    with tempfile.TemporaryDirectory(prefix="lab-gpu-check-", ignore_cleanup_errors=True) as temporary:
        return _check(out, budget_s, dry_run, stages, Path(temporary))


def _check(out: Path, budget_s: float, dry_run: bool, stages, work: Path) -> list[dict]:
    started = time.perf_counter()
    deadline = started + budget_s - FINAL_S
    sizes = TINY if dry_run else FULL
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    log_path, rows_path = out / "gpu-check.log", out / "rows.jsonl"
    for path in (log_path, rows_path):
        path.write_text("")
    rows: list[dict] = []
    header = {"date": dt.datetime.now().astimezone().isoformat(timespec="minutes"), "machine": "?", "torch": "?",
              "commit": "?", "budget_s": budget_s, "took_s": 0.0,
              "command": "scripts/gpu-check.sh " + " ".join(sys.argv[1:])}

    def own(stage: str, limit: float, env: dict | None = None) -> Ran:  # the stage's own process (main's --stage)
        return run_stage([sys.executable, "-m", "lab.gpucheck", "--stage", stage, "--work", str(work)]
                         + (["--dry-run"] if dry_run else []), limit, log_path, env)

    def add(new: list[dict]) -> None:
        rows.extend(new)
        with open(rows_path, "a", encoding="utf-8") as f:
            for r in new:
                f.write(json.dumps({"t": round(time.perf_counter() - started, 1), **r}) + "\n")
        header["took_s"] = time.perf_counter() - started
        (out / "gpu-check.md").write_text(table(rows, header))
        for r in new:
            print(f"{r['stage']:6} {r['check']:28} {r['result']} {r['spread']} {r['goal']} [{r['status']}]",
                  flush=True)

    todo = [s for s in STAGES if s in stages]
    for i, stage in enumerate(todo):
        left = deadline - time.perf_counter()
        limit = left * WEIGHTS[stage] / sum(WEIGHTS[s] for s in todo[i:])
        if limit < MIN_STAGE_S:
            add([row(stage, stage, status=f"skipped: {max(left, 0):.0f} s of the budget left")])
            continue
        if stage == "env":
            ran = own("env", limit)
            found = [json.loads(line) for line in ran.output.splitlines() if line.startswith("{")]
            add(found or [row("env", "env", status=stage_status(ran))])
            said = {r["check"]: r["result"] for r in found}
            machine = said.get("GPU") or said.get("device", "?")
            header.update(machine=machine.split(";")[0].replace(" (dry run: no GPU)", " (dry run)"),
                          torch=said.get("torch", "?").split()[0], commit=said.get("commit", "?"))
        elif stage == "data":
            ran = own("data", limit)
            add([row("data", "synthetic data", f"{sizes.train_images:,} + {sizes.test_images:,} images",
                     f"{ran.seconds:.0f} s", status=stage_status(ran))])
        elif stage == "tests":
            ran = run_stage([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider",
                             f"--timeout={int(limit)}", "tests"], limit, log_path)
            add(test_rows(ran))
        elif stage == "bench":
            bench_json = out / "bench.json"
            bench_json.unlink(missing_ok=True)
            ran = run_stage([sys.executable, "-m", "lab", "bench", "--device", sizes.device, "--dataset", "synthetic",
                             "--data", str(work / "data"), "--synthetic-train", str(sizes.train_images),
                             "--synthetic-test", str(sizes.test_images), "--out", str(bench_json),
                             *sizes.bench_args], limit, log_path)
            add(bench_rows(bench_json, ran))
        elif stage == "c8":
            progress_file = work / "progress.jsonl"
            progress_file.unlink(missing_ok=True)
            ran = own("c8", limit, {"LAB_PROGRESS": str(progress_file)})
            records = work / c8_acceleration.ID / "records.jsonl"
            if records.exists():
                shutil.copyfile(records, out / "c8-records.jsonl")
            add(c8_rows(work, progress_file, ran))
        else:
            add({"c10": c10_rows, "c11": c11_rows}[stage](work, own(stage, limit)))
    add([])  # the page again, with the whole check's time
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu-check.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=300.0, help="seconds for the whole check (default 300)")
    parser.add_argument("--out", default=os.environ.get("OUT") or None,
                        help="folder for the table, rows and logs (default $OUT, else results/gpu-check-<time>)")
    parser.add_argument("--dry-run", action="store_true", help="the CPU at tiny sizes; CUDA parts skipped")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"a comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--stage", choices=OWN, help=argparse.SUPPRESS)   # one stage's own process
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        OWN[args.stage](Path(args.work), TINY if args.dry_run else FULL)
        return 0
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        parser.exit(2, f"error: unknown stage {', '.join(unknown)} (stages: {','.join(STAGES)})\n")
    if not (math.isfinite(args.budget_s) and FINAL_S < args.budget_s <= MAX_BUDGET_S):
        parser.exit(2, f"error: --budget-s {args.budget_s:g}: give the seconds for the whole check, a number over "
                       f"{FINAL_S:g} and at most {MAX_BUDGET_S:g}\n")
    if not args.dry_run and not torch.cuda.is_available():
        parser.exit(2, "error: no CUDA device here; on a CPU run scripts/gpu-check.sh --dry-run\n")
    out = Path(args.out or ROOT / "results" / f"gpu-check-{dt.datetime.now():%Y%m%d-%H%M%S}")
    rows = check(out, args.budget_s, args.dry_run, stages)
    failed = [r for r in rows if r["status"].startswith("failed")]
    print(f"table: {out / 'gpu-check.md'}" + (f"; {len(failed)} failed" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
