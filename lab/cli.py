"""`python -m lab train|report|bench`: the lab's flags, verbatim (generated from lab.core.config's field specs),
plus a few of our own. Every error a user can fix is one line and an exit code (lab.core.errors)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

import torch.distributed.run  # noqa: F401 - loads the launcher's modules: their loggers set their own levels
from torch.distributed.elastic.multiprocessing.api import SignalException

from .bench import format_bench, run_bench
from .core.config import DATASETS, DEVICES, OPTIONS, Config, add_config_flags, config_from_args
from .core.errors import Interrupted, LabError, RunState, Terminated, interruptible, interruption_message, signal_of
from .data.cifar10 import resolve_dataset
from .engine import dist
from .engine.fast import fast_reason
from .engine.resolve import WORKSPACE, device_type, resolve
from .engine.train import run
from .parts.tables import epoch_table
from .report.runner import render_again, run_report


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line and exit 2, not a usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lab", description="ResNet-18 / CIFAR-10 performance lab")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    train = sub.add_parser("train", parents=[common],
                           help="train ResNet-18 and report per-epoch load/train/total times")
    add_config_flags(train)  # one flag per Config field, from lab.core.config's specs
    train.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                       help="data-parallel training on N processes of this node (hands the command to torchrun's "
                            "launcher; for several nodes run torchrun yourself, see docs/scaling.md)")
    train.add_argument("--results", default=None, metavar="DIR",
                       help="append records to DIR/records.jsonl and DIR/batches.jsonl")
    train.add_argument("--json", action="store_true", help="print one JSON record per epoch on stdout")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    d = Config()

    report = sub.add_parser("report", parents=[common],
                            help="run every notebook under a profile and write report.html / report.pdf")
    report.add_argument("--profile", default="auto",
                        help="quick, full, auto (full where CUDA is available, else quick) or a .yaml path")
    report.add_argument("--results", default=None, metavar="DIR", help="results root (default results/)")
    report.add_argument("--data", default=None, help="data folder (default data/)")
    report.add_argument("--out", default=None, metavar="DIR", help="this report's folder (default: a new "
                        "results/<date>-<time>-<profile>, or the unfinished results/latest, which is resumed)")
    report.add_argument("--new", action="store_true", help="start a new report even if the latest is unfinished")
    report.add_argument("--force", action="store_true", help="replace the finished report in --out")

    render = sub.add_parser("render", parents=[common], help="make a report's report.html, report.pdf, CSVs and "
                            "figures again from its folder's tables and report.json, measuring nothing")
    render.add_argument("report", metavar="REPORT", help="a report folder (e.g. results/latest)")

    bench = sub.add_parser("bench", parents=[common],
                           help="speed goals P1-P6 on one device, as ratios with their spread")
    bench.add_argument("--report", default=None, metavar="REPORT",
                       help="the report whose C10 rows P6 reads (default: results/latest, else the newest report)")
    bench.add_argument("--device", choices=DEVICES, default="auto", help="(default %(default)s: CUDA where available)")
    bench.add_argument("--data", default="data", help="data folder (default %(default)s)")
    bench.add_argument("--dataset", choices=(*DATASETS, "auto"), default="auto",
                       help="(default %(default)s: CIFAR-10 if present, else synthetic)")
    bench.add_argument("--synthetic-train", type=int, default=d.synthetic_train,
                       help="synthetic training images (default %(default)s)")
    bench.add_argument("--synthetic-test", type=int, default=d.synthetic_test,
                       help="synthetic test images (default %(default)s)")
    bench.add_argument("--batch-size", type=int, default=None,
                       help=f"(default {d.batch_size}; 32 with --quick on a CPU)")
    bench.add_argument("--steps", type=int, default=None,
                       help="P2 batches per loop and P3 steps per setting and repeat (default: 10/20 on a CPU, "
                            "100/50 on CUDA)")
    bench.add_argument("--repeats", type=int, default=None,
                       help="P1 repeats, P2 pairs and P3 repeats (default: 5, 5, and 3 on a CPU or 5 on CUDA)")
    bench.add_argument("--out", default=None, help="JSON file (default results/bench-<time>.json)")
    bench.add_argument("--quick", action="store_true", help="fewer batches and repeats (a smoke run)")
    bench.add_argument("--no-compile", action="store_true",
                       help="leave P3's torch.compile settings out (compiling takes a minute or more each); "
                            "fast stays, as it resolves (on CUDA it compiles)")

    compare = sub.add_parser("compare", parents=[common],
                             help="reports side by side (two or more: machines, profiles), through their tables: "
                             "compare.html and compare.pdf")
    compare.add_argument("reports", nargs="+", metavar="REPORT", help="report folders (e.g. results/latest)")
    compare.add_argument("--out", default=None, metavar="DIR", help="where compare.html goes "
                         "(default results/compare-<time>)")
    compare.add_argument("--no-pdf", action="store_true", help="the HTML only")
    return parser


def check_train_args(args) -> Config:
    """The Config, and the flags that are not its fields, checked before anything is written or trained."""
    config = config_from_args(args)
    OPTIONS["nproc_per_node"].check("--nproc-per-node", args.nproc_per_node)
    OPTIONS["results"].check("--results", args.results)
    return config


def cmd_train(args) -> int:
    config = check_train_args(args)
    with interruptible():
        if args.nproc_per_node and not dist.launched():
            return _launch(config, args)
        reached = RunState()
        try:
            return _train(config, args, reached)
        except BaseException as exc:  # noqa: BLE001 - re-raised unless a signal caused it
            signum = signal_of(exc)
            if signum is None:
                raise
            rank = int(os.environ.get("RANK", "0")) if dist.launched() else 0
            raise Interrupted(interruption_message(signum, reached, config.checkpoint, args.results), signum,
                              quiet=rank != 0) from None  # one line, from rank 0 only
        finally:
            dist.shutdown()


def _launch(config: Config, args) -> int:
    """--nproc-per-node N: torchrun's launcher runs N ranks and passes a SIGINT/SIGTERM on to them; rank 0 says the
    interruption's line, the launcher only ends with 128 + the signal's number."""
    for name in list(logging.root.manager.loggerDict):  # the launcher's warnings ("Received 15 death signal, ...")
        if name.startswith("torch.distributed.elastic"):  # would be lines beside the job's own one
            logging.getLogger(name).setLevel(logging.ERROR)
    resolve(config, launch=args.nproc_per_node)  # what N processes cannot do, refused before any starts
    flag = "--nproc-per-node"  # left out of the ranks' arguments, with its value
    argv = [a for i, a in enumerate(args.argv) if not a.startswith(flag) and args.argv[i - 1:i] != [flag]]
    try:
        return dist.launch(args.nproc_per_node, argv)
    except SignalException as exc:
        raise Interrupted(f"interrupted by {signal.Signals(exc.sigval).name}", exc.sigval, quiet=True) from None


def _train(config: Config, args, reached: RunState) -> int:
    table_out = sys.stderr if args.json else sys.stdout
    records = []
    progress = sys.stderr.isatty() and not args.no_progress
    for record in run(config, results_dir=args.results, progress=progress, reached=reached):
        records.append(record)
        if args.json and dist.current().main:
            print(json.dumps(record, default=str), flush=True)
    if records and dist.current().main:
        r = records[0]
        how = (f"fast: loader={r['loader']}, channels_last={r['channels_last']}, amp={r['amp']}, "
               f"compile={r['compile']}" if r["fast"] else f"loader={r['loader']}, workers={config.workers}")
        ranks = (f", {r['world_size']} processes ({r['backend']}, batch {r['batch_size']} each, {r['threads']} "
                 "threads each; rank 0's numbers)" if r["world_size"] > 1 else "")
        print(f"\n{config.optimizer}, lr={config.lr}, {how}, timers={r['timers']}, device={r['device_name']}, "
              f"data={config.dataset}{ranks}", file=table_out)
        table = epoch_table(records)
        table["top1"] = table["top1"] * 100
        print(table.rename(columns={"top1": "top1_%"}).to_string(float_format=lambda v: f"{v:.3f}", na_rep=""),
              file=table_out)
        if r["timers"] == "epoch":
            print("load/train/other: not measured (epoch timers: one clock per epoch, no host sync per step)",
                  file=table_out)
        if r["fast"]:
            print(fast_reason(config) if r["device_type"] == "cpu" else
                  "--fast on CUDA: the on-device loader, channels_last, bf16 autocast and CUDA graphs "
                  "(torch.compile reduce-overhead), metrics kept on the device", file=table_out)
    return 1 if records and records[-1]["status"] == "diverged" else 0


def cmd_report(args) -> int:
    OPTIONS["profile"].check("--profile", args.profile)
    for flag in ("results", "data", "out"):
        OPTIONS["results"].check(f"--{flag}", getattr(args, flag))  # a folder, or None for the default
    run_report(args.profile, results_root=args.results, data=args.data, out=args.out, force=args.force, new=args.new)
    return 0


def cmd_render(args) -> int:
    print(render_again(args.report))
    return 0


def cmd_bench(args) -> int:
    for flag in ("steps", "repeats", "out"):
        OPTIONS[flag].check(f"--{flag}", getattr(args, flag))
    kind = device_type(args.device)  # before any work: one line when CUDA is asked for and absent
    batch_size = args.batch_size
    if batch_size is None:
        batch_size = 32 if args.quick and kind == "cpu" else Config.batch_size
    config = Config(dataset=resolve_dataset(args.dataset, args.data), data=args.data, device=kind,
                    batch_size=batch_size, synthetic_train=args.synthetic_train,
                    synthetic_test=args.synthetic_test, workers=0, checkpoint=None, experiment="bench").validate()
    print(format_bench(run_bench(config, args.out, quick=args.quick, steps=args.steps, repeats=args.repeats,
                                 compiled=not args.no_compile, p6_report=args.report)))
    return 0


def cmd_compare(args) -> int:
    OPTIONS["results"].check("--out", args.out)
    from .report.compare import write
    print(write(args.reports, args.out, pdf=not args.no_pdf))
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if getattr(args, "deterministic", False):  # before CUDA starts: torch reads it at its first cuBLAS call
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", WORKSPACE)
    try:
        return {"train": cmd_train, "report": cmd_report, "bench": cmd_bench,
                "compare": cmd_compare, "render": cmd_render}[args.command](args)
    except LabError as exc:  # an interruption's line is said as it is (by rank 0 only)
        if args.debug:
            raise
        if not (isinstance(exc, Interrupted) and exc.quiet):
            print(exc if isinstance(exc, Interrupted) else f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except (KeyboardInterrupt, Terminated) as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        print(f"interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    except Exception as exc:  # noqa: BLE001 - one line unless --debug
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(run with --debug for the full traceback)", file=sys.stderr)
        return 1
