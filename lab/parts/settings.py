"""Settings that more than one part names, defined once as data. A part takes another's runs by these tags and
the runs' settings (lab.parts.base.Report.reusable), never by importing the other part."""
from __future__ import annotations

from ..core import stats

ONE_WORKER = 1           # C4's baseline; C3 measures it in its block, so that C4 can reuse both of its runs
BN_OFF = "sgd, BN off"   # SGD without batch norm; C6 trains it in its block, so that C7 can reuse both of its runs


def workers(count: int) -> str:
    """A worker count's tag, as C3's sweep names its runs: '0 workers', '1 worker'."""
    return stats.plural(count, "worker")
