"""`python -m lab train ...`: the lab's flags, verbatim, plus a few of our own."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager

from .config import (DATASETS, DEVICES, LOADERS, OPTIMIZERS, OPTIONS, TIMERS, Config, Interrupted, LabError,
                     Terminated)


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
    d = Config()
    train.add_argument("--lr", type=float, default=d.lr, help="learning rate (default %(default)s)")
    train.add_argument("--workers", type=int, default=d.workers, help="DataLoader workers (default %(default)s)")
    train.add_argument("--epoch", dest="epochs", type=int, default=d.epochs,
                       help="total number of epochs; with --resume, training continues up to it (default %(default)s)")
    train.add_argument("--data", default=d.data, help="data folder (default %(default)s)")
    train.add_argument("--resume", "-r", action="store_true", help="resume from --checkpoint")
    train.add_argument("--gpu", action="store_true", help="train on CUDA (same as --device cuda)")
    train.add_argument("--disable_batch_norm", action="store_true", help="ResNet-18 without batch norm")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="(default %(default)s)")
    train.add_argument("--device", choices=DEVICES, default=d.device, help="(default %(default)s)")
    train.add_argument("--dataset", choices=DATASETS, default=d.dataset,
                       help="real CIFAR-10, or synthetic data in the CIFAR-10 file format (default %(default)s)")
    train.add_argument("--synthetic-train", type=int, default=d.synthetic_train,
                       help="synthetic training images (default %(default)s)")
    train.add_argument("--synthetic-test", type=int, default=d.synthetic_test,
                       help="synthetic test images (default %(default)s)")
    train.add_argument("--loader", choices=LOADERS, default=d.loader,
                       help="torch: the lab's DataLoader; tensor: the on-device batched loader (default %(default)s)")
    train.add_argument("--fast", action="store_true",
                       help="the fastest honest step: on-device loader, channels_last, bf16 autocast and CUDA graphs "
                            "on CUDA (on a CPU, the combination measured fastest there), metrics kept on the device, "
                            "one clock per epoch")
    train.add_argument("--timers", choices=TIMERS, default=d.timers,
                       help="phase: load/train clocks around every batch; epoch: one clock per epoch, no host sync "
                            "per step; auto: epoch with --fast, else phase (default %(default)s)")
    train.add_argument("--nproc-per-node", type=_positive_int, default=None, metavar="N",
                       help="data-parallel training on N processes of this node (hands the command to torchrun's "
                            "launcher; for several nodes run torchrun yourself, see README)")
    train.add_argument("--threads", type=_positive_int, default=None,
                       help="torch threads per process (default: torch's, or the cores shared among the ranks)")
    train.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across ranks (CUDA only)")
    train.add_argument("--no-augment", action="store_true",
                       help="train without RandomCrop/RandomHorizontalFlip (equivalence checks)")
    train.add_argument("--experiment", default=d.experiment, help="label of the records (default %(default)s)")
    train.add_argument("--tag", default=d.tag, help="label of this setting in the records")
    train.add_argument("--batch-size", type=int, default=d.batch_size, help="(default %(default)s)")
    train.add_argument("--max-batches", type=int, default=None, help="cap on batches per epoch, and on evaluation batches (tiny runs)")
    train.add_argument("--seed", type=int, default=d.seed, help="(default %(default)s)")
    train.add_argument("--evaluate", action="store_true", help="test loss/top-1 after each epoch (untimed)")
    train.add_argument("--checkpoint", default=d.checkpoint, help="checkpoint file; '' for none (default %(default)s)")
    train.add_argument("--results", default=None, metavar="DIR",
                       help="append records to DIR/records.jsonl and DIR/batches.jsonl")
    train.add_argument("--json", action="store_true", help="print one JSON record per epoch on stdout")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

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

    bench = sub.add_parser("bench", parents=[common],
                           help="speed goals P1-P5 on one device, as ratios with their spread")
    bench.add_argument("--device", choices=DEVICES, default="auto",
                       help="(default %(default)s: CUDA where available)")
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
    return parser


def config_from_args(args) -> Config:
    """The run's Config from `train`'s flags, validated (ConfigError: one line naming the field and value)."""
    return Config(
        lr=args.lr, workers=args.workers, epochs=args.epochs, data=args.data, resume=args.resume,
        device="cuda" if args.gpu else args.device, batch_norm=not args.disable_batch_norm,
        optimizer=args.optimizer, dataset=args.dataset, batch_size=args.batch_size,
        max_batches=args.max_batches, seed=args.seed, evaluate=args.evaluate, checkpoint=args.checkpoint or None,
        synthetic_train=args.synthetic_train, synthetic_test=args.synthetic_test, loader=args.loader,
        fast=args.fast, timers=args.timers, threads=args.threads, sync_bn=args.sync_bn,
        augment=not args.no_augment, experiment=args.experiment, tag=args.tag,
    ).validate()


def check_train_args(args) -> Config:
    """Everything `train` checks before anything is written or trained: the Config and the flags that are not
    its fields. Returns the Config."""
    config = config_from_args(args)
    OPTIONS["nproc_per_node"].check("--nproc-per-node", args.nproc_per_node)
    OPTIONS["results"].check("--results", args.results)
    return config


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc-per-node":
            skip = True
        elif not arg.startswith("--nproc-per-node="):
            out.append(arg)
    return out


# --- interruption: SIGINT (Ctrl-C) and SIGTERM during `train` ----------------------------------------------

_received: list = []  # (signal number, time) of the first SIGINT/SIGTERM this process got during `train`


def _on_signal(signum, frame):
    """The first SIGINT raises KeyboardInterrupt, the first SIGTERM Terminated; the same signal again at once
    (passed on by a launcher or to the process group) is ignored while the first is handled; asked again
    later (over 2 s), the process stops at once."""
    if _received:
        if time.monotonic() - _received[0][1] > 2:
            os._exit(128 + signum)
        return
    _received.append((signum, time.monotonic()))
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)


@contextmanager
def _interruptible():
    if threading.current_thread() is not threading.main_thread():  # signals are delivered to the main thread
        yield
        return
    _received.clear()
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _signal_of(exc: BaseException) -> int | None:
    """The signal that caused `exc`: the signal itself, or any error raised while one was being handled (a
    DataLoader worker or a peer rank that the same signal stopped)."""
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    if isinstance(exc, Terminated):
        return exc.signum
    return _received[0][0] if _received else None


def _rank() -> int:
    from . import dist

    return int(os.environ.get("RANK", "0")) if dist.launched() else 0


def cmd_train(args) -> int:
    from . import dist

    config = check_train_args(args)
    with _interruptible():
        if args.nproc_per_node and not dist.launched():
            return _launch(config, args)
        from .train import Progress, interruption_message

        track = Progress()
        try:
            return _train(config, args, track)
        except BaseException as exc:  # noqa: BLE001 - re-raised unless a signal caused it
            signum = _signal_of(exc)
            if signum is None:
                raise
            raise Interrupted(interruption_message(signum, track, config, args.results), signum,
                              quiet=_rank() != 0) from None  # one line, from rank 0 only
        finally:
            dist.shutdown()


def _launch(config: Config, args) -> int:
    """--nproc-per-node N: torchrun's launcher runs N ranks. Its agent turns SIGINT/SIGTERM into a
    SignalException and passes the signal on to every rank; rank 0 prints the interruption's line, the
    launcher ends with 128 + the signal's number and prints nothing more."""
    import logging

    import torch
    import torch.distributed.run  # noqa: F401 - loads the launcher's modules: their loggers set their own levels
    from torch.distributed.elastic.multiprocessing.api import SignalException

    from . import dist
    from .train import check_distributed, resolve_device

    for name in list(logging.root.manager.loggerDict):  # the launcher's warnings ("Received 15 death signal, ...")
        if name.startswith("torch.distributed.elastic"):  # would be lines beside the job's own one
            logging.getLogger(name).setLevel(logging.ERROR)
    check_distributed(config, resolve_device(config.device), dist.Context(world_size=args.nproc_per_node))
    gpus = torch.cuda.device_count()
    if resolve_device(config.device).type == "cuda" and args.nproc_per_node > gpus:
        raise LabError(f"--nproc-per-node {args.nproc_per_node} with CUDA needs {args.nproc_per_node} GPUs "
                       f"(NCCL: one GPU per process) but this node has {gpus}; use --nproc-per-node {gpus} "
                       "or --device cpu (gloo)")
    try:
        return dist.launch(args.nproc_per_node, _without_nproc(args.argv))
    except SignalException as exc:
        raise Interrupted(f"interrupted by {signal.Signals(exc.sigval).name}", exc.sigval, quiet=True) from None


def _train(config: Config, args, track=None) -> int:
    from . import dist, tables
    from .train import run

    table_out = sys.stderr if args.json else sys.stdout
    records = []
    progress = sys.stderr.isatty() and not args.no_progress
    for record in run(config, results_dir=args.results, progress=progress, track=track):
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
        print(tables.format_epoch_table(records), file=table_out)
        if r["timers"] == "epoch":
            print("load/train/other: not measured (epoch timers: one clock per epoch, no host sync per step)",
                  file=table_out)
    return 1 if records and records[-1]["status"] == "diverged" else 0


def cmd_report(args) -> int:
    from .report import run_report

    OPTIONS["profile"].check("--profile", args.profile)
    for flag in ("results", "data", "out"):
        OPTIONS["results"].check(f"--{flag}", getattr(args, flag))  # a folder, or None for the default

    run_report(args.profile, results_root=args.results, data=args.data, out=args.out, force=args.force,
               new=args.new)
    return 0


def cmd_bench(args) -> int:
    from .bench import format_bench, run_bench
    from .data import resolve_dataset
    from .train import resolve_device

    for flag in ("steps", "repeats", "out"):
        OPTIONS[flag].check(f"--{flag}", getattr(args, flag))
    device = resolve_device(args.device)  # before any work: one line when CUDA is asked for and absent
    batch_size = args.batch_size
    if batch_size is None:
        batch_size = 32 if args.quick and device.type == "cpu" else Config.batch_size
    config = Config(dataset=resolve_dataset(args.dataset, args.data), data=args.data, device=device.type,
                    batch_size=batch_size, synthetic_train=args.synthetic_train,
                    synthetic_test=args.synthetic_test, workers=0, checkpoint=None, experiment="bench").validate()
    print(format_bench(run_bench(config, args.out, quick=args.quick, steps=args.steps, repeats=args.repeats,
                                 compiled=not args.no_compile)))
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return {"train": cmd_train, "report": cmd_report, "bench": cmd_bench}[args.command](args)
    except Interrupted as exc:
        if args.debug:
            raise
        if not exc.quiet:
            print(exc, file=sys.stderr, flush=True)
        return exc.exit_code
    except LabError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
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
