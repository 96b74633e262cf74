"""`python -m lab train ...`: the lab's flags, verbatim, plus a few of our own."""
from __future__ import annotations

import argparse
import json
import sys

from .config import DATASETS, DEVICES, LOADERS, OPTIMIZERS, TIMERS, Config, LabError


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
    bench.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="(default %(default)s: CUDA where available)")
    bench.add_argument("--data", default="data", help="data folder (default %(default)s)")
    bench.add_argument("--dataset", choices=("cifar10", "synthetic", "auto"), default="auto",
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
    return parser


def config_from_args(args) -> Config:
    return Config(
        lr=args.lr, workers=args.workers, epochs=args.epochs, data=args.data, resume=args.resume,
        device="cuda" if args.gpu else args.device, batch_norm=not args.disable_batch_norm,
        optimizer=args.optimizer, dataset=args.dataset, batch_size=args.batch_size,
        max_batches=args.max_batches, seed=args.seed, evaluate=args.evaluate, checkpoint=args.checkpoint or None,
        synthetic_train=args.synthetic_train, synthetic_test=args.synthetic_test, loader=args.loader,
        fast=args.fast, timers=args.timers, threads=args.threads, sync_bn=args.sync_bn,
        augment=not args.no_augment, experiment=args.experiment, tag=args.tag,
    ).validate()


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


def cmd_train(args) -> int:
    from . import dist

    config = config_from_args(args)
    if args.nproc_per_node and not dist.launched():
        import torch

        from .train import check_distributed, resolve_device

        check_distributed(config, resolve_device(config.device), dist.Context(world_size=args.nproc_per_node))
        gpus = torch.cuda.device_count()
        if resolve_device(config.device).type == "cuda" and args.nproc_per_node > gpus:
            raise LabError(f"--nproc-per-node {args.nproc_per_node} with CUDA needs {args.nproc_per_node} GPUs "
                           f"(NCCL: one GPU per process) but this node has {gpus}; use --nproc-per-node {gpus} "
                           "or --device cpu (gloo)")
        return dist.launch(args.nproc_per_node, _without_nproc(args.argv))
    try:
        return _train(config, args)
    finally:
        dist.shutdown()


def _train(config: Config, args) -> int:
    from . import dist, results
    from .train import run

    table_out = sys.stderr if args.json else sys.stdout
    records = []
    progress = sys.stderr.isatty() and not args.no_progress
    for record in run(config, results_dir=args.results, progress=progress):
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
        print(results.format_epoch_table(records), file=table_out)
        if r["timers"] == "epoch":
            print("load/train/other: not measured (epoch timers: one clock per epoch, no host sync per step)",
                  file=table_out)
    return 1 if records and records[-1]["status"] == "diverged" else 0


def cmd_report(args) -> int:
    from .report import run_report

    run_report(args.profile, results_root=args.results, data=args.data, out=args.out, force=args.force,
               new=args.new)
    return 0


def cmd_bench(args) -> int:
    from .bench import format_bench, run_bench
    from .experiments import resolve_dataset
    from .train import resolve_device

    device = resolve_device(args.device)  # before any work: one line when CUDA is asked for and absent
    batch_size = args.batch_size
    if batch_size is None:
        batch_size = 32 if args.quick and device.type == "cpu" else Config.batch_size
    config = Config(dataset=resolve_dataset(args.dataset, args.data), data=args.data, device=device.type,
                    batch_size=batch_size, synthetic_train=args.synthetic_train,
                    synthetic_test=args.synthetic_test, workers=0, checkpoint=None, experiment="bench").validate()
    print(format_bench(run_bench(config, args.out, quick=args.quick, steps=args.steps, repeats=args.repeats)))
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return {"train": cmd_train, "report": cmd_report, "bench": cmd_bench}[args.command](args)
    except LabError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line unless --debug
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(run with --debug for the full traceback)", file=sys.stderr)
        return 1
