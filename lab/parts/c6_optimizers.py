"""C6: the lab's five optimizers, SGD, SGD with Nesterov momentum, Adagrad, Adadelta and Adam, at lr 0.1 and
weight decay 5e-4 (momentum 0.9 where it applies), trained interleaved by epoch: training time per epoch,
loss and top-1. The block also trains SGD without batch norm, for C7 (left out of this part's section)."""
from __future__ import annotations

import pandas as pd

from ..core import stats
from ..core.config import OPTIMIZERS, Config
from . import comparison
from .base import COMMON, LOOKS, Part, Runs, claims, more_of_block, steady_epochs
from .settings import BN_OFF

ID = "C6_optimizers"
QUESTIONS = (("C6", "Fastest optimizer"),)


def runs(config: Config, params: dict, report) -> Runs:
    optimizers = params.get("optimizers", OPTIMIZERS)
    block = [config.replace(optimizer=name, tag=name) for name in optimizers]
    if "sgd" in optimizers:
        block.append(config.replace(optimizer="sgd", batch_norm=False, tag=BN_OFF))
    return Runs(block=block)


def speed_family(config: Config, params: dict, report) -> tuple[dict, list]:
    tags = [c.tag for c in runs(config, params, report).block if c.tag != BN_OFF]
    return {t: steady_epochs(config) for t in tags}, stats.pairs(tags)


def optimizers(df: pd.DataFrame) -> pd.DataFrame:
    """The optimizers' runs: SGD without batch norm, run in this block for C7, is C7's to show."""
    return df[df["batch_norm"] != False].reset_index(drop=True)  # noqa: E712


def verdicts(df: pd.DataFrame, results_dir=None) -> dict:
    return comparison.verdicts(optimizers(df))


def section(df: pd.DataFrame, results_dir=None, figures_dir=None) -> None:
    comparison.section(optimizers(df), "optimizer", "Optimizers", ID, claims(ID, verdicts, df, results_dir),
                       figures_dir)


def findings(df: pd.DataFrame, results_dir=None) -> list:
    return [comparison.finding(optimizers(df), *QUESTIONS[0], ID, claims(ID, verdicts, df, results_dir))]


PART = Part(ID, "C6 — Optimizers", QUESTIONS, (*COMMON, *LOOKS, "workers", "optimizers", "evaluate"), runs, section,
            findings, speed_family=speed_family, verdicts=verdicts, more=more_of_block(runs), needs=("best_workers",))
