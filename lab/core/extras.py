"""The optional extras, imported where they are used: the notebook stack (papermill, nbconvert, IPython,
jupyter_client, matplotlib, seaborn) is needed by the report and the figures, and C10's deploy runtimes (torchao,
onnxruntime, onnx, onnxscript) by its settings, not by `python -m lab train` or the bench. `need` imports one, or
says in one line which extra installs it."""
from __future__ import annotations

import importlib

from .errors import LabError

EXTRA = "notebooks"  # pyproject's [project.optional-dependencies] group that holds them all


def need(module: str):
    """`module`, imported; a LabError naming the extra to install when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise LabError(f"{top} is not installed: it comes with the lab's '{EXTRA}' extra "
                       f"(make setup, or pip install -e '.[{EXTRA}]')") from exc
