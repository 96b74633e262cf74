"""C7: SGD with and without the batch-norm layers, trained interleaved by epoch: speed and convergence side by
side. Both runs come from C6's block where C6 made them in this report with the same settings."""
from __future__ import annotations

import pandas as pd

from ..core import stats
from ..core.config import Config
from . import comparison
from .base import COMMON, LOOKS, Part, Runs, claims, more_of_block, steady_epochs
from .settings import BN_OFF

ID = "C7_batchnorm"
ON, OFF = "BN on", "BN off"
QUESTIONS = (("C7", "What batch norm costs"),)


def runs(config: Config, params: dict, report) -> Runs:
    on, off = config.replace(batch_norm=True, tag=ON), config.replace(batch_norm=False, tag=OFF)
    return comparison.reused(report, [on, off], {"sgd": on, BN_OFF: off})


def speed_family(config: Config, params: dict, report) -> tuple[dict, list]:
    return {ON: steady_epochs(config), OFF: steady_epochs(config)}, stats.pairs([ON, OFF])


def section(df: pd.DataFrame, results_dir=None, figures_dir=None) -> None:
    comparison.section(df, "setting", "Batch norm on vs off", ID, claims(ID, comparison.verdicts, df, results_dir),
                       figures_dir)


def findings(df: pd.DataFrame, results_dir=None) -> list:
    return [comparison.finding(df, *QUESTIONS[0], ID, claims(ID, comparison.verdicts, df, results_dir))]


PART = Part(ID, "C7 — Batch norm on vs off", QUESTIONS, (*COMMON, *LOOKS, "workers", "evaluate"), runs, section,
            findings, speed_family=speed_family, verdicts=comparison.verdicts, more=more_of_block(runs),
            needs=("best_workers",))
