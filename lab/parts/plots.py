"""What the parts' figures share: the seaborn theme (applied when a figure is drawn, never at import), the
stacked load/train/other bars (C2, C4), and saving a figure's PNG and SVG copies. matplotlib and seaborn
are the notebook extra's (lab.core.extras)."""
from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from ..core.extras import need

PHASE_COLORS = {"load_s": "#e4572e", "train_s": "#4c72b0", "other_s": "#aaaaaa"}


def pyplot():
    return need("matplotlib.pyplot")


def seaborn():
    return need("seaborn")


def themed(plot):
    @functools.wraps(plot)
    def draw(*args, **kwargs):
        sns = seaborn()
        with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
            return plot(*args, **kwargs)
    return draw


@themed
def phase_bars(table: pd.DataFrame, title: str, xlabel: str = ""):
    fig, ax = pyplot().subplots(figsize=(max(5, 1.1 * len(table) + 2), 3.6))
    bottom = None
    for phase, color in PHASE_COLORS.items():
        ax.bar(table.index.astype(str), table[phase], bottom=bottom, color=color, label=phase[:-2])
        bottom = table[phase] if bottom is None else bottom + table[phase]
    ax.set_ylabel("seconds per epoch")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(title="phase")
    fig.tight_layout()
    return fig


def save_figure(fig, name: str, figures_dir) -> None:
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "svg"):
        fig.savefig(figures_dir / f"{name}.{ext}", bbox_inches="tight", dpi=110 if ext == "png" else None)
