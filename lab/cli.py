"""`python -m lab train ...`: the lab's flags, verbatim, plus a few of our own."""
from __future__ import annotations

import argparse
import json
import sys

from .config import OPTIMIZERS, Config, LabError


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
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device, help="(default %(default)s)")
    train.add_argument("--dataset", choices=("cifar10", "synthetic"), default=d.dataset,
                       help="real CIFAR-10, or synthetic data in the CIFAR-10 file format (default %(default)s)")
    train.add_argument("--synthetic-train", type=int, default=d.synthetic_train,
                       help="synthetic training images (default %(default)s)")
    train.add_argument("--synthetic-test", type=int, default=d.synthetic_test,
                       help="synthetic test images (default %(default)s)")
    train.add_argument("--loader", choices=("torch", "tensor"), default=d.loader,
                       help="torch: the lab's DataLoader; tensor: the on-device batched loader (default %(default)s)")
    train.add_argument("--batch-size", type=int, default=d.batch_size, help="(default %(default)s)")
    train.add_argument("--max-batches", type=int, default=None, help="cap on batches per epoch, and on evaluation batches (tiny runs)")
    train.add_argument("--seed", type=int, default=d.seed, help="(default %(default)s)")
    train.add_argument("--evaluate", action="store_true", help="test loss/top-1 after each epoch (untimed)")
    train.add_argument("--checkpoint", default=d.checkpoint, help="checkpoint file (default %(default)s)")
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

    bench = sub.add_parser("bench", parents=[common], help="speed goals P1-P3 as ratios with their spread")
    bench.add_argument("--data", default="data", help="data folder (default %(default)s)")
    bench.add_argument("--dataset", choices=("cifar10", "synthetic", "auto"), default="auto",
                       help="(default %(default)s: CIFAR-10 if present, else synthetic)")
    bench.add_argument("--out", default=None, help="JSON file (default results/bench-<time>.json)")
    bench.add_argument("--quick", action="store_true", help="fewer batches and repeats (a smoke test)")
    return parser


def config_from_args(args) -> Config:
    return Config(
        lr=args.lr, workers=args.workers, epochs=args.epochs, data=args.data, resume=args.resume,
        device="cuda" if args.gpu else args.device, batch_norm=not args.disable_batch_norm,
        optimizer=args.optimizer, dataset=args.dataset, batch_size=args.batch_size,
        max_batches=args.max_batches, seed=args.seed, evaluate=args.evaluate, checkpoint=args.checkpoint,
        synthetic_train=args.synthetic_train, synthetic_test=args.synthetic_test, loader=args.loader,
    ).validate()


def cmd_train(args) -> int:
    from . import results
    from .train import run

    config = config_from_args(args)
    table_out = sys.stderr if args.json else sys.stdout
    records = []
    progress = sys.stderr.isatty() and not args.no_progress
    for record in run(config, results_dir=args.results, progress=progress):
        records.append(record)
        if args.json:
            print(json.dumps(record, default=str), flush=True)
    if records:
        print(f"\n{config.optimizer}, lr={config.lr}, workers={config.workers}, device={records[0]['device_name']}, "
              f"data={config.dataset}", file=table_out)
        print(results.format_epoch_table(records), file=table_out)
    return 1 if records and records[-1]["status"] == "diverged" else 0


def cmd_report(args) -> int:
    from .report import run_report

    run_report(args.profile, results_root=args.results, data=args.data, out=args.out, force=args.force,
               new=args.new)
    return 0


def cmd_bench(args) -> int:
    from .bench import format_bench, run_bench
    from .experiments import resolve_dataset

    config = Config(dataset=resolve_dataset(args.dataset, args.data), data=args.data, device="cpu",
                    workers=0, checkpoint=None, experiment="bench")
    print(format_bench(run_bench(config, args.out, quick=args.quick)))
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
