"""How a part's section is drawn: `show` displays tables (styled DataFrames), Markdown and HTML in the
notebook, `figure` shows a figure and saves its PNG and SVG copies, and `print` writes plain lines. A part's
`section()` calls these in the order the reader sees them; tests/test_goldens.py records them as text.
IPython and matplotlib are the notebook extra's (lab.core.extras)."""
from __future__ import annotations

from ..core.extras import need
from .plots import save_figure


def show(*objs) -> None:
    need("IPython.display").display(*objs)


def markdown(text: str):
    return need("IPython.display").Markdown(text)


def html(text: str):
    return need("IPython.display").HTML(text)


def figure(fig, name: str, figures_dir=None) -> None:
    if figures_dir is not None:
        save_figure(fig, name, figures_dir)
    need("matplotlib.pyplot").show()


def describe_run(record: dict) -> str:
    """One line saying what a record measured, for the top of a table."""
    bn = "" if record.get("batch_norm", True) else ", no batch norm"
    origin = (record.get("extra") or {}).get("workers") if isinstance(record.get("extra"), dict) else None
    loader = ("on-device loader" if record.get("loader") == "tensor" else
              f"{record['workers']} workers" + (f" ({origin})" if origin else ""))
    return (f"ResNet-18{bn}, {record['optimizer']} lr {record['lr']}, batch {record['batch_size']}, "
            f"{loader}, max_batches {record['max_batches']}, on {record['device_name']} "
            f"({record['device_type']}), {record['dataset_kind']} data, torch {record['torch_version']}, "
            f"commit {record['git_commit']}")
